#!/usr/bin/env bash
# Local job launcher, like Kaldi's run.pl:
#   run_jobs.sh [--max-jobs-run N] JOB=1:N log/x.JOB.log command args...   (JOB replaced in log and args)
#   run_jobs.sh log/x.log command args...                                    (one job)
# Each job's output goes to its own log (with the command, start and end time, exit status).
# If any job fails the call fails, naming the failed jobs and their logs.
set -u
# nproc alone would answer OMP_NUM_THREADS (path.sh sets 1 for the jobs themselves).
max_jobs_run=${AUDIOSSL_MAX_JOBS:-$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)}
while [ $# -gt 0 ]; do
  case "$1" in
    --max-jobs-run|--num-threads|--mem|--gpu|--time)   # the others: queue options, no meaning when running locally
      [ $# -ge 2 ] || { echo "$0: missing value for $1" >&2; exit 1; }
      [ "$1" = --max-jobs-run ] && max_jobs_run=$2
      shift 2 ;;
    *) break ;;
  esac
done
[[ "$max_jobs_run" =~ ^[1-9][0-9]*$ ]] || { echo "$0: --max-jobs-run (or AUDIOSSL_MAX_JOBS) takes a positive integer, not '$max_jobs_run'" >&2; exit 1; }
[ $# -ge 2 ] || { echo "usage: $0 [--max-jobs-run N] [JOB=1:N] <log> <command...>" >&2; exit 1; }
var="" first=1 last=1
if [[ "$1" =~ ^([A-Za-z]+)=([0-9]+):([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]} first=$((10#${BASH_REMATCH[2]})) last=$((10#${BASH_REMATCH[3]})); shift
  [ "$first" -le "$last" ] || { echo "$0: job range $var=$first:$last holds no job" >&2; exit 1; }
elif [[ "$1" =~ ^([A-Za-z]+)=([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]} first=$((10#${BASH_REMATCH[2]})) last=$first; shift
fi
log=$1; shift
[ $# -gt 0 ] || { echo "$0: no command given" >&2; exit 1; }

status_dir=$(mktemp -d)
trap 'rm -rf "$status_dir"' EXIT
args=("$@")

job_log() { if [ -n "$var" ]; then echo "${log//$var/$1}"; else echo "$log"; fi; }

run_one() {  # <job-index>: runs the command with JOB replaced, output to its log
  local id=$1 joblog cmd=() a status
  joblog=$(job_log "$id")
  for a in "${args[@]}"; do
    if [ -n "$var" ]; then cmd+=("${a//$var/$id}"); else cmd+=("$a"); fi
  done
  mkdir -p "$(dirname "$joblog")"
  {
    printf '# '; printf '%q ' "${cmd[@]}"; echo
    echo "# Started at $(date)"
    "${cmd[@]}"
    status=$?
    echo "# Accounting: status=$status"
    echo "# Ended (code $status) at $(date)"
  } > "$joblog" 2>&1
  echo "$status" > "$status_dir/$id"
}

for ((i = first; i <= last; i++)); do
  while [ "$(jobs -rp | wc -l)" -ge "$max_jobs_run" ]; do wait -n; done
  run_one "$i" &
done
wait
failed=()
for ((i = first; i <= last; i++)); do
  [ "$(cat "$status_dir/$i" 2>/dev/null)" = 0 ] || failed+=("$i")
done
if [ ${#failed[@]} -gt 0 ]; then
  for id in "${failed[@]}"; do
    echo "$0: job $id failed, see $(job_log "$id")" >&2
    tail -n 5 "$(job_log "$id")" | sed 's/^/    /' >&2
  done
  echo "$0: ${#failed[@]} of $((last - first + 1)) jobs failed" >&2
  exit 1
fi
exit 0
