#!/usr/bin/env bash
# Spanish as a new, low-resource language on mini_tts (the Reina-Valera 1909 read by Spanish voices):
# pretraining settings whose models ../asr_es fine-tunes with CTC on 10 minutes and 1 hour of labels.
#   ./run.sh                         continued pretraining: the English HuBERT of ../ssl (iteration 2)
#                                    continues on train_unlab_es (1.5 h) for 150 updates, on k-means
#                                    targets of its own layer 4 on the Spanish audio (exp_continued)
#   ./run.sh --setting spanish       Spanish-only HuBERT at the same total compute: 850 + 150 updates
#                                    on train_unlab_es, MFCC k-means then layer 4 (exp_spanish)
#   ./run.sh --setting multilingual  English + Spanish HuBERT at the same total compute (WavLabLM style):
#                                    batches of one language, p ∝ hours^1.0 in iteration 1 (850 updates),
#                                    ^0.3 in iteration 2 (150), on train_unlab_en_es (exp_multilingual)
#   ./run.sh --setting asr_targets   ASR-derived targets (GigaAM's HuBERT-CTC, then VietASR's iterations): k-means 1
#                                    on layer 4 of a CTC model trained from scratch on train_1h_es (the scratch
#                                    control of ../asr_es/run.sh, run first), HuBERT from scratch on those targets
#                                    (850 updates, GigaAM's chunkwise attention); that model fine-tuned with CTC on
#                                    train_1h_es, k-means 2 on its layer 4, 150 updates more (exp_asr_targets;
#                                    conf/asr_targets1.yaml, asr_targets2.yaml). --iterations N for N rounds;
#                                    --kmeans1-layer posteriors clusters the CTC model's token posteriors instead
#   ./run.sh --english MODEL         continue another model (an audiossl checkpoint, a Hugging Face dir,
#                                    a fairseq .pt; --inputs wav for a waveform model)
#   ./run.sh --prepare-args "--size tiny"   the tiny corpus (seconds; tests)
# Other options: ../../../recipes/ssl.sh --help
cd "$(dirname "$0")"
set -euo pipefail
setting=continued
english=../ssl/exp/hubert_iter2/checkpoints/best.pt
rest=()
while [ $# -gt 0 ]; do
  case $1 in
    --setting) setting=$2; shift 2 ;;
    --english) english=$2; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
spanish_sets="train_unlab_es dev_es train_10min_es train_1h_es test_es test_unseen_es"
common=(--train-set train_unlab_es --dev-set dev_es --kmeans-n-init 5 --kmeans1-clusters 100 --kmeans2-clusters 100
        --feature-sets "$spanish_sets")
case $setting in
  continued) exec ../../../recipes/ssl.sh "${common[@]}" --exp exp_continued --init "$english" --kmeans1-layer 4 \
    --pretrain1-config conf/continue.yaml --stop-stage 3 "${rest[@]}" ;;
  spanish) exec ../../../recipes/ssl.sh "${common[@]}" --exp exp_spanish --kmeans2-layer 4 \
    --pretrain1-config conf/spanish1.yaml --pretrain2-config conf/pretrain2.yaml "${rest[@]}" ;;
  multilingual) exec ../../../recipes/ssl.sh "${common[@]}" --exp exp_multilingual --kmeans2-layer 4 \
    --train-set train_unlab_en_es --dev-set dev_en_es --feature-sets "train_unlab_en_es dev_en_es $spanish_sets" \
    --pretrain1-config conf/multilingual1.yaml --pretrain2-config conf/multilingual2.yaml "${rest[@]}" ;;
  asr_targets)
    exec ../../../recipes/ssl.sh "${common[@]}" --exp exp_asr_targets --kmeans1-layer 4 \
      --kmeans1-model ../asr_es/exp/ctc_scratch_train_1h_es/checkpoints/best.pt \
      --finetune-set train_1h_es --finetune-config ../asr_es/conf/finetune.yaml --kmeans2-layer 4 \
      --pretrain1-config conf/asr_targets1.yaml --pretrain2-config conf/asr_targets2.yaml "${rest[@]}" ;;
  *) echo "$0: --setting is continued, spanish, multilingual or asr_targets, not '$setting'" >&2; exit 1 ;;
esac
