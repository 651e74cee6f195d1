#!/usr/bin/env bash
# Speaker verification on the mini_tts pseudo-speakers: the ssl recipe's WavLM (iteration 2) fine-tuned
# as a whole under an x-vector head with AAM-softmax on asv_train's 88 speakers, against the same model
# from scratch; cosine scoring of the embeddings on asv_test's trials (44 other speakers): EER and
# minDCF. best.pt is chosen by speaker accuracy on sid_dev (asv_train's speakers, other sentences).
#   ./run.sh                    after ../ssl/run.sh --family wavlm --exp exp_wavlm
#   ./run.sh --size tiny        the tiny speaker sets (seconds; tests)
# Options: ../../../recipes/utterance.sh --help
cd "$(dirname "$0")"
exec ../../../recipes/utterance.sh --corpus speakers \
  --train-set speakers/asv_train --valid-set speakers/sid_dev --test-set speakers/asv_test \
  --label-table utt2spk --eval-task verify --finetune-config conf/finetune.yaml \
  --pretrained ../ssl/exp_wavlm/wavlm_iter2/checkpoints/best.pt \
  --results-section "SV: WavLM, x-vector head with AAM-softmax (conf/finetune.yaml)" \
  --results-command "sv/run.sh${*:+$(printf " %q" "$@")}" "$@"
