"""Synthesize the offline mini TTS corpus and write its Kaldi data dirs.

    python -m audiossl.bin.prepare_mini_tts [--size {tiny,full,large}] [--languages en,es] [--seed N]
        [--num-workers N] [--no-progress] <corpus-dir> <data-dir>

Audio goes to <corpus-dir>/wav and noise clips to <corpus-dir>/noise (both reused when
re-run with the same seed); data dirs train_unlab, train_1h, train_10min, dev, test,
test_unseen (English), the same names ending in _es with --languages en,es (Spanish: the
Reina-Valera 1909 read by pico and espeak-ng voices; test_unseen_es by mbrola and another
espeak-ng voice), and noise (white, pink, brown, blue, hum, speech-shaped, babble of
train_unlab speech, sonic-pi-samples ambience; listed in noise/utt2kind) go under <data-dir>,
with each language's LM text in <data-dir>/local/lm_text_<lang>.txt.
"""
from __future__ import annotations

import argparse
import logging
import sys

from audiossl.bin.arguments import positive_int
from audiossl.corpora.mini_tts import SPLIT_SUFFIX, prepare_mini_tts
from audiossl.errors import reports_user_errors


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.prepare_mini_tts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full", "large"), default="full", help="corpus size (default full)")
    parser.add_argument("--languages", default="en", help="comma-separated: en (always made), es (default en)")
    parser.add_argument("--seed", type=int, default=0, help="sentence choice and jitter seed (default 0)")
    parser.add_argument("--num-workers", type=positive_int, default=2, help="parallel synthesis jobs (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("corpus_dir")
    parser.add_argument("data_dir")
    args = parser.parse_args(argv)
    languages = tuple(args.languages.split(","))
    if not set(languages) <= set(SPLIT_SUFFIX):
        parser.error(f"--languages: {args.languages!r} is not a comma-separated list of {', '.join(SPLIT_SUFFIX)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_mini_tts(args.corpus_dir, args.data_dir, size=args.size, seed=args.seed,
                     num_workers=args.num_workers, progress=not args.no_progress and sys.stderr.isatty(),
                     languages=languages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
