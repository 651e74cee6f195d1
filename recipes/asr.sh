#!/usr/bin/env bash
# CTC fine-tuning of a pretrained encoder against the same model trained from scratch,
# at several labelled budgets, decoded and scored on several test sets.
# Called by egs/<corpus>/asr/run.sh, from that directory.
#   1  fbank features of the fine-tuning, dev and test sets (those the ssl recipe made are kept)
#   2  CTC fine-tuning, for each budget from the pretrained checkpoint and from scratch (the
#      control); --finetune-jobs of them at once. Self-training (--pseudo-label-from DIR): first, for
#      each budget, DIR's pretrained model of that budget pseudo-labels --unlabelled-set with the LM
#      (its weights from DIR's dev decode), the confident ones join the budget's labels
#      (<budget>_st_fbank), and the fine-tuning trains on those
#   3  a word n-gram LM and its lexicon from --lm-text, the dev and test sentences held out
#   4  decoding and scoring of every model on every test set: CTC prefix beam search, and from
#      the same network outputs a lexicon search with the LM, its LM weight and word score
#      chosen on dev for each model
#      (with --chunk-frames "N ...", also streaming: attention within chunks of N frames, no LM)
#   5  results table (RESULTS.md)
# Without --lm-text, stage 3 does nothing, stage 4 decodes without an LM and the table has no LM columns.
# The markers record each stage's options and inputs (features, pseudo-labels, checkpoints, by checksum):
# pseudo-labels and decodes are done again when they change; a model fine-tuned on others makes the recipe
# fail, naming its dir and what changed (reusing or resuming it would be wrong; removing it would lose it).
set -euo pipefail

stage=1
stop_stage=100
nj=2
data=data                 # the data dirs (the ssl recipe's)
pretrained=""             # the pretrained checkpoint (required)
budgets="train_10min train_1h"
dev_set=dev
test_sets="test test_unseen"
fbank_config=conf/fbank.conf
finetune_config=conf/finetune.yaml
finetune_args=""          # extra options for audiossl.bin.finetune_ctc, e.g. "--set trainer.max_updates=10"
finetune_jobs=1           # fine-tunes run at once, each with nproc/finetune_jobs threads
decode_jobs=1             # models decoded at once, each with nproc/decode_jobs threads
beam_size=8
lm_text=""                # one normalized sentence per line: the text of the word LM (empty: no LM)
lm_order=3
lm_dir=""                 # where the LM goes (default: $data/local/lm_<order>gram, shared by every setting)
lm_beam_size=100
chunk_frames=""           # streaming decodes: attention chunk sizes in frames, e.g. "8 25" (empty: none)
lm_weights="1,2,3,4"      # tried on dev for each model, with each word score (comma-separated)
word_scores="0,1,2,3"
results=RESULTS.md
results_section="Demo setting"   # the section of $results this run's table goes in (others are kept)
results_command=""        # the command the table names (default: run.sh and this run's options)
ngpu=1                    # training processes per node, one per GPU (CPU processes without GPUs)
num_nodes=""              # nodes (cmd.sh: train_launch_mode slurm or hostfile); empty: 1, or every host
launcher=""               # a command prefix replacing that launch (e.g. echo: print the commands)
exp=exp
pseudo_label_from=""      # self-training: the exp dir of an earlier run whose ctc_pretrained_<budget> pseudo-labels
unlabelled_set=""         # the set it pseudo-labels (needs <set>_fbank, and that run's LM decode of the dev set)
pseudo_label_keep="--keep-fraction 0.5"   # which pseudo-labels join the labels (audiossl.bin.pseudo_label)
scratch_exp=""            # experiment dir of the scratch control (default: --exp); settings that differ only
                          # in the pretrained encoder (same architecture, data and fine-tuning config) share it
