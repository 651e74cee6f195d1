#!/usr/bin/env bash
# Usage: local/prepare_data.sh [options of ../ssl/local/prepare_data.sh] <data-dir>
# mini_tts (../ssl's sets) and its copies in the noisy and radio domains (audiossl.corpora.domains):
# <set>_noisy and <set>_radio of train_unlab, train_1h, dev and test, their audio under
# $mini_tts/domains/<size>; and train_unlab_all, the clean, noisy and radio unlabelled sets together.
set -euo pipefail
size=full
. ./db.sh
for i in $(seq 1 $(($# - 1))); do   # the --size of ../ssl's options, in either form parse_options.sh takes
  case ${!i} in --size) j=$((i + 1)); size=${!j} ;; --size=*) size=${!i#--size=} ;; esac
done
../ssl/local/prepare_data.sh "$@"
data=${*: -1}
for set in train_unlab train_1h dev test; do
  for domain in noisy radio; do
    python3 -m audiossl.bin.data_dir shift --domain $domain $data/$set $data/${set}_$domain $mini_tts/domains/$size
  done
done
utils/combine_data.sh $data/train_unlab_all $data/train_unlab $data/train_unlab_noisy $data/train_unlab_radio
