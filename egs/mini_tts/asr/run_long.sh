#!/usr/bin/env bash
# The long setting of run.sh: the encoder of ../ssl/run_long.sh fine-tuned for 1,500 CTC updates
# of 40 seconds per model (conf/finetune_long.yaml: 30 % masked, all layers) instead of 250 of 20,
# in exp_long/; its table goes into its own section
# of RESULTS.md (with its time on this machine).
#   ./run_long.sh             after ../ssl/run_long.sh
# Options: ../../../recipes/asr.sh --help
cd "$(dirname "$0")"
exec ./run.sh --pretrained ../ssl/exp_long/hubert_iter2/checkpoints/best.pt \
  --finetune-config conf/finetune_long.yaml --finetune-jobs 1 --decode-jobs 1 \
  --lm-weights 1,2,3,4 --word-scores 0,1,2,3 --exp exp_long \
  --results-section "Long setting (conf/finetune_long.yaml)" \
  --results-command "ssl/run_long.sh && asr/run_long.sh${*:+$(printf " %q" "$@")}" "$@"