help_message="Usage: $0 --pretrained <checkpoint> [options]   (run from egs/<corpus>/asr)
  --stage N / --stop-stage M   run stages N..M
  --pretrained FILE            the pretrained checkpoint fine-tuned (any family's, e.g. EXP/hubert_iter2/checkpoints/best.pt)
  --data DIR                   data dirs (default: $data)
  --nj N                       parallel jobs for features, and LM grid points searched at once ($nj)
  --fbank-config F             Kaldi fbank config of stage 1 ($fbank_config; the same as the ssl recipe's)
  --budgets '...'              labelled training sets, one model each ($budgets)
  --dev-set S                  validation set, and the set the LM weights are chosen on ($dev_set)
  --test-sets '...'            sets to decode ($test_sets)
  --finetune-config F          YAML run config (ctc and trainer sections)
  --finetune-args '...'        extra options for python -m audiossl.bin.finetune_ctc
  --ngpu N / --num-nodes M     training processes per node (one per GPU) and nodes, launched as
                               cmd.sh's train_launch_mode says (local, slurm, hostfile); M by default
                               1, in hostfile mode every host of cmd.sh's hostfile
  --launcher '...'             a prefix replacing that launch, e.g. 'echo' to print the commands (a dry run:
                               no training stage is marked done)
  --finetune-jobs N            fine-tunes run at once ($finetune_jobs), each with nproc/N threads: on a
                               2-core CPU, two one-thread jobs had 1.27x the throughput of one
                               two-thread job; their console output goes to <model-dir>/finetune.log
  --decode-jobs N              models decoded at once ($decode_jobs), each with nproc/N threads and
                               nj/N LM grid points at a time; output in <model-dir>/decode.log
  --beam-size N                CTC prefix beam search width (1: greedy)
  --lm-text FILE               text of the word n-gram LM, one sentence per line (default: no LM decoding)
  --lm-order N / --lm-dir DIR  its order ($lm_order) and where it goes (default: DATA/local/lm_<order>gram);
                               an LM dir built from another text (or an edited one) is refused by name
  --lm-beam-size N             beam of the lexicon search with the LM ($lm_beam_size)
  --lm-weights a,b / --word-scores c,d      the grid tried on dev, comma-separated ($lm_weights / $word_scores)
  --chunk-frames '...'         also decode the test sets as a streaming model: attention within chunks of
                               each of these many frames (for encoders pretrained with dynamic chunks)
  --exp DIR                    experiment dir ($exp)
  --scratch-exp DIR            experiment dir of the scratch control (default: --exp), to share one control
                               between encoders of the same architecture fine-tuned with the same config
  --pseudo-label-from DIR      self-training: DIR/ctc_pretrained_<budget> (an earlier run of this recipe, with
                               --lm-text) pseudo-labels --unlabelled-set with the LM; each budget's models then
                               train on its labels plus the kept pseudo-labels (<budget>_st_fbank)
  --unlabelled-set S / --pseudo-label-keep '...'   the set, and which pseudo-labels are kept ('$pseudo_label_keep'
                               or '--min-confidence -0.2': log-probability per frame)
  --results FILE / --results-section TITLE   where the table goes ($results, section '$results_section')
  --results-command '...'      the command the table names (default: run.sh with this run's options)"
command_line="$(basename "$(pwd)")/run.sh${*:+$(printf " %q" "$@")}"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
[ -n "$pretrained" ] || { echo "$0: --pretrained is required" >&2; exit 1; }
. utils/stages.sh
. utils/launch.sh
scratch_exp=${scratch_exp:-$exp}
lm_dir=${lm_dir:-$data/local/lm_${lm_order}gram}
lm_name=$(basename $lm_dir)   # names the decode dirs with this LM, so that another LM decodes anew

per_job() {  # <total> <jobs>: each job's share of total, at least 1
  echo $(( $1 / $2 > 0 ? $1 / $2 : 1 ))
}

model_dir() {  # <pretrained|scratch> <budget>
  if [ $1 = scratch ]; then echo $scratch_exp/ctc_scratch_$2; else echo $exp/ctc_pretrained_$2; fi
}

if run_stage 1; then
  for set in $budgets $dev_set $test_sets; do   # as ssl.sh makes them: <set>_fbank/.done, once
    steps/make_feature_dir.sh --nj $nj --cmd "$feats_cmd" fbank "$fbank_config" $data/$set $data/${set}_fbank $exp/make_fbank/$set
  done
fi

finetune() {  # <pretrained|scratch> <budget> [finetune_ctc options]
  local dir=$(model_dir $1 $2) scratch=""
  [ $1 = scratch ] && scratch=--scratch
  local budget=$2
  shift 2
  launch $dir -m audiossl.bin.finetune_ctc --config $finetune_config "$@" $finetune_args --init $pretrained $scratch \
    --train-data $(training_set $budget) --valid-data $data/${dev_set}_fbank $dir
  mark_trained $dir/.done $dir/checkpoints/best.pt
}

finetune_settings() {  # <pretrained|scratch> <budget>: what its model depends on (the thread count aside); the
  # scratch control takes no weights of --pretrained, so encoders of one architecture can share it
  local init=(--init $pretrained)
  [ $1 = scratch ] && init=(--scratch)
  with_digests --config $finetune_config $finetune_args "${init[@]}" --train-data $(training_set $2) \
    --valid-data $data/${dev_set}_fbank
}

training_set() {  # <budget>: the data dir its models train on
  if [ -n "$pseudo_label_from" ]; then echo $data/${1}_st_fbank; else echo $data/${1}_fbank; fi
}

if run_stage 2 && [ -n "$pseudo_label_from" ]; then
  [ -n "$unlabelled_set" ] && [ -n "$lm_text" ] || { echo "$0: --pseudo-label-from needs --unlabelled-set and --lm-text" >&2; exit 1; }
  for budget in $budgets; do
    teacher=$pseudo_label_from/ctc_pretrained_$budget
    settings="keep=$pseudo_label_keep $(with_digests $teacher/checkpoints/best.pt $teacher/decode_${dev_set}_$lm_name/scores.json \
      $lm_dir $data/${unlabelled_set}_fbank $data/${budget}_fbank)"
    done_with_settings $data/${budget}_st_fbank/.done "$settings" "stage 2: pseudo-labels of $unlabelled_set by $teacher -> $data/${budget}_st_fbank" || {
      python3 -m audiossl.bin.pseudo_label --lm-dir $lm_dir --lm-params-from $teacher/decode_${dev_set}_$lm_name/scores.json \
        $pseudo_label_keep $teacher/checkpoints/best.pt $data/${unlabelled_set}_fbank $data/${budget}_fbank $data/${budget}_st_fbank
      echo "$settings" > $data/${budget}_st_fbank/.done
    }
  done
fi

if run_stage 2; then
  thread_opts=()   # side by side, the cores are shared out; alone, the trainer's default (the cores per rank)
  [ $finetune_jobs -gt 1 ] && thread_opts=(--set trainer.num_threads=$(per_job $(nproc) $finetune_jobs))
  untrained=()   # every model checked first: one trained on other settings fails the stage before any job starts
  for budget in $budgets; do
    for init in pretrained scratch; do
      dir=$(model_dir $init $budget)
      trained $dir "$(finetune_settings $init $budget)" "stage 2: $(basename $dir): CTC on $budget (log: $dir/train.log)" \
        $([ $init = scratch ] && echo --scratch-exp || echo --exp) || untrained+=("$init $budget")
    done
  done
  for model in "${untrained[@]}"; do
    free_slot $finetune_jobs
    in_background $finetune_jobs $(model_dir $model)/finetune.log finetune $model "${thread_opts[@]}"
  done
  wait_background
fi

if run_stage 3 && [ -n "$lm_text" ]; then
  [ -f "$lm_text" ] || { echo "$0: $lm_text: no LM text (the ssl recipe's stage 0 writes it; for data" \
    "prepared before it did, remove $data/.done.prepare and re-run that stage: the audio is reused)" >&2; exit 1; }
  # the marker names the text and its checksum, then each set held out of it as SET@<its text's checksum>: an LM
  # dir built from another text, or with the sentences of a set decoded now, is refused, not reused
  lm_source="$(realpath $lm_text) $(file_digest $lm_text)"
  held_out=$(for set in $dev_set $test_sets; do echo "$set@$(file_digest $data/$set/text)"; done)
  if [ -s $lm_dir/.done ] && [ "$(head -n 1 $lm_dir/.done)" != "$lm_source" ]; then
    echo "$0: $lm_dir holds the LM of $(cut -d' ' -f1 $lm_dir/.done) as it was then, not of $lm_text as it is now:" \
      "give this LM its own --lm-dir (decodes are named after it), or remove $lm_dir to rebuild it there" >&2
    exit 1
  fi
  if [ -s $lm_dir/.done ] && [ "$(wc -l < $lm_dir/.done)" -gt 1 ]; then  # one line: written before it named them
    was_held_out=$(tail -n +2 $lm_dir/.done)
    in_lm=$(for set in $held_out; do [[ " $was_held_out " == *" $set "* ]] || echo ${set%@*}; done)
    if [ -n "$in_lm" ]; then
      echo "$0: $lm_dir holds an LM whose text kept the sentences of $(echo $in_lm) (it held out" \
        "$(echo $was_held_out | sed 's/@[^ ]*//g')): it would score them optimistically; give this LM its own" \
        "--lm-dir (decodes are named after it), or remove $lm_dir to rebuild it there" >&2
      exit 1
    fi
  fi
  done_or_log $lm_dir/.done "stage 3: ${lm_order}-gram LM of $lm_text in $lm_dir" || {
    python3 -m audiossl.bin.train_lm --order $lm_order $(for set in $dev_set $test_sets; do echo --exclude-data $data/$set; done) \
      $lm_text $lm_dir
    printf '%s\n' "$lm_source" "$(echo $held_out)" > $lm_dir/.done
  }
fi

decode_sets=$(echo ${lm_text:+$dev_set} $test_sets)   # with an LM, dev first: its decode chooses the LM weights
# what the decode markers record: the options, the checkpoint and the set's features (checksums), and with the
# LM, for a test set, the weights the dev decode chose: a decode of other settings or inputs is made again
decode_settings() {  # <model-dir> <set> [lm]: of its decode (lm: with the LM); $checkpoint_digest is the model's
  local settings="beam_size=$beam_size checkpoint=$checkpoint_digest data=$(file_digest $data/${2}_fbank)"
  if [ -n "${3:-}" ] && [ $2 = $dev_set ]; then
    settings+=" lm_beam_size=$lm_beam_size lm_weights=$lm_weights word_scores=$word_scores"
  elif [ -n "${3:-}" ]; then
    settings+=" lm_beam_size=$lm_beam_size lm_params=$(file_digest $1/decode_${dev_set}_$lm_name/scores.json)"
  fi
  echo "$settings"
}
with_lm=${lm_text:+lm}
decode_marker() {  # <model-dir> <set>: the marker of its decode (with an LM, of the LM decode, made with the other)
  if [ -n "$lm_text" ]; then echo $1/decode_$2_$lm_name/.done; else echo $1/decode_$2/.done; fi
}

decoded() {  # <model-dir>: true when each of its decodes was made with these settings and inputs
  local set chunk
  for set in $decode_sets; do has_settings $(decode_marker $1 $set) "$(decode_settings $1 $set $with_lm)" || return 1; done
  for chunk in $chunk_frames; do
    for set in $test_sets; do has_settings $1/decode_${set}_chunk$chunk/.done "$(decode_settings $1 $set)" || return 1; done
  done
}

decode_model() {  # <model-dir>: each set, without and (with --lm-text) with the LM
  local model=$1 set lm_opts settings
  for set in $decode_sets; do
    settings=$(decode_settings $model $set $with_lm)
    done_with_settings $(decode_marker $model $set) "$settings" \
      "stage 4: decoding $set with $model${lm_text:+ (and the LM $lm_dir)}" && continue
    lm_opts=()
    if [ -n "$lm_text" ]; then
      lm_opts=(--nj $grid_jobs --lm-dir $lm_dir --lm-decode-dir $model/decode_${set}_$lm_name --lm-beam-size $lm_beam_size)
      if [ $set = $dev_set ]; then
        lm_opts+=(--lm-weight ${lm_weights// /,} --word-score ${word_scores// /,})
      else
        lm_opts+=(--lm-params-from $model/decode_${dev_set}_$lm_name/scores.json)
      fi
    fi
    OMP_NUM_THREADS=$threads python3 -m audiossl.bin.decode_ctc --beam-size $beam_size "${lm_opts[@]}" \
      $model/checkpoints/best.pt $data/${set}_fbank $model/decode_$set
    decode_settings $model $set > $model/decode_$set/.done
    echo "$settings" > $(decode_marker $model $set)
  done
  for chunk in $chunk_frames; do
    for set in $test_sets; do
      settings=$(decode_settings $model $set)
      done_with_settings $model/decode_${set}_chunk$chunk/.done "$settings" \
        "stage 4: decoding $set with $model in chunks of $chunk frames" && continue
      OMP_NUM_THREADS=$threads python3 -m audiossl.bin.decode_ctc --beam-size $beam_size --chunk-frames $chunk \
        $model/checkpoints/best.pt $data/${set}_fbank $model/decode_${set}_chunk$chunk
      echo "$settings" > $model/decode_${set}_chunk$chunk/.done
    done
  done
}

if run_stage 4; then
  threads=$(per_job $(nproc) $decode_jobs)
  grid_jobs=$(per_job $nj $decode_jobs)   # LM grid points searched at once, per model
  for budget in $budgets; do
    for init in pretrained scratch; do
      model=$(model_dir $init $budget)
      checkpoint_digest=$(file_digest $model/checkpoints/best.pt)   # once per model: checkpoints are large
      decoded $model && { echo "$(date +%T) stage 4: decoding with $model: already done"; continue; }
      free_slot $decode_jobs
      [ $decode_jobs -gt 1 ] && echo "$(date +%T) stage 4: decoding with $model (log: $model/decode.log)"
      in_background $decode_jobs $model/decode.log decode_model $model
    done
  done
  wait_background
fi

if run_stage 5; then
  echo "$(date +%T) stage 5: results table -> $results"
  python3 -m audiossl.bin.results_table --exp $exp --scratch-exp $scratch_exp --budgets "$budgets" --test-sets "$test_sets" \
    ${lm_text:+--lm-dir $lm_dir --dev-set $dev_set} ${chunk_frames:+--chunk-frames "$chunk_frames"} \
    --pretrained $pretrained --command "${results_command:-$command_line}" --section "$results_section" $results
fi
echo "$(date +%T) $0: done (stages $stage..$stop_stage)"
