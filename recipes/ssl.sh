#!/usr/bin/env bash
# Self-supervised pretraining of a model family (--family, default HuBERT) from raw audio
# (Kaldi-style stages). Families with k-means targets (HuBERT) train two iterations, the second
# on clusters of the first model; MERT (residual-VQ targets) and the families that make their own
# targets train once. With --init, iteration 1 continues pretraining that model on the recipe's data
# (continued pretraining on a new language): k-means 1 clusters a layer of it instead of MFCC. With
# --kmeans1-model, k-means 1 clusters a layer (or the CTC posteriors) of that model, e.g. one
# fine-tuned with CTC on the labelled subset (ASR-derived targets: GigaAM's HuBERT-CTC, VietASR).
# Called by egs/<corpus>/ssl/run.sh, from that directory (utils/, steps/, local/ there).
#   0  prepare data dirs                 (local/prepare_data.sh <data> of the recipe)
#   1  features: 80-dim fbank (model inputs; none with --inputs wav); with k-means targets on
#      MFCC, 13-dim MFCC at 20 ms (iteration-1 targets) of train and dev
#   2  k-means 1 on MFCC (per-utterance CMVN) + deltas (39-dim), on the music features of
#      --kmeans1-features, or on layer --kmeans1-layer of the --kmeans1-model (default: the --init
#      model); labels for train and dev
#      (k-means targets)
#      residual-VQ teacher on log-mel of the training audio, its codes for train and dev  (rvq targets)
#   3  pretraining, iteration 1          (exp/<family>_iter1; from the --init model when given)
#   4  k-means 2 on a layer of the iteration-1 model, labels for train and dev  (k-means targets); with
#      --finetune-set (VietASR's ASR-biased iterations) that model is first fine-tuned with CTC on the
#      labelled set (exp/<family>_iter1/ctc) and k-means 2 clusters the fine-tuned encoder's layer
#   5  pretraining, iteration 2          (exp/<family>_iter2; k-means targets)
#   6, 7, ...  k-means and pretraining of iterations 3, 4, ... up to --iterations, as stages 4 and 5
# A finished stage leaves a .done marker and is skipped when run again. Each marker records the options
# its output depends on and its inputs (the data dirs, labels and checkpoints it read, by checksum):
# data dirs, features and k-means are done again when they change; a training stage that trained (or
# started) on other settings or inputs makes the recipe fail, naming its exp dir and what changed, as
# reusing or resuming it would be wrong. An interrupted training stage continues from its last checkpoint.
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
kmeans_n_init=3           # k-means++ seedings tried on a sample, each refined by Lloyd, the best kept
kmeans2_layer=4           # hidden state of the iteration-1 model clustered for iteration 2
kmeans1_features=mfcc     # k-means 1 clusters: mfcc (HuBERT) or logmel_chroma (MERT-v0, 75 frames/s of the audio)
rvq_args=""               # options for python -m audiossl.bin.rvq fit (e.g. "--codebooks 8 --updates 2000")
pretrain1_config=conf/pretrain1.yaml
pretrain2_config=conf/pretrain2.yaml
iterations=""             # pretraining iterations (default: 2 with k-means targets, else 1)
iter2_from_iter1=true     # iteration k > 1 starts from the iteration k-1 model (false: from scratch, as the paper)
finetune_set=""           # labelled set each iteration's model is CTC fine-tuned on before k-means clusters it (VietASR)
finetune_config=conf/finetune.yaml   # the run config of that fine-tuning (ctc and trainer sections)
finetune_args=""          # extra options for audiossl.bin.finetune_ctc there
init=""                   # continue pretraining this model (checkpoint, Hugging Face dir, fairseq .pt, fairseq2 dir) in iteration 1
kmeans1_model=""          # k-means 1 clusters a layer of this model instead of MFCC (default: the --init model)
kmeans1_layer=4           # its hidden state k-means 1 clusters, or 'posteriors' (a CTC model's token probabilities)
keep_optimizer=false      # with --init: keep its optimizer moments and schedule position (a training checkpoint)
noise_set=""              # noise data dir under $data for a run config's mixing section (e.g. noise)
pretrain_args=""          # extra options for audiossl.bin.pretrain, e.g. "--set trainer.max_updates=10"
ngpu=1                    # training processes per node, one per GPU (CPU processes without GPUs)
num_nodes=""              # nodes (cmd.sh: train_launch_mode slurm or hostfile); empty: 1, or every host
launcher=""               # a command prefix replacing that launch (e.g. echo: print the commands)
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
  --kmeans1-clusters K / --kmeans2-clusters K / --kmeans2-layer L   (kmeans2: every iteration after the first)
  --kmeans-max-frames N        frames k-means is fitted on at most, from random utterances ($kmeans_max_frames)
  --kmeans-fit-utts N          fit k-means on N random training utterances, 0: all ($kmeans_fit_utts)
  --kmeans-n-init N            k-means++ seedings tried on a sample, the best kept ($kmeans_n_init)
  --pretrain1-config F / --pretrain2-config F   YAML run configs (pretrain2: every iteration after the first)
  --iterations N               pretraining iterations, each after the first on k-means of the one before
                               (default: 2 with k-means targets, else 1)
  --iter2-from-iter1 true|false  start each iteration after the first from the weights of the one before
                               ($iter2_from_iter1)
  --finetune-set S             ASR-biased iterations (VietASR): before k-means 2, 3, ... the model of the
                               iteration before is fine-tuned with CTC on the labelled set S (validated on
                               --dev-set, which needs a text), and its fine-tuned encoder is clustered
  --finetune-config F          run config of that fine-tuning ($finetune_config)
  --finetune-args '...'        extra options for python -m audiossl.bin.finetune_ctc there
  --init MODEL                 continued pretraining: iteration 1 starts from MODEL (an audiossl checkpoint, a
                               Hugging Face dir, a fairseq or s3prl .pt or a fairseq2 dir of the same family), keeping its config (a run
                               config that differs is refused by name); k-means 1 clusters layer
                               --kmeans1-layer of MODEL on the recipe's data; --inputs must be what MODEL reads
  --kmeans1-model MODEL        k-means 1 clusters a layer of MODEL instead of MFCC (any model load_model reads;
                               a CTC model fine-tuned on labelled data gives ASR-derived targets); default: --init
  --kmeans1-layer L|posteriors hidden state of that model clustered by k-means 1, or 'posteriors': the token
                               probabilities of a CTC model per frame ($kmeans1_layer)
  --keep-optimizer true|false  with --init: keep its AdamW moments and schedule position ($keep_optimizer)
  --noise-set S                noise data dir under DATA mixed into training audio by a run config's mixing
                               section (WavLM's denoising; none by default)
  --prepare-args '...'         options for local/prepare_data.sh
  --pretrain-args '...'        extra options for python -m audiossl.bin.pretrain
  --ngpu N / --num-nodes M     training processes per node (one per GPU) and nodes, launched as
                               cmd.sh's train_launch_mode says (local, slurm, hostfile); M by default
                               1, in hostfile mode every host of cmd.sh's hostfile
  --launcher '...'             a prefix replacing that launch, e.g. 'echo' to print the commands (a dry run:
                               no training stage is marked done)"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
. utils/stages.sh
. utils/launch.sh
kmeans1_model=${kmeans1_model:-$init}
targets=${targets:-$(python3 -m audiossl.bin.models --target-kind $family)}
case $targets in kmeans|rvq|none) ;; *) echo "$0: --targets is kmeans, rvq or none, not '$targets'" >&2; exit 1 ;; esac
case $inputs in fbank) input_suffix=_fbank ;; wav) input_suffix="" ;;
  *) echo "$0: --inputs is fbank or wav, not '$inputs'" >&2; exit 1 ;; esac
