#!/usr/bin/env bash
# Domain shift (Robust wav2vec 2.0; the ATC benchmark's radio): which domains should pretraining see?
# One demo-size HuBERT per pretraining domain, each fine-tuned with CTC on 1 hour of clean and of radio
# labels, every model decoded on every test domain: clean, noisy, radio and unseen voices.
#   0  data: mini_tts and its noisy and radio copies (local/prepare_data.sh); features
#   1  pretraining: ../ssl's two HuBERT iterations on train_unlab of each --pretrain-domains
#      (clean, noisy, radio; all: the three together, at the same number of updates)
#   2  CTC fine-tuning on each --finetune-sets, decoding of every test set (no LM), for every
#      pretraining domain and once from scratch (the control: exp_asr_scratch)
#   3  the grid: pretraining domain x fine-tuning set x test domain, CER (--results, RESULTS.md)
#   ./run.sh                                 everything
#   ./run.sh --pretrain-domains "clean radio" --stage 1   two pretraining domains
#   ./run.sh --prepare-args "--size tiny"    the tiny corpus (seconds; tests)
# Options of the recipes it runs: --pretrain-args, --finetune-args ('--set ...' overrides).
cd "$(dirname "$0")"
set -euo pipefail
command_line="domain/run.sh${*:+$(printf " %q" "$@")}"
stage=0
stop_stage=100
pretrain_domains="clean noisy radio all"
finetune_sets="train_1h train_1h_radio"
test_sets="test test_noisy test_radio test_unseen"
kmeans2_layer=4
prepare_args=""
pretrain_args=""
finetune_args=""
data=data
exp=exp
results=RESULTS.md
help_message="Usage: $0 [options]   (stages above)
  --stage N / --stop-stage M      run stages N..M
  --pretrain-domains '...'        clean, noisy, radio, all ($pretrain_domains)
  --finetune-sets '...'           labelled sets fine-tuned on ($finetune_sets)
  --test-sets '...'               sets decoded ($test_sets)
  --data DIR / --exp DIR          where data dirs and experiments go ($data, $exp)
  --results FILE                  where the grid goes ($results)
  --kmeans2-layer L               layer of each iteration-1 model that k-means 2 clusters ($kmeans2_layer)
  --prepare-args / --pretrain-args / --finetune-args '...'   passed to local/prepare_data.sh,
                                  audiossl.bin.pretrain and audiossl.bin.finetune_ctc"
. ./path.sh
. utils/parse_options.sh
. utils/stages.sh   # run_recipe: a signal to this recipe ends the one it runs too
unlab_set() {  # <domain>: its unlabelled training set
  if [ $1 = clean ]; then echo train_unlab; else echo train_unlab_$1; fi
}
sets="dev $finetune_sets $test_sets"
ssl=(../../../recipes/ssl.sh --data $data --dev-set dev --kmeans1-clusters 100 --kmeans2-clusters 100 --kmeans2-layer $kmeans2_layer
     --prepare-args "$prepare_args" --pretrain-args "$pretrain_args")

if run_stage 0; then
  for domain in $pretrain_domains; do
    run_recipe "${ssl[@]}" --exp $exp/pt_$domain --train-set $(unlab_set $domain) --feature-sets "$(unlab_set $domain) $sets" \
      --stop-stage 1
  done
fi

if run_stage 1; then
  for domain in $pretrain_domains; do
    run_recipe "${ssl[@]}" --exp $exp/pt_$domain --train-set $(unlab_set $domain) --feature-sets "$(unlab_set $domain) $sets" \
      --stage 2 --stop-stage 5
  done
fi

if run_stage 2; then
  for domain in $pretrain_domains; do
    run_recipe ../../../recipes/asr.sh --data $data --budgets "$finetune_sets" --test-sets "$test_sets" --lm-text "" \
      --finetune-config conf/finetune.yaml --finetune-jobs 2 --decode-jobs 2 --finetune-args "$finetune_args" \
      --pretrained $exp/pt_$domain/hubert_iter2/checkpoints/best.pt --exp $exp/asr_pt_$domain \
      --scratch-exp $exp/asr_scratch --stop-stage 4
  done
fi

if run_stage 3; then
  grid=""
  for domain in $pretrain_domains; do grid="$grid $domain=$exp/asr_pt_$domain"; done
  python3 -m audiossl.bin.results_table --grid "${grid# } none=$exp/asr_scratch" --budgets "$finetune_sets" \
    --test-sets "$test_sets" --command "$command_line" \
    --section "Pretraining domain x fine-tuning set x test domain (CER %)" $results
fi
echo "$(date +%T) $0: done (stages $stage..$stop_stage)"
