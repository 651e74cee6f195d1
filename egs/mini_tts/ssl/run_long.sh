#!/usr/bin/env bash
# The long setting of run.sh: the same two HuBERT iterations on three times the audio (1000 and
# 250 updates of 40 seconds instead of 700 and 150 of 20), k-means with 20 initializations instead
# of 5, in exp_long/; the same data. ../asr/run_long.sh fine-tunes
# the result for longer too. See ../asr/RESULTS.md for its time on this machine.
#   ./run_long.sh             after (or instead of) run.sh: the data stages are shared
# Options: ../../../recipes/ssl.sh --help
cd "$(dirname "$0")"
exec ./run.sh --exp exp_long --kmeans-n-init 20 --pretrain1-config conf/pretrain1_long.yaml --pretrain2-config conf/pretrain2_long.yaml "$@"