case $kmeans1_features in mfcc) kmeans1_options=(mfcc --utt-cmvn --deltas 2) ;;
  logmel_chroma) kmeans1_options=("" --music-features logmel_chroma --utt-cmvn) ;;
  *) echo "$0: --kmeans1-features is mfcc or logmel_chroma, not '$kmeans1_features'" >&2; exit 1 ;; esac
iterations=${iterations:-$([ $targets = kmeans ] && echo 2 || echo 1)}
[ $targets = kmeans ] || [ $iterations = 1 ] || { echo "$0: --iterations $iterations needs k-means targets (not $targets)" >&2; exit 1; }

kmeans_targets() {  # <stage> <what>: true with k-means targets, else logs that the stage does not apply
  [ $targets = kmeans ] && return
  echo "$(date +%T) stage $1: $2: does not apply to $family (targets: $targets)"; return 1
}

if run_stage 0; then
  if [ -n "$noise_set" ] && [ -f $data/.done.prepare ] && [ ! -d $data/$noise_set ]; then
    echo "$(date +%T) stage 0: $data has no $noise_set set (prepared before it existed): preparing again"
    rm $data/.done.prepare
  fi
  settings="prepare_args=$prepare_args"   # other ones prepare again; the data dirs' checksums carry it downstream
  done_with_settings $data/.done.prepare "$settings" "stage 0: preparing data dirs in $data" || {
    local/prepare_data.sh $prepare_args $data
    for set in $feature_sets; do utils/validate_data_dir.sh --no-feats $data/$set; done
    [ -z "$noise_set" ] || utils/validate_data_dir.sh --no-feats --no-text $data/$noise_set
    echo "$settings" > $data/.done.prepare
  }
fi

