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
import json
import sys
from pathlib import Path

from audiossl.atomic import write_text_atomic
from audiossl.bin.arguments import positive_int
from audiossl.data.kaldi_dir import DataDir, DataDirError
from audiossl.errors import reports_user_errors
from audiossl.text.lexicon_decode import LEXICON_FILE, LM_FILE
from audiossl.text.ngram import LMError, train_arpa, write_lexicon
from audiossl.text.tokenizer import normalize_transcript

INFO_FILE = "info.json"


def held_out_text(data_dir: str) -> dict[str, str]:
    """The ``text`` table of a data dir whose sentences the LM must not see."""
    data = DataDir.read(data_dir)
    if "text" not in data:
        raise DataDirError(f"{data_dir}: no text file, so its sentences cannot be held out of the LM")
    return data["text"]


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
    held_out = {name: held_out_text(name) for name in args.exclude_data}
    excluded = {normalize_transcript(t) for texts in held_out.values() for t in texts.values()}
    try:
        with open(args.text, encoding="utf-8") as f:
            lines = [normalize_transcript(line) for line in f]
    except UnicodeDecodeError as err:
        raise LMError(f"{args.text}: not UTF-8 text ({err})") from None
    sentences = [line for line in lines if line]
    kept = [line for line in sentences if line not in excluded]
    if not kept:
        raise LMError(f"{args.text}: no sentence left to train on")
    lm_dir = Path(args.lm_dir)
    lm_dir.mkdir(parents=True, exist_ok=True)
    try:
        ngrams = train_arpa(kept, args.order, lm_dir / LM_FILE)
    except LMError as err:
        raise LMError(f"{args.text}: {err}") from None
    (lm_dir / INFO_FILE).unlink(missing_ok=True)  # written last: until then the dir is incomplete, not described
    vocab = {w for line in kept for w in line.split()}
    num_words = write_lexicon(vocab, lm_dir / LEXICON_FILE)
    oov = {}
    for name, texts in held_out.items():
        words = [w for t in texts.values() for w in normalize_transcript(t).split()]
        oov[name] = sum(w not in vocab for w in words) / max(len(words), 1)
    info = {"text": args.text, "order": args.order, "sentences": len(kept), "held_out": list(held_out),
            "dropped_as_held_out": len(sentences) - len(kept), "lexicon_words": num_words,
            "ngrams": ngrams, "oov_rate": oov}
    write_text_atomic(lm_dir / INFO_FILE, json.dumps(info, indent=1) + "\n")
    print(f"{lm_dir}: {args.order}-gram LM on {len(kept)} sentences ({len(sentences) - len(kept)} held-out "
          f"sentences dropped), {num_words} lexicon words, n-grams {ngrams}")
    for name, rate in oov.items():
        print(f"  {name}: {100 * rate:.2f} % of the words are not in the lexicon")
    return 0


if __name__ == "__main__":
    sys.exit(main())
