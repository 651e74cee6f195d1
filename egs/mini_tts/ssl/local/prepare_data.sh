#!/usr/bin/env bash
# Usage: local/prepare_data.sh [--size full|large|tiny] [--seed N] [--languages en[,es]] <data-dir>
# Synthesizes the offline corpus mini_tts (Debian's speech engines) into $mini_tts (db.sh)
# and writes its Kaldi data dirs: train_unlab train_1h train_10min dev test test_unseen, and with
# --languages en,es the same Spanish sets ending in _es.
# "large" is "full" with more unlabelled audio: the two share their audio dir.
set -euo pipefail
size=full
seed=0
languages=en
. ./db.sh
. utils/parse_options.sh
[ $# -eq 1 ] || { echo "usage: $0 [--size full|large|tiny] [--seed N] [--languages en[,es]] <data-dir>" >&2; exit 1; }
python3 -m audiossl.bin.prepare_mini_tts --size $size --seed $seed --languages $languages $mini_tts/${size/large/full} $1
