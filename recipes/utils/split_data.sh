#!/usr/bin/env bash
# Usage: utils/split_data.sh [--per-utt] <data-dir> <num-to-split>
# Writes <data-dir>/split<N>/{1..N} (by speaker) or <data-dir>/split<N>utt/{1..N} (--per-utt).
# Skips the work when the split is already newer than the data dir's tables.
per_utt=""
[ "${1:-}" = --per-utt ] && { per_utt=--per-utt; shift; }
[ $# -eq 2 ] || { sed -n '2,4p' "$0" >&2; exit 1; }
dir=$1/split$2${per_utt:+utt}
if [ -f "$dir/$2/utt2spk" ] && [ -z "$(find "$1" -maxdepth 1 -type f -newer "$dir/$2/utt2spk")" ]; then
  exit 0
fi
exec python3 -m audiossl.bin.data_dir split $per_utt "$1" "$2"
