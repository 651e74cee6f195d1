# Stage helpers sourced by the recipes (after parse_options.sh has set stage and stop_stage).
#   run_stage N               true when N is within --stage..--stop-stage
#   done_or_log MARKER MSG    logs MSG with the time; true (skip the work) when MARKER exists

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

done_or_log() {
  if [ -f "$1" ]; then echo "$(date +%T) $2: already done ($1)"; return 0; fi
  echo "$(date +%T) $2"; return 1
}
