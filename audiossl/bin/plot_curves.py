"""Training curves of one or more runs on the same axes, as a PNG.

    python -m audiossl.bin.plot_curves [--out curves.png] [--smoothing 25] [--label NAME ...] <exp-dir>...

Reads each exp dir's ``updates.jsonl`` and ``valid.jsonl`` (as the trainer writes them; a run still
going is read as far as it got) and draws one panel per logged figure, loss first: training as a
moving average over ``--smoothing`` updates, validation as points, one colour per run. The trainer
draws ``<exp-dir>/training_curves.png`` itself for runs longer than a minute; this compares runs,
e.g. a pretrained model against scratch, or one family against another.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiossl.bin.arguments import positive_int
from audiossl.errors import UserError, reports_user_errors
from audiossl.train.curves import plot_curves


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.plot_curves", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="curves.png", help="the PNG written (default: curves.png)")
    parser.add_argument("--smoothing", type=positive_int, default=25, help="updates in the training moving average")
    parser.add_argument("--label", action="append", help="a run's name in the legend, once per exp dir "
                                                         "(default: the exp dirs' paths)")
    parser.add_argument("exp_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    labels = args.label or [str(path) for path in args.exp_dirs]
    if len(labels) != len(args.exp_dirs):
        raise UserError(f"{len(labels)} --label for {len(args.exp_dirs)} exp dirs: give one per exp dir, or none")
    if len(set(labels)) != len(labels):
        raise UserError(f"two runs have the same label: {labels}")
    for path in args.exp_dirs:
        if not (path / "updates.jsonl").is_file():
            raise UserError(f"{path}: no updates.jsonl (not a training exp dir, or a run not started yet)")
    print(f"curves: {plot_curves(dict(zip(labels, args.exp_dirs)), args.out, args.smoothing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
