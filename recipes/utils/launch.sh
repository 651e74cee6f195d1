# Sourced by the recipes: launch <exp dir> <python args...> runs one training command, prefixed with
# --launcher when the recipe got one, else as --ngpu, --num-nodes and cmd.sh's train_launch_mode say.
launch() {
  local dir=$1
  shift
  if [ -n "$launcher" ]; then
    $launcher "$@"
  else
    python3 -m audiossl.bin.launch --mode "${train_launch_mode:-local}" --ngpu "$ngpu" ${num_nodes:+--num-nodes "$num_nodes"} \
      --slurm-args="${slurm_args:-}" --hostfile "${hostfile:-}" \
      --max-restarts "${train_max_restarts:-0}" "$dir" -- "$@"
  fi
}

# trained <dir> <settings> <msg> [<option>]: logs msg; true (skip the training stage) when <dir>/.done records
# <settings> (one line: the run config's digest, extra options and the inputs, with_digests of stages.sh).
# When <dir> records other settings (its .done, or the .settings of a run that did not finish) the recipe
# fails, naming both and the remedy (<option>, default --exp: the recipe's option that names another
# experiment dir): reusing that model, or resuming its last.pt, under other inputs would be wrong, and
# removing it would lose it. Else (nothing there yet, or an interrupted run of these settings, which
# resumes) records <settings> in <dir>/.settings, but in a dry run, and is false: the caller trains, then
# mark_trained. A .done of no settings (written before they were recorded) is taken as done. Settings
# compare without the trainer settings a run may change and go on (_shaping), and inputs by what they hold
# (same_settings of stages.sh): an exp tree moved elsewhere is done, or resumes.
trained() {
  local dir=$1 settings=$2 option=${4:---exp} recorded=""
  if [ -f "$dir/.done" ]; then
    recorded=$(head -n 1 "$dir/.done")
    if same_settings "$(_shaping "$recorded")" "$(_shaping "$settings")"; then
      echo "$(date +%T) $3: already done ($dir/.done)"; return 0
    fi
    if [ -z "$recorded" ]; then echo "$(date +%T) $3: already done ($dir/.done, which records no settings)"; return 0; fi
    _refuse_training "$dir/.done" "$settings" "$option"
  fi
  if [ -f "$dir/.settings" ] && ! same_settings "$(_shaping "$(head -n 1 "$dir/.settings")")" "$(_shaping "$settings")"; then
    _refuse_training "$dir/.settings" "$settings" "$option"
  fi
  echo "$(date +%T) $3"
  [ "${launcher%% *}" = echo ] || { mkdir -p "$dir"; echo "$settings" > "$dir/.settings"; }
  return 1
}
# The trainer settings a run may change and still resume (audiossl.train.trainer.RESUMABLE), and accum_steps,
# whose product with the number of processes the trainer checks on resume (--ngpu is in no settings): a
# run started on one GPU may go on on two with half the accumulation, or with other workers or intervals.
resumable_trainer_keys="precision device strategy num_workers num_threads log_interval valid_interval save_interval
  keep_last max_bad_updates loss_scale_floor loss_scale_patience on_scale_collapse watchdog_seconds
  activation_checkpointing accum_steps"
_shaping() {  # <settings>: its words without the --set trainer.<resumable key>=<value> options
  local word key out=() skip=""
  local -A resumable=()
  for key in $resumable_trainer_keys; do resumable[$key]=1; done
  local -a words
  read -ra words <<< "$1"
  for word in "${words[@]}"; do
    if [ "$word" = --set ]; then skip=$word; continue; fi
    key=${word#--set=}; key=${key#trainer.}; key=${key%%=*}
    if [[ ( -n $skip || $word == --set=* ) && ( ${word#--set=} == trainer.* ) && -n ${resumable[$key]:-} ]]; then
      skip=""; continue
    fi
    out+=($skip "$word"); skip=""
  done
  out+=($skip)
  echo "${out[*]}"
}
_refuse_training() {  # <marker> <settings> <option>: the recipe fails, naming the settings <marker> records and these
  local recorded
  recorded=$(head -n 1 "$1")
  {
    echo "$0: $(dirname "$1") was trained (or started) with other settings or inputs than this run's ($1):"
    echo "  recorded: $(_words_not_in "$(_shaping "$recorded")" "$(_shaping "$2")")"
    echo "  now:      $(_words_not_in "$(_shaping "$2")" "$(_shaping "$recorded")")"
    echo "  (recorded in full: $recorded)"
    echo "Remove $(dirname "$1") to train it again with this run's settings, or keep it and give this run another $3."
  } >&2
  exit 1
}
_words_not_in() {  # <line> <other line>: the words of line that other lacks, in their order
  local word words others out=()
  local -A seen=()
  read -ra others <<< "$2"
  for word in "${others[@]}"; do seen[$word]=1; done
  read -ra words <<< "$1"
  for word in "${words[@]}"; do [ -n "${seen[$word]:-}" ] || out+=("$word"); done
  echo "${out[*]:-(nothing)}"
}

# mark_trained <marker> <checkpoint>: after a launch, marks its stage done once <checkpoint> (what the next
# stage reads) exists, and fails naming it otherwise (e.g. no validation score was ever finite, so no
# best.pt). The marker records the settings trained wrote in .settings beside it. A dry run (--launcher
# echo) marks nothing, so that a later run trains.
mark_trained() {
  if [ "${launcher%% *}" = echo ]; then echo "$(date +%T) dry run: $1 not written"; return; fi
  [ -f "$2" ] || { echo "$0: training ended without $2 (no finite validation score?): see $(dirname "$1")/train.log" >&2; exit 1; }
  cp "$(dirname "$1")/.settings" "$1"
}
