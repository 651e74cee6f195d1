"""Train a word n-gram LM and its lexicon for CTC decoding (an LM dir).

    python -m audiossl.bin.train_lm [--order 3] [--exclude-data DIR]... <text> <lm-dir>

<text> has one normalized sentence per line (the corpus's text resource), read as the
transcripts are tokenized (accents composed, Unicode NFC). Every sentence that
is the transcript of an utterance in an --exclude-data dir (the dev and test sets) is dropped,
so that the LM has never seen a test sentence. Writes <lm-dir>/lm.arpa (interpolated
Kneser-Ney), lexicon.txt (every word of the kept text) and, last, info.json, and prints, for each
excluded dir, the share of its words the lexicon lacks: the lexicon search cannot emit them.
"""
from __future__ import annotations

import argparse
import sys

from audiossl.bin.arguments import positive_int
from audiossl.errors import reports_user_errors
from audiossl.text.ngram import build_lm_dir


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.train_lm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--order", type=positive_int, default=3, help="n-gram order, at least 2 (default 3)")
    parser.add_argument("--exclude-data", action="append", default=[], metavar="DIR",
                        help="data dir whose transcripts are removed from the text (repeatable)")
    parser.add_argument("text")
    parser.add_argument("lm_dir")
    args = parser.parse_args(argv)
    if args.order < 2:  # KenLM, which the lexicon search reads lm.arpa with, refused it only then
        parser.error(f"--order is {args.order}: at least 2, as the lexicon search's KenLM takes no unigram LM")
    info = build_lm_dir(args.text, args.lm_dir, args.order, args.exclude_data)
    print(f"{args.lm_dir}: {args.order}-gram LM on {info['sentences']} sentences ({info['dropped_as_held_out']} "
          f"held-out sentences dropped), {info['lexicon_words']} lexicon words, n-grams {info['ngrams']}")
    for name, rate in info["oov_rate"].items():
        print(f"  {name}: {100 * rate:.2f} % of the words are not in the lexicon")
    return 0


if __name__ == "__main__":
    sys.exit(main())
