#!/usr/bin/env bash
# The large setting: the long setting's fine-tuning (conf/finetune_long.yaml) of the encoder that
# ../ssl/run_large.sh pretrained on about 9 h instead of 2.2 h. The labelled and test sets are the
# demo's, so the scratch control is the long setting's own (exp_long/, trained there if missing);
# the pretrained models go to exp_large/ and the table into its own section of RESULTS.md.
#   ./run_large.sh            after ../ssl/run_large.sh
# Options: ../../../recipes/asr.sh --help
cd "$(dirname "$0")"
exec ./run.sh --pretrained ../ssl/exp_large/hubert_iter2/checkpoints/best.pt \
  --finetune-config conf/finetune_long.yaml --finetune-jobs 1 --decode-jobs 1 \
  --lm-weights 1,2,3,4 --word-scores 0,1,2,3 --exp exp_large --scratch-exp exp_long \
  --results-section "Large setting (conf/finetune_long.yaml, pretrained on 9 h)" \
  --results-command "ssl/run_large.sh && asr/run_large.sh${*:+$(printf " %q" "$@")}" "$@"
