# How jobs run at this site, sourced by every recipe (egs/*/*/cmd.sh links here).
# Local machine: utils/run_jobs.sh runs JOB=1:N jobs in parallel (at most nproc at once).
export train_cmd="utils/run_jobs.sh"
export decode_cmd="utils/run_jobs.sh"
export feats_cmd="utils/run_jobs.sh"
