"""Results table of a CTC experiment grid (pretrained vs scratch × budgets × test sets) as Markdown.

    python -m audiossl.bin.results_table --exp exp --budgets "train_10min train_1h" \\
        --test-sets "test test_unseen" --pretrained <ckpt> --command "<how it was run>" RESULTS.md

Reads exp/ctc_<init>_<budget>/decode_<set>/scores.json and each model's best checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from audiossl.checkpoint import CheckpointError, load_checkpoint

CAVEAT = ("The corpus is synthesized by Debian's speech engines (flat prosody, few genuinely different voices): "
          "figures on it are optimistic and do not transfer to real speech. They compare methods on this "
          "corpus only.")


def training_facts(model_dir: Path) -> dict:
    """Updates trained, update of the chosen (best dev CER) checkpoint and its dev figures."""
    best = load_checkpoint(model_dir / "checkpoints" / "best.pt")["train_state"]
    last = load_checkpoint(model_dir / "checkpoints" / "last.pt")["train_state"]
    dev = {}
    valid_log = model_dir / "valid.jsonl"
    if valid_log.exists():
        records = [json.loads(line) for line in valid_log.read_text().splitlines()]
        dev = next((r for r in records if r["update"] == best["update"]), {})
    return {"updates": last["update"], "best_update": best["update"], "dev_cer": dev.get("cer"),
            "dev_wer": dev.get("wer")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.results_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default="exp")
    parser.add_argument("--budgets", required=True)
    parser.add_argument("--test-sets", required=True)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--command", required=True, help="the command that produced the results")
    parser.add_argument("output")
    args = parser.parse_args(argv)
    exp = Path(args.exp)
    try:
        pretrained = load_checkpoint(args.pretrained)
        lines = [
            "# CTC ASR: pretrained encoder vs the same model from scratch", "",
            f"Produced by `{args.command}` (see README for the whole demo).", "",
            f"Pretrained encoder: `{args.pretrained}` ({pretrained['family']}, update "
            f"{pretrained['train_state']['update']} of its pretraining run).",
            "Each model is fine-tuned for the same number of updates; the checkpoint with the lowest dev CER "
            "is decoded (CTC prefix beam search, no language model).", "",
            "| labelled data | test set | encoder | CER % | WER % | updates | chosen update | dev CER % |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        for budget in args.budgets.split():
            for test_set in args.test_sets.split():
                for init in ("pretrained", "scratch"):
                    model_dir = exp / f"ctc_{init}_{budget}"
                    scores = json.loads((model_dir / f"decode_{test_set}" / "scores.json").read_text())
                    facts = training_facts(model_dir)
                    dev_cer = "" if facts["dev_cer"] is None else f"{facts['dev_cer']:.2f}"
                    lines.append(f"| {budget} | {test_set} | {init} | {100 * scores['cer']:.2f} | "
                                 f"{100 * scores['wer']:.2f} | {facts['updates']} | {facts['best_update']} | "
                                 f"{dev_cer} |")
        lines += ["", CAVEAT, ""]
        Path(args.output).write_text("\n".join(lines))
        print("\n".join(lines))
    except (CheckpointError, OSError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