if run_stage 1; then
  for set in $feature_sets $finetune_set; do
    kinds=""   # fbank for fbank inputs; MFCC (k-means 1's features) only for the sets k-means labels
    [ $inputs = fbank ] && kinds=fbank
    if [ $targets = kmeans ] && [ $kmeans1_features = mfcc ] && [ -z "$kmeans1_model" ] && { [ $set = $train_set ] || [ $set = $dev_set ]; }; then
      kinds="$kinds mfcc"
    fi
    for kind in $kinds; do   # each dir marked done on its own (<set>_<kind>/.done), as asr.sh's
      config=${kind}_config
      steps/make_feature_dir.sh --nj $nj --cmd "$feats_cmd" $kind "${!config}" $data/$set $data/${set}_$kind $exp/make_$kind/$set
    done
  done
fi

clusters_of() {  # <iteration>: its number of k-means clusters
  if [ $1 = 1 ]; then echo $kmeans1_clusters; else echo $kmeans2_clusters; fi
}

kmeans_settings() {  # <iteration> <features-data-suffix or ""> <what it clusters...>: the options and inputs
  # its labels depend on (its .done)
  local suffix=${2:+_$2}
  echo "clusters=$(clusters_of $1) max_frames=$kmeans_max_frames fit_utts=$kmeans_fit_utts n_init=$kmeans_n_init" \
    "data=$(with_digests $data/$train_set$suffix $data/$dev_set$suffix) ${*:3}"
}

model_inputs() {  # what a model clustered by k-means reads: the audio, or fbank of --fbank-config
  if [ $inputs = wav ]; then echo inputs=wav; else echo "inputs=fbank fbank_config=$(file_digest "$fbank_config")"; fi
}

labels() {  # <iteration> <features-data-suffix or ""> <extra apply/fit options...>: fit k-means, label train and dev
  local it=$1 suffix=${2:+_$2}; shift 2
  local dir=$exp/kmeans$it clusters=$(clusters_of $it) fit_data=$data/${train_set}$suffix
  if [ "$kmeans_fit_utts" -gt 0 ] && [ "$(wc -l < $fit_data/utt2spk)" -gt "$kmeans_fit_utts" ]; then
    utils/subset_data_dir.sh $fit_data $kmeans_fit_utts $dir/fit_data
    fit_data=$dir/fit_data
  fi
  python3 -m audiossl.bin.kmeans fit --num-clusters $clusters --max-frames $kmeans_max_frames --n-init $kmeans_n_init "$@" \
    $fit_data $dir/kmeans.safetensors 2>&1 | tee $dir/fit.log
  label_sets $dir "$suffix" audiossl.bin.kmeans apply "$@" $dir/kmeans.safetensors
}

label_sets() {  # <dir> <data-suffix or ""> <module> <its arguments before data-dir labels-out>: label train and
  # dev in $nj jobs each (<dir>/<set>.<job>.labels), then merge them into <dir>/<set>.labels
  local dir=$1 suffix=$2 jobs; shift 2
  for set in $train_set $dev_set; do
    jobs=$(wc -l < $data/${set}$suffix/utt2spk); [ "$nj" -le "$jobs" ] && jobs=$nj   # no more jobs than utterances
    utils/split_data.sh --per-utt $data/${set}$suffix $jobs
    $train_cmd JOB=1:$jobs $dir/log/apply_$set.JOB.log \
      python3 -m "$@" $data/${set}$suffix/split${jobs}utt/JOB $dir/$set.JOB.labels
    python3 -m audiossl.bin.kmeans merge --data-dir $data/${set}$suffix $dir/$set.labels $(seq -f "$dir/$set.%g.labels" $jobs)
  done
}

if run_stage 2 && [ $targets = rvq ]; then
  settings="rvq_args=$rvq_args data=$(with_digests $data/$train_set $data/$dev_set)"
  done_with_settings $exp/rvq/.done "$settings" "stage 2: residual-VQ teacher on $train_set, its codes for $train_set and $dev_set" || {
    mkdir -p $exp/rvq
    python3 -m audiossl.bin.rvq fit $rvq_args $data/$train_set $exp/rvq/teacher.safetensors 2>&1 | tee $exp/rvq/fit.log
    label_sets $exp/rvq "" audiossl.bin.rvq apply $exp/rvq/teacher.safetensors
    echo "$settings" > $exp/rvq/.done
  }
elif run_stage 2 && [ -n "$kmeans1_model" ] && kmeans_targets 2 "k-means 1"; then
  [ -e "$kmeans1_model" ] || { echo "$0: --kmeans1-model $kmeans1_model: no such checkpoint or model dir" >&2; exit 1; }
  settings=$(kmeans_settings 1 "${input_suffix#_}" model=$(with_digests $kmeans1_model) layer=$kmeans1_layer $(model_inputs))
  done_with_settings $exp/kmeans1/.done "$settings" "stage 2: k-means 1 ($kmeans1_clusters clusters) on layer $kmeans1_layer of $kmeans1_model" || {
    mkdir -p $exp/kmeans1
    labels 1 "${input_suffix#_}" --model $kmeans1_model --layer $kmeans1_layer
    echo "$settings" > $exp/kmeans1/.done
  }
