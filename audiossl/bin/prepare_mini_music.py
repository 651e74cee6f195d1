"""Render the offline mini music corpus with fluidsynth and write its Kaldi data dirs.

    python -m audiossl.bin.prepare_mini_music [--size {tiny,full}] [--seed N] [--sample-rates "HZ ..."]
        [--soundfont SF2] [--num-workers N] [--no-progress] <audio-dir> <data-dir>

Clips go to <audio-dir>/<rate>/<set> (reused when re-run with the same seed and soundfont);
data dirs <data-dir>/<rate>/<set>_<split> for each rate (default 16k and 24k), sets notes (NSynth style:
utt2program, utt2family, utt2pitch, utt2velocity), tagging (MagnaTagATune style: utt2tags)
and key (GiantSteps style: utt2key), splits train, dev and test. Each data dir also holds
labels.<label>: the label's classes, one a line. Needs the Debian packages fluidsynth and
fluid-soundfont-gm (or timgm6mb-soundfont).
"""
from __future__ import annotations

import argparse
import logging
import sys

from audiossl.bin.arguments import positive_int, positive_ints
from audiossl.corpora.mini_music import SAMPLE_RATES, SIZES, prepare_mini_music
from audiossl.errors import reports_user_errors


@reports_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.prepare_mini_music", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=tuple(SIZES), default="full", help="corpus size (default full)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every clip (default 0)")
    parser.add_argument("--sample-rates", type=positive_ints, default=list(SAMPLE_RATES), metavar="'HZ ...'",
                        help="sample rates of the data dirs, space separated in one argument: e.g. '16000 24000' "
                             "(the default)")
    parser.add_argument("--soundfont", help="General MIDI .sf2 (default FluidR3_GM, else TimGM6mb)")
    parser.add_argument("--num-workers", type=positive_int, default=2, help="fluidsynth processes at once (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("audio_dir")
    parser.add_argument("data_dir")
    args = parser.parse_args(argv)
    if not args.sample_rates:
        parser.error("--sample-rates: expected one or more rates, e.g. '16000 24000', got none")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_mini_music(args.audio_dir, args.data_dir, size=args.size, seed=args.seed,
                       sample_rates=args.sample_rates, soundfont=args.soundfont, num_workers=args.num_workers,
                       progress=not args.no_progress and sys.stderr.isatty())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
