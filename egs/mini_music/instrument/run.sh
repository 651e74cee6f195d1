#!/usr/bin/env bash
# Instrument family of single notes (mini_music notes, NSynth style: 16 General MIDI families), 16 kHz:
# the speech-pretrained WavLM of egs/mini_tts/ssl fine-tuned as a whole under a linear head, against
# the same model from scratch; accuracy on notes_test. The section goes to RESULTS.md.
#   ./run.sh                    after ../../mini_tts/ssl/run.sh --family wavlm --exp exp_wavlm
#   ./run.sh --size tiny        the tiny corpus (seconds; tests: add --finetune-args --allow-empty-classes,
#                               its notes_train lacks a family)
# Options: ../../../recipes/utterance.sh --help
cd "$(dirname "$0")"
exec ../../../recipes/utterance.sh --corpus mini_music \
  --train-set 16k/notes_train --valid-set 16k/notes_dev --test-set 16k/notes_test \
  --label-table utt2family --eval-task classify --finetune-config conf/finetune.yaml \
  --pretrained ../../mini_tts/ssl/exp_wavlm/wavlm_iter2/checkpoints/best.pt \
  --results-section "Instrument family: WavLM pretrained on speech, linear head (conf/finetune.yaml)" \
  --results-command "instrument/run.sh${*:+$(printf " %q" "$@")}" "$@"
