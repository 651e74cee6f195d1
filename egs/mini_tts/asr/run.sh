#!/usr/bin/env bash
# CTC ASR on mini_tts: fine-tuning the ssl recipe's HuBERT (iteration 2) vs the same model
# from scratch, on 10 minutes and 1 hour of labelled speech; decoded on test (seen voices)
# and test_unseen (held-out voices), without and with a word 3-gram LM of the corpus's texts
# (dev and test sentences held out); the table goes to RESULTS.md.
#   ./run.sh                  after ../ssl/run.sh
#   ./run.sh --pretrained ../ssl/exp/F_iter1/checkpoints/best.pt --exp exp_F --scratch-exp exp \
#     --results-section F     another encoder (e.g. of family F), against the same scratch control
# Options: ../../../recipes/asr.sh --help
cd "$(dirname "$0")"
exec ../../../recipes/asr.sh \
  --data ../ssl/data --pretrained ../ssl/exp/hubert_iter2/checkpoints/best.pt \
  --budgets "train_10min train_1h" --test-sets "test test_unseen" --lm-text ../ssl/data/local/lm_text_en.txt \
  --finetune-config conf/finetune.yaml --finetune-jobs 2 --decode-jobs 2 --lm-weights 1,2,3 --word-scores 1,2,3 \
  --results-section "Demo setting (conf/finetune.yaml)" --results-command "ssl/run.sh && asr/run.sh${*:+$(printf " %q" "$@")}" \
  "$@"
