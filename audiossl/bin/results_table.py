"""Results table of a CTC experiment grid (pretrained vs scratch × budgets × test sets) as Markdown.

    python -m audiossl.bin.results_table --exp exp --budgets "train_10min train_1h" \\
        --test-sets "test test_unseen" --pretrained <ckpt> --command "<how it was run>" \\
        --section "Demo setting" [--scratch-exp exp] [--lm-dir data/local/lm --dev-set dev] RESULTS.md
    python -m audiossl.bin.results_table --grid "clean=exp/asr_pt_clean radio=exp/asr_pt_radio none=exp/asr_scratch" \
        --budgets "train_1h train_1h_radio" --test-sets "test test_radio" --command "..." --section "..." RESULTS.md

Reads <dir>/ctc_<init>_<budget>/decode_<set>/scores.json and each model's best and last
checkpoints, where <dir> is --exp for the pretrained models and --scratch-exp (default: --exp)
for the scratch control. With --lm-dir the table also has the decodes with the word LM
(decode_<set>_<LM dir name>/, their LM weight and word score chosen on
decode_<dev-set>_<LM dir name>/); with --chunk-frames "N ..." the streaming decodes
(decode_<set>_chunk<N>/, audiossl.bin.decode_ctc --chunk-frames N). The table goes into the section ``## <section>`` of the
output file: a section of that title is replaced, keeping its hand-written notes (from its
first ``### `` heading on), and any other section is kept, so one RESULTS.md holds several
settings.

With --grid NAME=DIR ..., the table has a row per NAME and budget (NAME ``none``: DIR's scratch models)
and a CER column per test set: a grid such as pretraining domain x fine-tuning set x test domain.
"""
from __future__ import annotations

import argparse
import sys

from audiossl.bin.arguments import names, positive_ints
from audiossl.errors import reports_user_errors
from audiossl.eval.results import CTC_PAGE_HEAD, ResultsError, ctc_results_lines, grid_results_lines, write_section


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.results_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default="exp", help="experiment dir of the pretrained models")
    parser.add_argument("--scratch-exp", help="experiment dir of the scratch control (default: --exp)")
    parser.add_argument("--budgets", type=names, required=True, help="the labelled sets, e.g. 'train_10min train_1h'")
    parser.add_argument("--test-sets", type=names, required=True, help="the test sets, e.g. 'test test_unseen'")
    parser.add_argument("--pretrained", help="the pretrained checkpoint (required without --grid)")
    parser.add_argument("--grid", help="NAME=EXP-DIR pairs: one row per name and budget, CER per test set")
    parser.add_argument("--command", required=True, help="the command that produced the results")
    parser.add_argument("--section", required=True, help="title of the section the table goes in")
    parser.add_argument("--lm-dir", help="the LM dir of the decodes with an LM (adds their columns)")
    parser.add_argument("--dev-set", default="dev", help="the set the LM weights were chosen on (default dev)")
    parser.add_argument("--chunk-frames", type=positive_ints, default=[],
                        help="attention chunks of the streaming decodes, e.g. '8 25' (adds their columns)")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    if not args.grid and not args.pretrained:
        parser.error("--pretrained is required without --grid")
    if args.grid:
        pairs = [pair.split("=", 1) for pair in args.grid.split()]
        if any(len(pair) != 2 for pair in pairs):
            raise ResultsError(f"--grid takes NAME=EXP-DIR pairs, got '{args.grid}'")
        repeated = sorted({name for name, _ in pairs if [n for n, _ in pairs].count(name) > 1})
        if repeated:
            raise ResultsError(f"--grid names {', '.join(repeated)} more than once: '{args.grid}'")
        lines = grid_results_lines(dict(pairs), args.budgets, args.test_sets, args.command)
    else:
        lines = ctc_results_lines(args.exp, args.scratch_exp or args.exp, args.budgets,
                                  args.test_sets, args.pretrained, args.command, lm_dir=args.lm_dir,
                                  dev_set=args.dev_set, chunk_frames=args.chunk_frames)
    write_section(args.output, args.section, lines, CTC_PAGE_HEAD)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
