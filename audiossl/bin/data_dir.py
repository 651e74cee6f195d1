"""Kaldi data dir tools behind ``recipes/utils/*.sh``.

    python -m audiossl.bin.data_dir validate [--no-text] [--no-wav] [--no-feats] [--no-decode] <data-dir>
    python -m audiossl.bin.data_dir fix <data-dir>
    python -m audiossl.bin.data_dir copy <src> <dest>
    python -m audiossl.bin.data_dir subset (--first N | --random N | --utt-list F | --spk-list F) <src> <dest>
    python -m audiossl.bin.data_dir combine <dest> <src>...
    python -m audiossl.bin.data_dir split [--per-utt] [--no-feats] <data-dir> <num-parts>
    python -m audiossl.bin.data_dir spk2utt < utt2spk > spk2utt
    python -m audiossl.bin.data_dir shift --domain noisy|radio [--seed S] [--nj N] <src> <dest> <audio-dir>
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiossl.bin.arguments import positive_int
from audiossl.data.kaldi_dir import (FEATURE_TABLES, DataDir, DataDirError, check_not_a_source, combine_data_dirs,
                                     fix_data_dir, spk2utt_from_utt2spk, subset_utterances, unfinished_write,
                                     write_split)
from audiossl.data.validate import validate_data_dir
from audiossl.errors import reports_user_errors


def _keys(path: str) -> list[str]:
    with open(path, encoding="utf-8-sig") as f:   # a byte order mark is no part of the first key
        return [line.split()[0] for line in f if line.strip()]


def _read_utt2spk(lines) -> dict[str, str]:
    """``utt spk`` lines as a dict; DataDirError naming a line without a speaker."""
    utt2spk = {}
    for number, line in enumerate(lines, 1):
        if line.strip():
            fields = line.split(maxsplit=1)
            if len(fields) < 2:
                raise DataDirError(f"<stdin>:{number}: expected 'utterance speaker', got '{line.strip()}'")
            utt2spk[fields[0]] = fields[1].strip()
    return utt2spk


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.data_dir", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a data dir; print each problem as file:line: message")
    p.add_argument("--no-text", action="store_true", help="do not require text")
    p.add_argument("--no-wav", action="store_true", help="do not require wav.scp")
    p.add_argument("--no-feats", action="store_true",
                   help="leave out the feature tables (feats.scp, cmvn.scp, utt2num_frames): features are to be made")
    p.add_argument("--no-decode", action="store_true", help="do not open the audio")
    p.add_argument("data_dir")

    p = sub.add_parser("fix", help="sort, drop duplicates and utterances missing from any table (backup in .backup/)")
    p.add_argument("data_dir")

    p = sub.add_parser("copy", help="copy a data dir without its features (feats.scp, cmvn.scp, utt2num_frames)")
    p.add_argument("src")
    p.add_argument("dest")

    p = sub.add_parser("subset", help="copy a subset of utterances into a new data dir")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--first", type=positive_int, help="the first N utterances")
    group.add_argument("--random", type=positive_int, help="N utterances at random (--seed)")
    group.add_argument("--utt-list", help="a file whose first column lists utterances")
    group.add_argument("--spk-list", help="a file whose first column lists speakers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("src")
    p.add_argument("dest")

    p = sub.add_parser("combine", help="concatenate data dirs")
    p.add_argument("dest")
    p.add_argument("src", nargs="+")

    p = sub.add_parser("split", help="split into <data-dir>/split<N>[utt]/{1..N}")
    p.add_argument("--per-utt", action="store_true", help="split by utterance, not by speaker")
    p.add_argument("--no-feats", action="store_true",
                   help="leave out the feature tables (feats.scp, cmvn.scp, utt2num_frames): features are to be made")
    p.add_argument("data_dir")
    p.add_argument("num_parts", type=positive_int)

    sub.add_parser("spk2utt", help="utt2spk on stdin to spk2utt on stdout")

    p = sub.add_parser("shift", help="a copy in another acoustic domain (audiossl.corpora.domains): its audio "
                       "written under <audio-dir>/<domain>/, utterances renamed <utt>-<domain>")
    p.add_argument("--domain", required=True, help="noisy or radio")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nj", type=positive_int, default=2, help="utterances made at once")
    p.add_argument("src")
    p.add_argument("dest")
    p.add_argument("audio_dir")
    args = parser.parse_args(argv)

    if args.command == "validate":
        has_feats = (Path(args.data_dir) / "feats.scp").is_file()
        without = FEATURE_TABLES if args.no_feats else ()
        problems = validate_data_dir(args.data_dir, check_text=not args.no_text, check_wav=not args.no_wav,
                                     check_feats=has_feats and not args.no_feats,
                                     decode_audio=not args.no_decode, progress=sys.stderr.isatty(), without=without)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            fixable = unfinished_write(Path(args.data_dir)) is None   # fix refuses a dir whose write stopped midway
            hint = "; utils/fix_data_dir.sh fixes missing/extra/unsorted entries" if fixable else ""
            print(f"{args.data_dir}: {len(problems)} problem(s){hint}", file=sys.stderr)
            return 1
        print(f"{args.data_dir}: valid ({len(DataDir.read(args.data_dir, without=without).utterances)} utterances)",
              file=sys.stderr)
    elif args.command == "fix":
        for problem in fix_data_dir(args.data_dir):
            print(problem, file=sys.stderr)
        print(f"{args.data_dir}: {len(DataDir.read(args.data_dir).utterances)} utterances after fixing",
              file=sys.stderr)
    elif args.command == "copy":
        check_not_a_source(args.dest, [args.src])
        DataDir.read(args.src, without=FEATURE_TABLES).write(args.dest)
    elif args.command == "subset":
        check_not_a_source(args.dest, [args.src])
        data = DataDir.read(args.src, needs=("utt2spk",) if args.spk_list else ())
        if args.utt_list or args.spk_list:
            subset = subset_utterances(data, utt_list=_keys(args.utt_list) if args.utt_list else None,
                                       speakers=_keys(args.spk_list) if args.spk_list else None)
        else:
            subset = subset_utterances(data, num=args.first or args.random, first=args.first is not None,
                                       seed=args.seed)
        subset.write(args.dest)
    elif args.command == "combine":
        check_not_a_source(args.dest, args.src)
        combine_data_dirs(args.src).write(args.dest)
    elif args.command == "split":
        write_split(args.data_dir, args.num_parts, per_speaker=not args.per_utt,
                    without=FEATURE_TABLES if args.no_feats else ())
    elif args.command == "shift":
        from audiossl.corpora.domains import shift_domain   # numpy, scipy: not for the other commands

        shifted = shift_domain(args.src, args.dest, args.audio_dir, args.domain, args.seed, args.nj,
                               progress=sys.stderr.isatty())
        print(f"{args.dest}: {len(shifted.utterances)} utterances, {args.domain}", file=sys.stderr)
    elif args.command == "spk2utt":
        for spk, utts in spk2utt_from_utt2spk(_read_utt2spk(sys.stdin)).items():
            print(spk, utts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
