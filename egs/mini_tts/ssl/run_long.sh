#!/usr/bin/env bash
# The long setting of run.sh: the same two HuBERT iterations, longer (iteration 1 for 1,000
# updates instead of 600, iteration 2 for 250 instead of 150), in exp_long/; the same data.
# ../asr/run_long.sh fine-tunes the result for longer too. See ../asr/RESULTS.md for its time.
#   ./run_long.sh             after (or instead of) run.sh: the data stages are shared
# Options: ../../../recipes/ssl.sh --help
cd "$(dirname "$0")"
exec ./run.sh --exp exp_long --kmeans-n-init 20 --pretrain1-config conf/pretrain1_long.yaml --pretrain2-config conf/pretrain2_long.yaml "$@"
