#!/usr/bin/env bash
# MERT pretraining on mini_music, the offline General MIDI corpus: the 24 kHz clips of every set
# (notes, tagging, key; 3.6 h) without their labels. Stage 2 trains the residual-VQ teacher on
# log-mel and writes its 8 codes per frame; stage 3 pretrains MERT to predict them (plus CQT
# reconstruction and in-batch mixing).
#   ./run.sh                                   everything (conf/mert.yaml)
#   ./run.sh --targets kmeans --exp exp_v0     MERT-v0 (conf/mert_v0.yaml): k-means on log-mel + chroma,
#                                              one codebook, two iterations as HuBERT
#   ./run.sh --prepare-args "--size tiny"      the tiny corpus (seconds; tests)
# Then the checkpoint through ../instrument, ../tagging and ../../mini_tts/superb (music tasks).
# Options: ../../../recipes/ssl.sh --help
cd "$(dirname "$0")"
set -euo pipefail
targets=rvq
args=("$@")
for i in "${!args[@]}"; do
  case ${args[$i]} in --targets) targets=${args[$((i + 1))]:-} ;; --targets=*) targets=${args[$i]#--targets=} ;; esac
done
config=conf/mert.yaml
[ "$targets" = kmeans ] && config=conf/mert_v0.yaml
exec ../../../recipes/ssl.sh --family mert --inputs wav --train-set train --dev-set dev --feature-sets "" \
  --kmeans1-features logmel_chroma --kmeans1-clusters 100 --kmeans2-clusters 100 --kmeans2-layer 4 \
  --pretrain1-config $config --pretrain2-config $config --rvq-args "--codebooks 8 --codebook-size 256" "$@"
