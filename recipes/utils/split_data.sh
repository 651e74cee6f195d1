#!/usr/bin/env bash
# Usage: utils/split_data.sh [--per-utt] <data-dir> <num-to-split>
# Writes <data-dir>/split<N>/{1..N} (by speaker) or <data-dir>/split<N>utt/{1..N} (--per-utt).
# Keeps a split of the same tables (their checksum, recorded in it) as it is.
per_utt=""
[ "${1:-}" = --per-utt ] && { per_utt=--per-utt; shift; }
[ $# -eq 2 ] || { sed -n '2,4p' "$0" >&2; exit 1; }
exec python3 -m audiossl.bin.data_dir split $per_utt "$1" "$2"
