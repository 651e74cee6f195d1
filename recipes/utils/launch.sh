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

# mark_trained <marker> <checkpoint>: after a launch, marks its stage done once <checkpoint> (what the next
# stage reads) exists, and fails naming it otherwise (e.g. no validation score was ever finite, so no
# best.pt). A dry run (--launcher echo) marks nothing, so that a later run trains.
mark_trained() {
  if [ "${launcher%% *}" = echo ]; then echo "$(date +%T) dry run: $1 not written"; return; fi
  [ -f "$2" ] || { echo "$0: training ended without $2 (no finite validation score?): see $(dirname "$1")/train.log" >&2; exit 1; }
  touch "$1"
}
