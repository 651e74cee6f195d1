#!/usr/bin/env bash
# Self-supervised pretraining of a model family (--family, default HuBERT) from raw audio
# (Kaldi-style stages). Families with k-means targets (HuBERT) train two iterations, the second
# on clusters of the first model; MERT (residual-VQ targets) and the families that make their own
# targets train once. With --init, iteration 1 continues pretraining that model on the recipe's data
# (continued pretraining on a new language): k-means 1 clusters a layer of it instead of MFCC.
# Called by egs/<corpus>/ssl/run.sh, from that directory (utils/, steps/, local/ there).
#   0  prepare data dirs                 (local/prepare_data.sh <data> of the recipe)
#   1  features: 80-dim fbank (model inputs; none with --inputs wav); with k-means targets on
#      MFCC, 13-dim MFCC at 20 ms (iteration-1 targets) of train and dev
#   2  k-means 1 on MFCC (per-utterance CMVN) + deltas (39-dim), on the music features of
#      --kmeans1-features, or on layer --init-layer of the --init model; labels for train and dev
#      (k-means targets)
#      residual-VQ teacher on log-mel of the training audio, its codes for train and dev  (rvq targets)
#   3  pretraining, iteration 1          (exp/<family>_iter1; from the --init model when given)
#   4  k-means 2 on a layer of the iteration-1 model, labels for train and dev  (k-means targets)
#   5  pretraining, iteration 2          (exp/<family>_iter2; k-means targets)
# A finished stage leaves a .done marker and is skipped when run again; an interrupted
# training stage continues from its last checkpoint.
set -euo pipefail

stage=0
stop_stage=100
family=hubert             # the model family (audiossl.bin.pretrain --family); exp dirs <family>_iter<N>
targets=""                # kmeans|rvq|none (default: the family's own, python3 -m audiossl.bin.models --target-kind)
inputs=fbank              # what the model trains on: fbank (<set>_fbank feature dirs) or wav (the data dirs' audio)
data=data                 # where the data dirs go (features inside them)
nj=2                      # parallel jobs for features and labels
train_set=train_unlab
dev_set=dev
feature_sets="train_unlab dev"   # every set that gets features (add the fine-tuning sets)
fbank_config=conf/fbank.conf
mfcc_config=conf/mfcc.conf
kmeans1_clusters=100
kmeans2_clusters=100
kmeans_max_frames=200000
kmeans_fit_utts=1000      # k-means is fitted on this many random training utterances (0: all)
kmeans_n_init=20          # k-means++ initializations tried, the best kept (fairseq's 20)
kmeans2_layer=4           # hidden state of the iteration-1 model clustered for iteration 2
kmeans1_features=mfcc     # k-means 1 clusters: mfcc (HuBERT) or logmel_chroma (MERT-v0, 75 frames/s of the audio)
rvq_args=""               # options for python -m audiossl.bin.rvq fit (e.g. "--codebooks 8 --updates 2000")
pretrain1_config=conf/pretrain1.yaml
pretrain2_config=conf/pretrain2.yaml
iter2_from_iter1=true     # iteration 2 starts from the iteration-1 model (false: from scratch, as the paper)
init=""                   # continue pretraining this model (checkpoint, Hugging Face dir, fairseq .pt) in iteration 1
init_layer=4              # with --init and k-means targets: the hidden state of that model k-means 1 clusters
keep_optimizer=false      # with --init: keep its optimizer moments and schedule position (a training checkpoint)
noise_set=""              # noise data dir under $data for a run config's mixing section (e.g. noise)
pretrain_args=""          # extra options for audiossl.bin.pretrain, e.g. "--set trainer.max_updates=10"
launcher=""               # e.g. "torchrun --nproc-per-node 2" (default: one process)
prepare_args=""           # options for the recipe's local/prepare_data.sh (e.g. "--size tiny")
exp=exp
help_message="Usage: $0 [options]   (run from egs/<corpus>/ssl)
  --stage N / --stop-stage M   run stages N..M (default 0..100)
  --family F                   model family pretrained ($family; python3 -m audiossl.bin.models lists them);
                               its run configs' model.family must be F; models go to EXP/F_iter1 (and _iter2)
  --targets kmeans|rvq|none    what the model predicts (default: the family's own kind). kmeans: stages 2-5,
                               labels of k-means on MFCC, then on the iteration-1 model; rvq: stage 2 trains
                               a residual-VQ teacher whose codes stage 3 predicts (MERT); none: the model
                               makes its own targets: stage 3 only, stages 2, 4, 5 do nothing
  --inputs fbank|wav           the model's training inputs: fbank feature dirs or the audio ($inputs)
  --kmeans1-features mfcc|logmel_chroma   what k-means 1 clusters ($kmeans1_features)
  --rvq-args '...'             options for python -m audiossl.bin.rvq fit
  --data DIR / --exp DIR       where data dirs and experiments go (data, exp); k-means dirs (EXP/kmeans1,
                               EXP/kmeans2) are not per family: give each k-means family its own --exp
  --train-set S / --dev-set S  pretraining and validation sets ($train_set, $dev_set)
  --feature-sets '...'         sets that get fbank features: add the fine-tuning and test sets ($feature_sets)
  --fbank-config F / --mfcc-config F   Kaldi feature configs ($fbank_config, $mfcc_config)
  --nj N                       parallel jobs for features and k-means labels ($nj)
  --kmeans1-clusters K / --kmeans2-clusters K / --kmeans2-layer L
  --kmeans-max-frames N        frames k-means is fitted on at most ($kmeans_max_frames)
  --kmeans-fit-utts N          fit k-means on N random training utterances, 0: all ($kmeans_fit_utts)
  --kmeans-n-init N            k-means++ initializations tried ($kmeans_n_init)
  --pretrain1-config F / --pretrain2-config F   YAML run configs
  --iter2-from-iter1 true|false  start iteration 2 from the iteration-1 weights ($iter2_from_iter1)
  --init MODEL                 continued pretraining: iteration 1 starts from MODEL (an audiossl checkpoint, a
                               Hugging Face dir or a fairseq .pt of the same family), keeping its config (a run
                               config that differs is refused by name); its k-means 1 clusters layer
                               --init-layer of MODEL on the recipe's data; --inputs must be what MODEL reads
  --init-layer L               hidden state of the --init model clustered by k-means 1 ($init_layer)
  --keep-optimizer true|false  with --init: keep its AdamW moments and schedule position ($keep_optimizer)
  --noise-set S                noise data dir under DATA mixed into training audio by a run config's mixing
                               section (WavLM's denoising; none by default)
  --prepare-args '...'         options for local/prepare_data.sh
  --pretrain-args '...'        extra options for python -m audiossl.bin.pretrain
  --launcher '...'             e.g. 'torchrun --nproc-per-node 2' for DDP"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/stages.sh
python=${launcher:-python3}
targets=${targets:-$(python3 -m audiossl.bin.models --target-kind $family)}
case $targets in kmeans|rvq|none) ;; *) echo "$0: --targets is kmeans, rvq or none, not '$targets'" >&2; exit 1 ;; esac
case $inputs in fbank) input_suffix=_fbank ;; wav) input_suffix="" ;;
  *) echo "$0: --inputs is fbank or wav, not '$inputs'" >&2; exit 1 ;; esac
