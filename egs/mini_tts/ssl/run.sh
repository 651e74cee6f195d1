#!/usr/bin/env bash
# Self-supervised pretraining on mini_tts, the offline synthesized English corpus: HuBERT (two
# iterations) by default, any family with --family (its configs: conf/<family>*.yaml).
#   ./run.sh                                  HuBERT, everything, demo size (see README for timings)
#   ./run.sh --family wavlm                   WavLM (conf/wavlm1.yaml, conf/wavlm2.yaml; noise set mixed in)
#   ./run.sh --family unispeech_sat           UniSpeech-SAT (conf/unispeech_sat1.yaml, conf/unispeech_sat2.yaml)
#   ./run.sh --family wav2vec2                wav2vec 2.0 (conf/wav2vec2.yaml; one run, no k-means)
#   ./run.sh --family ssamba                  SSAMBA (conf/ssamba.yaml; masked patches, bidirectional Mamba)
#   ./run.sh --family tera                    TERA (conf/tera.yaml; altered fbank reconstructed, 100 frames/s)
#   ./run.sh --exp exp_mamba_hubert --pretrain1-config conf/mamba_hubert1.yaml --pretrain2-config conf/mamba_hubert2.yaml
#   ./run.sh --stage 3 --stop-stage 3         one stage
#   ./run.sh --prepare-args "--size tiny"     the tiny corpus (seconds; tests)
# Later options override the family's defaults (e.g. --pretrain1-config). Options: ../../../recipes/ssl.sh --help
cd "$(dirname "$0")"
family=hubert
args=("$@")
for i in "${!args[@]}"; do
  case ${args[$i]} in --family) family=${args[$((i + 1))]:-} ;; --family=*) family=${args[$i]#--family=} ;; esac
done
case $family in
  hubert) defaults=(--pretrain1-config conf/pretrain1.yaml --pretrain2-config conf/pretrain2.yaml) ;;
  wavlm) defaults=(--pretrain1-config conf/wavlm1.yaml --pretrain2-config conf/wavlm2.yaml --noise-set noise) ;;
  unispeech_sat) defaults=(--pretrain1-config conf/unispeech_sat1.yaml --pretrain2-config conf/unispeech_sat2.yaml) ;;
  *) defaults=(--pretrain1-config conf/$family.yaml) ;;
esac
exec ../../../recipes/ssl.sh \
  --feature-sets "train_unlab dev train_10min train_1h test test_unseen" \
  --kmeans1-clusters 100 --kmeans2-clusters 100 --kmeans2-layer 4 --kmeans-n-init 5 \
  "${defaults[@]}" "$@"
