"""Kaldi-compatible features for one data dir (one job of ``steps/make_{fbank,mfcc}.sh``).

    python -m audiossl.bin.compute_feats extract --kind fbank [--config conf/fbank.conf] <data-dir> <out.ark>
        writes <out.ark>, <out.scp> and <out>.utt2num_frames
    python -m audiossl.bin.compute_feats merge <data-dir> <job1.scp> <job2.scp> ...
        writes <data-dir>/feats.scp and utt2num_frames from the jobs' outputs
    python -m audiossl.bin.compute_feats cmvn [--per-utt] <data-dir> <out.ark>
        writes CMVN statistics and <data-dir>/cmvn.scp
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiossl.data.kaldi_dir import FEATURE_TABLES, DataDir, merge_tables, write_tables
from audiossl.errors import reports_user_errors
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.features.store import FeatureError, compute_cmvn, compute_features


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.compute_feats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("extract", help="compute features of a data dir into an ark/scp pair")
    p.add_argument("--kind", choices=("fbank", "mfcc"), required=True)
    p.add_argument("--config", help="Kaldi config file (--num-mel-bins=80 ... one per line)")
    p.add_argument("data_dir")
    p.add_argument("ark")
    p = sub.add_parser("merge", help="merge per-job scp files into <data-dir>/feats.scp")
    p.add_argument("data_dir")
    p.add_argument("scps", nargs="+")
    p = sub.add_parser("cmvn", help="CMVN statistics per speaker (or per utterance)")
    p.add_argument("--per-utt", action="store_true")
    p.add_argument("data_dir")
    p.add_argument("ark")
    args = parser.parse_args(argv)

    if args.command == "extract":
        import torch

        torch.set_num_threads(1)  # one of several parallel jobs; more threads slow these small operations
        extractor = FeatureExtractor(FeatureConfig.from_file(args.kind, args.config))
        data = DataDir.read(args.data_dir, needs=("wav.scp",))
        num_frames = compute_features(data, extractor, args.ark, progress=sys.stderr.isatty())
        print(f"{args.data_dir}: {len(num_frames)} utterances, {sum(num_frames.values())} frames", file=sys.stderr)
    elif args.command == "merge":
        data = DataDir.read(args.data_dir, without=FEATURE_TABLES)
        feats = merge_tables(args.scps)
        frames = merge_tables(Path(s).with_suffix(".utt2num_frames") for s in args.scps)
        missing = sorted(set(data.utterances) - set(feats))
        if missing:
            raise FeatureError(f"no features for {len(missing)} utterance(s) of {args.data_dir}, "
                               f"e.g. '{missing[0]}'")
        write_tables(args.data_dir, {"feats.scp": feats, "utt2num_frames": frames})
    elif args.command == "cmvn":
        data = DataDir.read(args.data_dir, needs=("feats.scp",) if args.per_utt else ("feats.scp", "utt2spk"),
                            without=("cmvn.scp",))
        write_tables(args.data_dir, {"cmvn.scp": compute_cmvn(data, args.ark, per_speaker=not args.per_utt)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