elif run_stage 2 && kmeans_targets 2 "k-means 1"; then
  clustered="features=$kmeans1_features"   # MFCC of --mfcc-config, or music features of the audio
  [ $kmeans1_features != mfcc ] || clustered+=" mfcc_config=$(file_digest "$mfcc_config")"
  settings=$(kmeans_settings 1 "${kmeans1_options[0]}" $clustered)
  done_with_settings $exp/kmeans1/.done "$settings" "stage 2: k-means 1 ($kmeans1_clusters clusters) on $kmeans1_features" || {
    mkdir -p $exp/kmeans1
    labels 1 "${kmeans1_options[@]}"
    echo "$settings" > $exp/kmeans1/.done
  }
fi

pretrain() {  # <iteration> <config> <message> [--init <checkpoint>]: into $exp/<family>_iter<iteration>, unless done
  local it=$1 config=$2 message=$3 labels=() noise=() args dir=$exp/${family}_iter$1
  shift 3
  [ -z "$noise_set" ] || noise=(--noise-data $data/$noise_set)
  if [ $targets = kmeans ]; then   # the labels of k-means <iteration>, and as many classes as clusters
    labels=(--set model.set.$(python3 -m audiossl.bin.models --classes-field $family)=$(clusters_of $it)
            --train-labels $exp/kmeans$it/$train_set.labels --valid-labels $exp/kmeans$it/$dev_set.labels)
  elif [ $targets = rvq ]; then    # the teacher's codes
    labels=(--train-labels $exp/rvq/$train_set.labels --valid-labels $exp/rvq/$dev_set.labels)
  fi
  args=(--family $family --config $config $pretrain_args "${labels[@]}" "${noise[@]}" "$@"
        --train-data $data/$train_set$input_suffix --valid-data $data/$dev_set$input_suffix)
  trained $dir "$(with_digests "${args[@]}")" "$message (log: $dir/train.log)" && return
  launch $dir -m audiossl.bin.pretrain "${args[@]}" $dir
  mark_trained $dir/.done $dir/checkpoints/best.pt
}

if run_stage 3; then
  from=()
  [ -z "$init" ] || from=(--init $init)
  [ -z "$init" ] || ! $keep_optimizer || from+=(--keep-optimizer)
  pretrain 1 $pretrain1_config "stage 3: pretraining $family, iteration 1${init:+ from $init}" "${from[@]}"
fi

last=$iterations; [ $targets = kmeans ] || last=2   # other targets: stages 4 and 5 say they do not apply
for it in $(seq 2 $last); do
  previous=$exp/${family}_iter$((it - 1))
  if run_stage $((2 * it)) && kmeans_targets $((2 * it)) "k-means $it"; then
    source=$previous/checkpoints/best.pt
    if [ -n "$finetune_set" ]; then   # VietASR: cluster the previous model once fine-tuned on the labels
      args=(--config $finetune_config $finetune_args --init $source
            --train-data $data/$finetune_set$input_suffix --valid-data $data/$dev_set$input_suffix)
      trained $previous/ctc "$(with_digests "${args[@]}")" \
        "stage $((2 * it)): CTC fine-tuning of $previous on $finetune_set (log: $previous/ctc/train.log)" || {
        launch $previous/ctc -m audiossl.bin.finetune_ctc "${args[@]}" $previous/ctc
        mark_trained $previous/ctc/.done $previous/ctc/checkpoints/best.pt
      }
      source=$previous/ctc/checkpoints/best.pt
    fi
    settings=$(kmeans_settings $it "${input_suffix#_}" model=$(with_digests $source) layer=$kmeans2_layer $(model_inputs))
    done_with_settings $exp/kmeans$it/.done "$settings" "stage $((2 * it)): k-means $it ($kmeans2_clusters clusters) on layer $kmeans2_layer of $source" || {
      mkdir -p $exp/kmeans$it
      labels $it "${input_suffix#_}" --model $source --layer $kmeans2_layer
      echo "$settings" > $exp/kmeans$it/.done
    }
  fi
  if run_stage $((2 * it + 1)) && kmeans_targets $((2 * it + 1)) "pretraining, iteration $it"; then
    from=()
    $iter2_from_iter1 && from=(--init $previous/checkpoints/best.pt)
    pretrain $it $pretrain2_config "stage $((2 * it + 1)): pretraining $family, iteration $it" "${from[@]}"
  fi
done
echo "$(date +%T) $0: done (stages $stage..$stop_stage)"
