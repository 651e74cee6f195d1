#!/usr/bin/env bash
# HuBERT pretraining (two iterations) on mini_tts, the offline synthesized English corpus.
#   ./run.sh                                  everything, demo size (see README for timings)
#   ./run.sh --family F --pretrain1-config C  another model family (C's model.family is F; with k-means
#                                             targets --pretrain2-config too), into exp/F_iter1
#   ./run.sh --stage 3 --stop-stage 3         one stage
#   ./run.sh --prepare-args "--size tiny"     the tiny corpus (seconds; tests)
# Options: ../../../recipes/ssl.sh --help
cd "$(dirname "$0")"
exec ../../../recipes/ssl.sh \
  --feature-sets "train_unlab dev train_10min train_1h test test_unseen" \
  --kmeans1-clusters 100 --kmeans2-clusters 100 --kmeans2-layer 4 --kmeans-n-init 5 \
  --pretrain1-config conf/pretrain1.yaml --pretrain2-config conf/pretrain2.yaml \
  "$@"
