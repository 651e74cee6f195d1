#!/usr/bin/env bash
# Spanish CTC ASR on mini_tts: a model of ../ssl_es (or the English one) fine-tuned on 10 minutes and
# 1 hour of Spanish labels against the same model from scratch; decoded on test_es (seen voices) and
# test_unseen_es (held-out voices), without and with a word 3-gram LM of the Spanish texts. Each
# setting's table goes to its section of RESULTS.md; the scratch control (exp) is shared.
#   ./run.sh                         the English HuBERT continued on Spanish (../ssl_es/run.sh)
#   ./run.sh --setting english       the English HuBERT of ../ssl fine-tuned directly
#   ./run.sh --setting spanish       the Spanish-only HuBERT (../ssl_es/run.sh --setting spanish)
#   ./run.sh --setting multilingual  the English + Spanish HuBERT (../ssl_es/run.sh --setting multilingual)
#   ./run.sh --setting self_training the continued HuBERT again, one round of self-training: the models of ./run.sh
#                                    pseudo-label train_unlab_es with the LM, the more confident half joins the labels
#   ./run.sh --setting asr_targets   the HuBERT pretrained on ASR-derived targets with chunkwise attention
#                                    (../ssl_es/run.sh --setting asr_targets, after this recipe's scratch control:
#                                    run any setting first), also decoded in chunks of 10 and 25 frames (streaming)
# Other options: ../../../recipes/asr.sh --help
cd "$(dirname "$0")"
set -euo pipefail
setting=continued
rest=()
while [ $# -gt 0 ]; do
  case $1 in
    --setting) setting=$2; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
case $setting in
  continued) model=(--pretrained ../ssl_es/exp_continued/hubert_iter1/checkpoints/best.pt --exp exp
                    --results-section "English HuBERT continued on Spanish (conf/finetune.yaml)") ;;
  english) model=(--pretrained ../ssl/exp/hubert_iter2/checkpoints/best.pt --exp exp_english --scratch-exp exp
                  --results-section "English HuBERT, no Spanish pretraining (conf/finetune.yaml)") ;;
  spanish) model=(--pretrained ../ssl_es/exp_spanish/hubert_iter2/checkpoints/best.pt --exp exp_spanish --scratch-exp exp
                  --results-section "Spanish-only HuBERT (conf/finetune.yaml)") ;;
  multilingual) model=(--pretrained ../ssl_es/exp_multilingual/hubert_iter2/checkpoints/best.pt --exp exp_multilingual
                       --scratch-exp exp --results-section "English + Spanish HuBERT (conf/finetune.yaml)") ;;
  self_training) model=(--pretrained ../ssl_es/exp_continued/hubert_iter1/checkpoints/best.pt --exp exp_self_training
                        --pseudo-label-from exp --unlabelled-set train_unlab_es
                        --results-section "English HuBERT continued on Spanish, one round of self-training (conf/finetune.yaml)") ;;
  asr_targets) model=(--pretrained ../ssl_es/exp_asr_targets/hubert_iter2/checkpoints/best.pt --exp exp_asr_targets
                      --scratch-exp exp --chunk-frames "10 25"
                      --results-section "HuBERT on ASR-derived targets, two iterations (conf/finetune.yaml)") ;;
  *) echo "$0: --setting is continued, english, spanish, multilingual, self_training or asr_targets, not '$setting'" >&2
     exit 1 ;;
esac
exec ../../../recipes/asr.sh \
  --data ../ssl_es/data --budgets "train_10min_es train_1h_es" --dev-set dev_es --test-sets "test_es test_unseen_es" \
  --lm-text ../ssl_es/data/local/lm_text_es.txt \
  --finetune-config conf/finetune.yaml --finetune-jobs 2 --decode-jobs 2 --lm-weights 1,2,3 --word-scores 1,2,3 \
  "${model[@]}" --results-command "asr_es/run.sh --setting $setting${rest[*]:+$(printf " %q" "${rest[@]}")}" "${rest[@]}"
