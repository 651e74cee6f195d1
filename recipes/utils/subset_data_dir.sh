#!/usr/bin/env bash
# Usage: utils/subset_data_dir.sh [--first|--random] <src-data-dir> <num-utt> <dest-data-dir>
#        utils/subset_data_dir.sh --utt-list <utt-list> <src-data-dir> <dest-data-dir>
#        utils/subset_data_dir.sh --spk-list <spk-list> <src-data-dir> <dest-data-dir>
# Without --first, the N utterances are chosen at random (seed 0, or --seed S).
mode=--random seed=0
while [ $# -gt 0 ]; do
  case "$1" in
    --first|--random) mode=$1; shift ;;
    --seed) [ $# -ge 2 ] || { echo "$0: missing value for --seed" >&2; exit 1; }; seed=$2; shift 2 ;;
    --utt-list|--spk-list)
      [ $# -eq 4 ] || { sed -n '2,5p' "$0" >&2; exit 1; }
      exec python3 -m audiossl.bin.data_dir subset "$1" "$2" "$3" "$4" ;;
    *) break ;;
  esac
done
[ $# -eq 3 ] || { sed -n '2,5p' "$0" >&2; exit 1; }
exec python3 -m audiossl.bin.data_dir subset "$mode" "$2" --seed "$seed" "$1" "$3"
