# Stage helpers sourced by the recipes (after parse_options.sh has set stage and stop_stage).
#   run_stage N               true when N is within --stage..--stop-stage
#   done_or_log MARKER MSG    logs MSG with the time; true (skip the work) when MARKER exists
#   free_slot, in_background, wait_background   jobs side by side (below)

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

done_or_log() {
  if [ -f "$1" ]; then echo "$(date +%T) $2: already done ($1)"; return 0; fi
  echo "$(date +%T) $2"; return 1
}

# Jobs side by side (e.g. the fine-tunes of a stage), at most N at once:
#   free_slot N                  waits until fewer than N jobs run (call it before logging a job's start)
#   in_background N LOG CMD...   runs CMD (a command or a shell function) with its output in LOG once
#                                fewer than N jobs run; with N 1, in the foreground, output to the terminal
#   wait_background              waits for every job; a failed one ends the recipe, naming its log
# A recipe that exits (an error, Ctrl-C) kills the jobs still running.
declare -A background_logs=()   # pid -> log
in_background() {
  local jobs=$1 log=$2
  shift 2
  if [ "$jobs" -le 1 ]; then "$@"; return; fi
  free_slot "$jobs"
  mkdir -p "$(dirname "$log")"
  "$@" > "$log" 2>&1 &
  background_logs[$!]=$log
  trap 'kill ${!background_logs[@]} 2>/dev/null || true' EXIT
}
free_slot() {
  while [ ${#background_logs[@]} -ge "$1" ]; do _wait_one_background; done
}
wait_background() {
  while [ ${#background_logs[@]} -gt 0 ]; do _wait_one_background; done
  trap - EXIT
}
_wait_one_background() {
  local pid
  wait -n -p pid || { echo "$0: a job failed: see ${background_logs[$pid]}" >&2; exit 1; }
  echo "$(date +%T) done: ${background_logs[$pid]}"
  unset "background_logs[$pid]"
}
