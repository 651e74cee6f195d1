"""Pseudo-label unlabelled audio with a fine-tuned CTC model and a word LM, keep the confident ones,
and write them with the labelled set as one training data dir (self-training).

    python -m audiossl.bin.pseudo_label --lm-dir data/local/lm_3gram \\
        --lm-params-from exp/ctc_pretrained_train_1h/decode_dev_lm_3gram/scores.json \\
        (--keep-fraction 0.5 | --min-confidence -0.2) \\
        <model.pt> <unlabelled-data-dir> <labelled-data-dir> <out-data-dir>

The unlabelled utterances (those of the labelled set left out) are decoded by the lexicon search
with the LM at the weights a dev decode chose; a pseudo-label's confidence is the log-probability
per frame the model gives its text. <out-data-dir> holds the labelled set plus the kept
pseudo-labelled utterances (their inputs as the unlabelled dir gives them), with utt2confidence,
and pseudo_labels.json: every pseudo-label, what was kept and, where the unlabelled dir has a
text (a synthetic corpus), the error rates of the kept and the dropped pseudo-labels.
"""
from __future__ import annotations

import argparse
import json
import sys

from audiossl.bin.arguments import positive_float, positive_int
from audiossl.errors import reports_user_errors
from audiossl.tasks.self_training import write_self_training_set


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.pseudo_label", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm-dir", required=True, help="LM dir (lm.arpa, lexicon.txt) of audiossl.bin.train_lm")
    parser.add_argument("--lm-params-from", required=True, metavar="SCORES_JSON",
                        help="the LM weight and word score of this decode (a dev decode with the LM)")
    keep = parser.add_mutually_exclusive_group(required=True)
    keep.add_argument("--keep-fraction", type=positive_float,
                      help="keep this fraction of the pseudo-labels, the most confident")
    keep.add_argument("--min-confidence", type=float, help="keep those with at least this log-probability per frame")
    parser.add_argument("--beam-size", type=positive_int, default=100, help="hypotheses kept per frame (default 100)")
    parser.add_argument("--batch-seconds", type=positive_float, default=200.0)
    parser.add_argument("model")
    parser.add_argument("unlabelled")
    parser.add_argument("labelled")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    report = write_self_training_set(args.model, args.unlabelled, args.labelled, args.out_dir, args.lm_dir,
                                     args.lm_params_from, args.keep_fraction, args.min_confidence,
                                     beam_size=args.beam_size, batch_seconds=args.batch_seconds,
                                     progress=sys.stderr.isatty())
    summary = {k: v for k, v in report.items() if k != "labels"}
    print(f"{args.out_dir}: {report['labelled']} labelled + {report['kept']} of {report['pseudo_labelled']} "
          f"pseudo-labelled utterances; {json.dumps(summary)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
