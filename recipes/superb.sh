#!/usr/bin/env bash
# SUPERB-style evaluation of one frozen upstream on speech, speaker and music tasks: a learned
# weighted sum of its layers and a light head per task, the same budget for every upstream
# (audiossl.eval.superb). Called by egs/<corpus>/superb/run.sh, from that directory.
#   0  the task sets that --tasks read, under --data: pr, ks, ic, speakers (prepare_tasks), asr
#      (copies of the mini_tts sets), music (prepare_mini_music)
#   1  check: the upstream opens, every task's labels and the ASV trials read (errors name the file)
#   2  one probe per task: hidden states cached under --cache, training, test figures in
#      <exp>/<name>/<task>/results.json, plots, ASV scores
#   3  the table of every upstream under <exp>: results.csv and a section of RESULTS.md
set -euo pipefail

stage=0
stop_stage=100
upstream=""               # any model load_model reads, or an s3prl baseline (fbank, mfcc, ...)
name=""                   # the upstream's name in exp dirs and the table (default: from --upstream)
tasks="pr asr ks ic sid asv instrument pitch tagging key"
size=full                 # task set size: full | tiny (tests)
seed=0
nj=2                      # parallel synthesis jobs of stage 0
data=data                 # the task sets' root
mini_tts_data=../ssl/data # the mini_tts data dirs (the ssl recipe's stage 0) that pr and asr read
mini_tts_corpus=""        # their corpus dir (default: $mini_tts/<size>, where the ssl recipe synthesizes it)
audio=""                  # stage 0's audio root (default: $AUDIOSSL_CORPORA, shared with the sid, sv and music recipes)
superb_config=conf/superb.yaml   # each task's budget and head
exp=exp
cache=""                  # hidden states, keyed by upstream and audio, shared by tasks and runs (default: <exp>/cache)
superb_args=""            # extra options for audiossl.bin.superb check and task, e.g. --allow-empty-classes
results=RESULTS.md
results_csv=""            # the table as CSV (default: results.csv beside --results)
results_section="Frozen upstreams"
results_command=""        # the command the section names (default: run.sh with this run's options)
help_message="Usage: $0 --upstream U [options]   (run from egs/<corpus>/superb)
  --stage N / --stop-stage M  run stages N..M (0 data, 1 check, 2 tasks, 3 table)
  --upstream U              any model audiossl.load_model reads (audiossl checkpoint, Hugging Face or
                            fairseq2 dir, fairseq or s3prl .pt), or an s3prl baseline
                            (fbank, fbank_no_cmvn, mfcc, mel, linear, spectrogram)
  --name NAME               its name in $exp/<name>/<task> and in the table (default: from U)
  --tasks '...'             any of: $tasks
  --size full|tiny          task set size ($size); --seed N ($seed); --nj N synthesis jobs ($nj)
  --data DIR                the task sets' root ($data); --audio DIR their audio
  --mini-tts-data DIR       mini_tts data dirs for pr and asr ($mini_tts_data)
  --mini-tts-corpus DIR     their corpus dir (default: \$mini_tts/<size>)
  --superb-config F         budgets and heads ($superb_config)
  --exp DIR                 results per upstream and task ($exp); --cache DIR hidden states (<exp>/cache)
  --superb-args '...'       extra options for python -m audiossl.bin.superb check and task
  --results FILE / --results-section TITLE   where the table goes ($results, '$results_section')
  --results-csv FILE        the table as CSV (default: results.csv beside --results)"
command_line="$(basename "$(pwd)")/run.sh${*:+$(printf " %q" "$@")}"
. ./path.sh
. ./cmd.sh
. ./db.sh
. utils/parse_options.sh
. utils/stages.sh
audio=${audio:-$AUDIOSSL_CORPORA}
cache=${cache:-$exp/cache}
results_csv=${results_csv:-$(dirname $results)/results.csv}
export OMP_NUM_THREADS=$(env -u OMP_NUM_THREADS nproc)   # one job at a time: every core

if run_stage 0; then
  sets=()   # the task sets that --tasks read, each made once (a .done marker per set and size)
  for task in $tasks; do
    case $task in
      sid|asv) task_set=speakers ;;
      instrument|pitch|tagging|key) task_set=music ;;
      pr|asr|ks|ic) task_set=$task ;;
      *) echo "$0: unknown task '$task' in --tasks" >&2; exit 1 ;;
    esac
    [[ " ${sets[*]} " == *" $task_set "* ]] || sets+=($task_set)
  done
  for task_set in "${sets[@]}"; do
    done_or_log $data/.done.${task_set}_$size "stage 0: $task_set task sets ($size) in $data" && continue
    case $task_set in
      asr) for split in train_1h dev test; do utils/copy_data_dir.sh $mini_tts_data/$split $data/asr/$split; done ;;
      music) python3 -m audiossl.bin.prepare_mini_music --size $size --seed $seed --num-workers $nj \
               $audio/mini_music $data ;;
      *) python3 -m audiossl.bin.prepare_tasks --tasks $task_set --size $size --seed $seed --num-workers $nj \
           ${mini_tts_corpus:-$mini_tts/$size} $mini_tts_data $audio/tasks $data ;;
    esac
    touch $data/.done.${task_set}_$size
  done
fi

[ -n "$upstream" ] || { [ $stop_stage -lt 1 ] && exit 0; echo "$0: --upstream is required" >&2; exit 1; }
name=${name:-$(python3 -m audiossl.bin.superb name $upstream)}

if run_stage 1; then
  echo "$(date +%T) stage 1: checking $upstream and the inputs of: $tasks"
  python3 -m audiossl.bin.superb check --upstream $upstream --tasks "${tasks// /,}" $superb_args $data
fi

if run_stage 2; then
  settings="upstream=$(with_digests $upstream) config=$(file_digest $superb_config) seed=$seed args=$superb_args"   # what the figures depend on
  for task in $tasks; do
    dir=$exp/$name/$task
    done_with_settings $dir/.done "$settings" "stage 2: $task on $name (log: $dir/log)" && continue
    mkdir -p $dir
    python3 -m audiossl.bin.superb task --upstream $upstream --name $name --config $superb_config --cache $cache \
      --seed $seed --no-progress $superb_args $task $data $dir 2> >(tee $dir/log >&2)
    echo "$settings" > $dir/.done
  done
fi

if run_stage 3; then
  echo "$(date +%T) stage 3: table of $exp -> $results, $results_csv"
  python3 -m audiossl.bin.superb table --section "$results_section" --command "${results_command:-$command_line}" \
    $exp $results $results_csv
fi
echo "$(date +%T) $0: done (stages $stage..$stop_stage)"
