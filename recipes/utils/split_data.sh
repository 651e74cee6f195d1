#!/usr/bin/env bash
# Usage: utils/split_data.sh [--per-utt] [--no-feats] <data-dir> <num-to-split>
# Writes <data-dir>/split<N>/{1..N} (by speaker) or <data-dir>/split<N>utt/{1..N} (--per-utt),
# without the feature tables with --no-feats (features are to be made from the split).
# Keeps a split of the same tables (their checksum, recorded in it) as it is.
opts=()
while [ "${1:-}" = --per-utt ] || [ "${1:-}" = --no-feats ]; do opts+=("$1"); shift; done
[ $# -eq 2 ] || { sed -n '2,5p' "$0" >&2; exit 1; }
exec python3 -m audiossl.bin.data_dir split "${opts[@]}" "$1" "$2"
