"""Evaluate a fine-tuned utterance model, and put a pretrained-vs-scratch pair into RESULTS.md.

    python -m audiossl.bin.eval_utterance classify --label-table utt2family [--classes FILE] \\
        <checkpoint> <data-dir> <out-dir>
    python -m audiossl.bin.eval_utterance verify [--trials FILE] <checkpoint> <data-dir> <out-dir>
    python -m audiossl.bin.eval_utterance score <trials> <scores>
    python -m audiossl.bin.eval_utterance results --pretrained-dir DIR --scratch-dir DIR --eval-name NAME \\
        --pretrained CKPT --command '...' --section TITLE <RESULTS.md>

classify: the model's classes on every utterance of <data-dir>, against its <label-table>
mapped through the class list saved beside the checkpoint (``classes.txt``). Single-label heads:
``accuracy`` and ``error`` (fractions) in results.json, ``predictions`` (``<utt> <label>
<predicted>`` lines) and confusion.png (rows: labels, columns: predictions). Multilabel heads:
ROC-AUC and average precision, each the macro mean over the classes that have positive and
negative utterances in <data-dir> (``roc_auc_macro``, ``map_macro``; sklearn), ``lrap``, and
``predictions`` (``<utt>`` then the tags of probability above 0.5).

verify: unit-length embeddings of every utterance of <data-dir>, the cosine score of each trial of
<trials> (default <data-dir>/trials) written to ``scores`` (``<enroll> <test> <score>`` lines),
and ``eer``, ``min_dcf_0.01`` and ``min_dcf_0.05`` (p_target; c_miss = c_fa = 1) in results.json.

score: ``eer``, ``min_dcf_0.01`` and ``min_dcf_0.05`` of any system's score file (``<enroll> <test>
<score>`` lines, every trial scored) against a trial list, printed as JSON (Kaldi's compute-eer).

classify and verify write the learned weights of the upstream's layers (``layer_weights`` in results.json and
layer_weights.png). results: reads <dir>/<eval-name>/results.json and the checkpoints of both
models and sets the section <section> of the Markdown file.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from audiossl.bin.arguments import positive_float
from audiossl.errors import reports_user_errors
from audiossl.eval.verification import score_file_metrics
from audiossl.eval.utterance import classify, results_lines, save_evaluation, utterance_model, verify, write_results
from audiossl.tasks.utterance import CLASSES_FILE


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.eval_utterance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="mode", required=True)
    for name in ("classify", "verify"):
        sub = commands.add_parser(name)
        if name == "classify":
            sub.add_argument("--label-table", required=True, help="the data dir's table of labels, e.g. utt2family")
            sub.add_argument("--classes", help=f"class list (default: {CLASSES_FILE} beside the checkpoint, "
                             "which it must match where that exists)")
        else:
            sub.add_argument("--trials", help="trial list (default: <data-dir>/trials)")
        sub.add_argument("--batch-seconds", type=positive_float, default=60.0,
                         help="padded audio per batch (default 60)")
        sub.add_argument("--no-progress", action="store_true")
        sub.add_argument("checkpoint")
        sub.add_argument("data_dir")
        sub.add_argument("out_dir")
    sub = commands.add_parser("score")
    sub.add_argument("trials", help="trial list (<enroll> <test> target|nontarget lines)")
    sub.add_argument("scores", help="score file (<enroll> <test> <score> lines)")
    sub = commands.add_parser("results")
    sub.add_argument("--pretrained-dir", required=True, help="exp dir of the fine-tuned pretrained model")
    sub.add_argument("--scratch-dir", required=True, help="exp dir of the scratch control")
    sub.add_argument("--eval-name", required=True, help="the eval dir in each, e.g. eval_sid_test")
    sub.add_argument("--pretrained", required=True, help="the pretrained checkpoint (named in the text)")
    sub.add_argument("--command", required=True, help="the command the section names")
    sub.add_argument("--section", required=True, help="section title")
    sub.add_argument("results", help="Markdown file (RESULTS.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    if args.mode == "score":
        print(json.dumps(score_file_metrics(args.trials, args.scores), indent=1))
    elif args.mode == "results":
        lines = results_lines(Path(args.pretrained_dir), Path(args.scratch_dir), args.eval_name, args.pretrained,
                              args.command)
        write_results(args.results, args.section, lines)
    else:
        out_dir = Path(args.out_dir)
        progress = not args.no_progress and sys.stderr.isatty()
        model = utterance_model(args.checkpoint)
        if args.mode == "classify":
            results = classify(model, args.checkpoint, args.data_dir, out_dir, args.label_table, args.classes,
                               args.batch_seconds, progress)
        else:
            results = verify(model, args.checkpoint, args.data_dir, out_dir, args.trials, args.batch_seconds,
                             progress)
        save_evaluation(model, results, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
