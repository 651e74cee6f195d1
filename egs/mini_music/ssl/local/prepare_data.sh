#!/usr/bin/env bash
# Usage: local/prepare_data.sh [--size full|tiny] [--seed N] <data-dir>
# Renders the offline music corpus mini_music (fluidsynth, a General MIDI soundfont) into
# $AUDIOSSL_CORPORA/mini_music and writes its data dirs under <data-dir>/{16k,24k}; then the
# pretraining sets: train and dev, the 24 kHz clips of every set (notes, tagging, key) without labels.
set -euo pipefail
size=full
seed=0
nj=2
. ./db.sh
. utils/parse_options.sh
[ $# -eq 1 ] || { echo "usage: $0 [--size full|tiny] [--seed N] <data-dir>" >&2; exit 1; }
data=$1
python3 -m audiossl.bin.prepare_mini_music --size $size --seed $seed --num-workers $nj \
  $AUDIOSSL_CORPORA/mini_music $data
for split in train dev; do
  utils/combine_data.sh $data/$split $data/24k/notes_$split $data/24k/tagging_$split $data/24k/key_$split
done