case $kmeans1_features in mfcc) kmeans1_options=(mfcc --utt-cmvn --deltas 2) ;;
  logmel_chroma) kmeans1_options=("" --music-features logmel_chroma --utt-cmvn) ;;
  *) echo "$0: --kmeans1-features is mfcc or logmel_chroma, not '$kmeans1_features'" >&2; exit 1 ;; esac
iter1=$exp/${family}_iter1 iter2=$exp/${family}_iter2   # the two iterations' models

kmeans_targets() {  # <stage> <what>: true with k-means targets, else logs that the stage does not apply
  [ $targets = kmeans ] && return
  echo "$(date +%T) stage $1: $2: does not apply to $family (targets: $targets)"; return 1
}

if run_stage 0; then
  if [ -n "$noise_set" ] && [ -f $data/.done.prepare ] && [ ! -d $data/$noise_set ]; then
    echo "$(date +%T) stage 0: $data has no $noise_set set (prepared before it existed): preparing again"
    rm $data/.done.prepare
  fi
  done_or_log $data/.done.prepare "stage 0: preparing data dirs in $data" || {
    local/prepare_data.sh $prepare_args $data
    for set in $feature_sets; do utils/validate_data_dir.sh --no-feats $data/$set; done
    [ -z "$noise_set" ] || utils/validate_data_dir.sh --no-feats --no-text $data/$noise_set
    touch $data/.done.prepare
  }
fi

if run_stage 1; then
  for set in $feature_sets; do
    kinds=""   # fbank for fbank inputs; MFCC (k-means 1's features) only for the sets k-means labels
    [ $inputs = fbank ] && kinds=fbank
    if [ $targets = kmeans ] && [ $kmeans1_features = mfcc ] && [ -z "$init" ] && { [ $set = $train_set ] || [ $set = $dev_set ]; }; then
      kinds="$kinds mfcc"
    fi
    for kind in $kinds; do   # each dir marked done on its own (<set>_<kind>/.done), as asr.sh's
      config=${kind}_config
      steps/make_feature_dir.sh --nj $nj --cmd "$feats_cmd" $kind "${!config}" $data/$set $data/${set}_$kind $exp/make_$kind/$set
    done
  done
fi

labels() {  # <iteration> <features-data-suffix or ""> <extra apply/fit options...>: fit k-means, label train and dev
  local it=$1 suffix=${2:+_$2}; shift 2
  local dir=$exp/kmeans$it clusters fit_data=$data/${train_set}$suffix
  clusters=kmeans${it}_clusters
  if [ "$kmeans_fit_utts" -gt 0 ] && [ "$(wc -l < $fit_data/utt2spk)" -gt "$kmeans_fit_utts" ]; then
    utils/subset_data_dir.sh $fit_data $kmeans_fit_utts $dir/fit_data
    fit_data=$dir/fit_data
  fi
  python3 -m audiossl.bin.kmeans fit --num-clusters ${!clusters} --max-frames $kmeans_max_frames --n-init $kmeans_n_init "$@" \
    $fit_data $dir/kmeans.safetensors 2>&1 | tee $dir/fit.log
  label_sets $dir "$suffix" audiossl.bin.kmeans apply "$@" $dir/kmeans.safetensors
}

