#!/usr/bin/env bash
# Speaker identification on the mini_tts pseudo-speakers (88 speakers, 4 of each of 22 voices): the
# ssl recipe's WavLM (iteration 2) fine-tuned as a whole under a linear head, against the same model
# from scratch; accuracy on sid_test (the same speakers, other sentences). The section goes to RESULTS.md.
#   ./run.sh                    after ../ssl/run.sh --family wavlm --exp exp_wavlm
#   ./run.sh --pretrained ../ssl/exp/hubert_iter2/checkpoints/best.pt --exp exp_hubert --results-section HuBERT
#   ./run.sh --size tiny        the tiny speaker sets (seconds; tests)
# Options: ../../../recipes/utterance.sh --help
cd "$(dirname "$0")"
exec ../../../recipes/utterance.sh --corpus speakers \
  --train-set speakers/sid_train --valid-set speakers/sid_dev --test-set speakers/sid_test \
  --label-table utt2spk --eval-task classify --finetune-config conf/finetune.yaml \
  --pretrained ../ssl/exp_wavlm/wavlm_iter2/checkpoints/best.pt \
  --results-section "SID: WavLM, linear head (conf/finetune.yaml)" \
  --results-command "sid/run.sh${*:+$(printf " %q" "$@")}" "$@"
