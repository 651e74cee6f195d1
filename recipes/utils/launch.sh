# Sourced by the recipes: launch <exp dir> <python args...> runs one training command, prefixed with
# --launcher when the recipe got one, else as --ngpu, --num-nodes and cmd.sh's train_launch_mode say.
launch() {
  local dir=$1
  shift
  if [ -n "$launcher" ]; then
    $launcher "$@"
  else
    python3 -m audiossl.bin.launch --mode "${train_launch_mode:-local}" --ngpu "$ngpu" --num-nodes "$num_nodes" \
      --slurm-args="${slurm_args:-}" --hostfile "${hostfile:-}" \
      --max-restarts "${train_max_restarts:-0}" "$dir" -- "$@"
  fi
}

# trained <dir> <settings> <msg>: logs msg; true (skip the training stage) when <dir>/.done records <settings>
# (one line: the run config's digest, extra options and the inputs, with_digests of stages.sh). When <dir>
# records other settings (its .done, or the .settings of a run that did not finish) the recipe fails, naming
# both and the remedy: reusing that model, or resuming its last.pt, under other inputs would be wrong, and
# removing it would lose it. Else (nothing there yet, or an interrupted run of these settings, which resumes)
# records <settings> in <dir>/.settings, but in a dry run, and is false: the caller trains, then mark_trained.
# A .done of no settings (written before they were recorded) is taken as done.
trained() {
  local dir=$1 settings=$2 recorded=""
  if [ -f "$dir/.done" ]; then
    recorded=$(head -n 1 "$dir/.done")
    if [ "$recorded" = "$settings" ]; then echo "$(date +%T) $3: already done ($dir/.done)"; return 0; fi
    if [ -z "$recorded" ]; then echo "$(date +%T) $3: already done ($dir/.done, which records no settings)"; return 0; fi
    _refuse_training "$dir/.done" "$settings"
  fi
  [ ! -f "$dir/.settings" ] || [ "$(head -n 1 "$dir/.settings")" = "$settings" ] || _refuse_training "$dir/.settings" "$settings"
  echo "$(date +%T) $3"
  [ "${launcher%% *}" = echo ] || { mkdir -p "$dir"; echo "$settings" > "$dir/.settings"; }
  return 1
}
_refuse_training() {  # <marker> <settings>: the recipe fails, naming the settings <marker> records and these
  local recorded
  recorded=$(head -n 1 "$1")
  {
    echo "$0: $(dirname "$1") was trained (or started) with other settings or inputs than this run's ($1):"
    echo "  recorded: $(_words_not_in "$recorded" "$2")"
    echo "  now:      $(_words_not_in "$2" "$recorded")"
    echo "  (recorded in full: $recorded)"
    echo "Remove $(dirname "$1") to train it again with this run's settings, or keep it and give this run another --exp."
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