label_sets() {  # <dir> <data-suffix or ""> <module> <its arguments before data-dir labels-out>: label train and
  # dev in $nj jobs each (<dir>/<set>.<job>.labels), then merge them into <dir>/<set>.labels
  local dir=$1 suffix=$2; shift 2
  for set in $train_set $dev_set; do
    utils/split_data.sh --per-utt $data/${set}$suffix $nj
    $train_cmd JOB=1:$nj $dir/log/apply_$set.JOB.log \
      python3 -m "$@" $data/${set}$suffix/split${nj}utt/JOB $dir/$set.JOB.labels
    python3 -m audiossl.bin.kmeans merge --data-dir $data/${set}$suffix $dir/$set.labels $(seq -f "$dir/$set.%g.labels" $nj)
  done
}

if run_stage 2 && [ $targets = rvq ]; then
  done_or_log $exp/rvq/.done "stage 2: residual-VQ teacher on $train_set, its codes for $train_set and $dev_set" || {
    mkdir -p $exp/rvq
    python3 -m audiossl.bin.rvq fit $rvq_args $data/$train_set $exp/rvq/teacher.safetensors 2>&1 | tee $exp/rvq/fit.log
    label_sets $exp/rvq "" audiossl.bin.rvq apply $exp/rvq/teacher.safetensors
    touch $exp/rvq/.done
  }
elif run_stage 2 && [ -n "$init" ] && kmeans_targets 2 "k-means 1"; then
  done_or_log $exp/kmeans1/.done "stage 2: k-means 1 ($kmeans1_clusters clusters) on layer $init_layer of $init" || {
    mkdir -p $exp/kmeans1
    labels 1 "${input_suffix#_}" --model $init --layer $init_layer
    touch $exp/kmeans1/.done
  }
elif run_stage 2 && kmeans_targets 2 "k-means 1"; then
  done_or_log $exp/kmeans1/.done "stage 2: k-means 1 ($kmeans1_clusters clusters) on $kmeans1_features" || {
    mkdir -p $exp/kmeans1
    labels 1 "${kmeans1_options[@]}"
    touch $exp/kmeans1/.done
  }
fi

pretrain() {  # <iteration> <config> [--init <checkpoint>]: into $exp/<family>_iter<iteration>
  local it=$1 config=$2 clusters=kmeans$1_clusters labels=() noise=()
  shift 2
  [ -z "$noise_set" ] || noise=(--noise-data $data/$noise_set)
  if [ $targets = kmeans ]; then   # the labels of k-means <iteration>, and as many classes as clusters
    labels=(--set model.set.$(python3 -m audiossl.bin.models --classes-field $family)=${!clusters}
            --train-labels $exp/kmeans$it/$train_set.labels --valid-labels $exp/kmeans$it/$dev_set.labels)
  elif [ $targets = rvq ]; then    # the teacher's codes
    labels=(--train-labels $exp/rvq/$train_set.labels --valid-labels $exp/rvq/$dev_set.labels)
  fi
  $python -m audiossl.bin.pretrain --family $family --config $config $pretrain_args "${labels[@]}" "${noise[@]}" "$@" \
    --train-data $data/$train_set$input_suffix --valid-data $data/$dev_set$input_suffix $exp/${family}_iter$it
}

if run_stage 3; then
  from=()
  [ -z "$init" ] || from=(--init $init)
  [ -z "$init" ] || ! $keep_optimizer || from+=(--keep-optimizer)
  done_or_log $iter1/.done "stage 3: pretraining $family, iteration 1${init:+ from $init} (log: $iter1/train.log)" || {
    pretrain 1 $pretrain1_config "${from[@]}"
    touch $iter1/.done
  }
fi

if run_stage 4 && kmeans_targets 4 "k-means 2"; then
  done_or_log $exp/kmeans2/.done "stage 4: k-means 2 ($kmeans2_clusters clusters) on layer $kmeans2_layer of $iter1" || {
    mkdir -p $exp/kmeans2
    labels 2 "${input_suffix#_}" --model $iter1/checkpoints/best.pt --layer $kmeans2_layer
    touch $exp/kmeans2/.done
  }
fi

if run_stage 5 && kmeans_targets 5 "pretraining, iteration 2"; then
  done_or_log $iter2/.done "stage 5: pretraining $family, iteration 2 (log: $iter2/train.log)" || {
    init=()
    $iter2_from_iter1 && init=(--init $iter1/checkpoints/best.pt)
    pretrain 2 $pretrain2_config "${init[@]}"
    touch $iter2/.done
  }
fi
echo "$(date +%T) $0: done (stages $stage..$stop_stage)"
