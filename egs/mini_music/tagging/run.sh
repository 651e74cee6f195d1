#!/usr/bin/env bash
# Music tagging (mini_music tagging, MagnaTagATune style: 16 instrument tags, 2-4 a clip), 16 kHz: the
# speech-pretrained WavLM of egs/mini_tts/ssl fine-tuned as a whole under a multilabel head, against
# the same model from scratch; macro ROC-AUC and mAP on tagging_test. The section goes to RESULTS.md.
#   ./run.sh                    after ../../mini_tts/ssl/run.sh --family wavlm --exp exp_wavlm
#   ./run.sh --size tiny        the tiny corpus (seconds; tests: add --finetune-args --allow-empty-classes,
#                               its tagging_train lacks some tags)
# Options: ../../../recipes/utterance.sh --help
cd "$(dirname "$0")"
exec ../../../recipes/utterance.sh --corpus mini_music \
  --train-set 16k/tagging_train --valid-set 16k/tagging_dev --test-set 16k/tagging_test \
  --label-table utt2tags --eval-task classify --finetune-config conf/finetune.yaml \
  --pretrained ../../mini_tts/ssl/exp_wavlm/wavlm_iter2/checkpoints/best.pt \
  --results-section "Tagging: WavLM pretrained on speech, multilabel head (conf/finetune.yaml)" \
  --results-command "tagging/run.sh${*:+$(printf " %q" "$@")}" "$@"
