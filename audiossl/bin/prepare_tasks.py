"""Make the speech task sets of the SUPERB-style evaluation from the offline mini_tts voices.

    python -m audiossl.bin.prepare_tasks [--tasks pr,ks,ic,speakers] [--size {tiny,full}] [--seed N]
        [--num-workers N] [--no-progress] <mini-tts-corpus-dir> <mini-tts-data-dir> <audio-dir> <data-dir>

Tasks and what they write under <data-dir> (audio under <audio-dir>/<task>, reused when re-run
with the same seed):

  pr        pr/<split>: the mini_tts English splits (from <mini-tts-data-dir>, made by
            prepare_mini_tts) with phoneme transcripts (39 ARPAbet phonemes; no new audio)
  ks        ks/{train,dev,test}: keyword spotting, 10 command words, _unknown_ and _silence_
  ic        ic/{train,dev,test}: intent classification, action / object / location slots
  speakers  speakers/{sid_train,sid_dev,sid_test,asv_train,asv_test}: pseudo-speakers of the
            voices for speaker identification, and verification trials (asv_test/trials)

The audio is synthetic: figures measured on it do not transfer to real speech.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from audiossl.bin.arguments import positive_int
from audiossl.corpora.intents import prepare_intents
from audiossl.corpora.keywords import prepare_keywords
from audiossl.corpora.phonemes import prepare_phoneme_dirs
from audiossl.corpora.speakers import prepare_speakers
from audiossl.errors import reports_user_errors

TASKS = ("pr", "ks", "ic", "speakers")
SYNTHESIZED = {"ks": prepare_keywords, "ic": prepare_intents, "speakers": prepare_speakers}


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.prepare_tasks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {','.join(TASKS)}")
    parser.add_argument("--size", choices=("tiny", "full"), default="full", help="set sizes (default full)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every choice and jitter (default 0)")
    parser.add_argument("--num-workers", type=positive_int, default=2, help="parallel synthesis jobs (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("mini_tts_corpus_dir")
    parser.add_argument("mini_tts_data_dir")
    parser.add_argument("audio_dir")
    parser.add_argument("data_dir")
    args = parser.parse_args(argv)
    tasks = args.tasks.split(",")
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    progress = not args.no_progress and sys.stderr.isatty()
    audio_dir, data_dir = Path(args.audio_dir), Path(args.data_dir)
    for task in tasks:
        if task == "pr":
            prepare_phoneme_dirs(args.mini_tts_corpus_dir, args.mini_tts_data_dir, data_dir / "pr")
        else:
            SYNTHESIZED[task](audio_dir / task, data_dir / task, size=args.size, seed=args.seed,
                              num_workers=args.num_workers, progress=progress)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
