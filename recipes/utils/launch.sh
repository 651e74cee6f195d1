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
