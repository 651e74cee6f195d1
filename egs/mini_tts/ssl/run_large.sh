#!/usr/bin/env bash
# The large setting of run.sh: the same two HuBERT iterations, pretrained on the "large" corpus
# (the demo's voices with about 9 h in train_unlab instead of 2.2 h; dev, test and the labelled
# subsets are the demo's own) and with iteration 1 twice as long as the long setting's
# (run_long.sh), iteration 2 as long, in data_large/ and exp_large/.
# ../asr/run_large.sh fine-tunes the result. See ../asr/RESULTS.md for its time on this machine.
#   ./run_large.sh
# Options: ../../../recipes/ssl.sh --help
cd "$(dirname "$0")"
exec ./run.sh --prepare-args "--size large" --data data_large --exp exp_large \
  --feature-sets "train_unlab dev" --kmeans-n-init 20 --pretrain1-config conf/pretrain1_large.yaml \
  --pretrain2-config conf/pretrain2_long.yaml "$@"
