# Stage helpers sourced by the recipes (after parse_options.sh has set stage and stop_stage).
#   run_stage N               true when N is within --stage..--stop-stage
#   done_or_log MARKER MSG    logs MSG with the time; true (skip the work) when MARKER exists
#   done_with_settings MARKER SETTINGS MSG   as done_or_log for a stage whose output depends on options:
#                             true only when MARKER holds SETTINGS (one line, which the stage writes into
#                             MARKER when done); a marker of other settings is removed and the stage done again;
#                             an empty marker (written before markers recorded settings) counts as done
#   has_settings MARKER SETTINGS   true when MARKER exists and records SETTINGS (same_settings)
#   same_settings A B         true when two SETTINGS agree, each input (PATH@DIGEST) by its digest alone: the
#                             same content at another path (an exp tree moved elsewhere, a copy) is the same input
#   file_digest PATH          the SHA-256 of PATH's content, for SETTINGS that name a config or an input: of a
#                             file, or of a dir's files (their names and contents; not its subdirs, such as the
#                             split<N> of a data dir, but for model weights below it: a fairseq2 checkpoint dir
#                             keeps them in step_<N>/model/); "none" for '', "missing" for no such path
#   with_digests WORD...      the words, each that names a file or dir as PATH@<its file_digest, 16 digits>
#                             (PATH its real path relative to here, however the word spelt it): the
#                             SETTINGS of a stage whose inputs are other stages' outputs (labels, data dirs,
#                             checkpoints), so that an input made again gives other settings downstream
#   free_slot, in_background, wait_background   jobs side by side (below)
#   run_recipe CMD...         runs another recipe, which a signal to this one ends too (below)

run_stage() { [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ]; }

done_or_log() {
  if [ -f "$1" ]; then echo "$(date +%T) $2: already done ($1)"; return 0; fi
  echo "$(date +%T) $2"; return 1
}

has_settings() { [ -f "$1" ] && same_settings "$(head -n 1 "$1")" "$2"; }

same_settings() { [ "$(_by_content "$1")" = "$(_by_content "$2")" ]; }
_by_content() {  # <settings>: its words, each PATH@DIGEST (with_digests) as @DIGEST
  local word out=()
  local -a words
  read -ra words <<< "$1"
  for word in "${words[@]}"; do
    [[ $word =~ ^([^=]*=)?[^=]*@([0-9a-f]{16})$ ]] && word="${BASH_REMATCH[1]}@${BASH_REMATCH[2]}"
    out+=("$word")
  done
  echo "${out[*]}"
}

done_with_settings() {
  local recorded
  if has_settings "$1" "$2"; then echo "$(date +%T) $3: already done ($1)"; return 0; fi
  if [ -f "$1" ] && [ ! -s "$1" ]; then  # an empty marker: written before markers recorded settings
    echo "$(date +%T) $3: already done ($1, which records no settings)"; return 0
  fi
  if [ -f "$1" ]; then
    recorded=$(head -n 1 "$1")
    echo "$(date +%T) $3: doing it again: $1 records other settings ($recorded), not $2"
    rm "$1"
  else
    echo "$(date +%T) $3"
  fi
  return 1
}

file_digest() {
  if [ -z "$1" ]; then echo none
  elif [ -d "$1" ]; then
    (cd "$1" && find -L . -type f \( ! -path './*/*' -o -name '*.pt' -o -name '*.safetensors' -o -name '*.bin' \) \
      -print0 | sort -z | xargs -0r sha256sum) | sha256sum | cut -d' ' -f1
  elif [ -e "$1" ]; then sha256sum < "$1" | cut -d' ' -f1
  else echo missing; fi
}

with_digests() {
  local word out=() digest
  for word; do
    # a path by its real path from here, however it was spelt (./x, absolute, through a link)
    if [ -n "$word" ] && [ -e "$word" ]; then digest=$(file_digest "$word"); out+=("$(realpath --relative-to=. "$word")@${digest:0:16}")
    else out+=("$word"); fi
  done
  echo "${out[*]}"
}

# Jobs side by side (e.g. the fine-tunes of a stage), at most N at once:
#   free_slot N                  waits until fewer than N jobs run (call it before logging a job's start)
#   in_background N LOG CMD...   runs CMD (a command or a shell function) with its output in LOG once
#                                fewer than N jobs run; with N 1, in the foreground, output to the terminal
#   wait_background              waits for every job; a failed one ends the recipe, naming its log
# Each job runs in its own process group: a recipe that exits (an error, Ctrl-C, SIGTERM, SIGHUP) kills
# the whole of every job still running, the training processes a shell function started included.
declare -A background_logs=()   # pid (= process group) -> log
recipe_pid=""                   # the process group of the recipe run_recipe runs
in_background() {
  local jobs=$1 log=$2
  shift 2
  if [ "$jobs" -le 1 ]; then "$@"; return; fi
  free_slot "$jobs"
  mkdir -p "$(dirname "$log")"
  set -m   # job control only to start the job in a process group of its own
  "$@" > "$log" 2>&1 < /dev/null &
  set +m
  background_logs[$!]=$log
  _kill_jobs_on_exit
}
free_slot() {
  while [ ${#background_logs[@]} -ge "$1" ]; do _wait_one_background; done
}
wait_background() {
  while [ ${#background_logs[@]} -gt 0 ]; do _wait_one_background; done
  trap - EXIT HUP INT TERM
}
_wait_one_background() {
  local pid
  wait -n -p pid || { echo "$0: a job failed: see ${background_logs[$pid]}" >&2; exit 1; }
  echo "$(date +%T) done: ${background_logs[$pid]}"
  unset "background_logs[$pid]"
}
_kill_jobs_on_exit() {   # a signal exits the recipe (a trapped signal interrupts wait), and its exit kills the jobs
  trap _kill_jobs EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
_kill_jobs() {
  local pid
  for pid in "${!background_logs[@]}" $recipe_pid; do kill -- -"$pid" 2>/dev/null || true; done
}

# run_recipe CMD...: runs the recipe CMD (e.g. ../../../recipes/ssl.sh with options) and returns its status.
# A recipe run in the foreground would outlive a SIGTERM or SIGHUP to this one (bash waits for it before
# running a trap): CMD runs in a process group of its own, which this recipe's end kills whole.
run_recipe() {
  local status=0
  set -m
  "$@" < /dev/null &
  set +m
  recipe_pid=$!
  _kill_jobs_on_exit
  wait "$recipe_pid" || status=$?
  recipe_pid=""
  [ ${#background_logs[@]} -gt 0 ] || trap - EXIT HUP INT TERM
  return $status
}
