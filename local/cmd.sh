# How jobs run at this site, sourced by every recipe (egs/*/*/cmd.sh links here).
# Local machine: utils/run_jobs.sh runs JOB=1:N jobs in parallel (at most nproc at once).
export train_cmd="utils/run_jobs.sh"
export decode_cmd="utils/run_jobs.sh"
export feats_cmd="utils/run_jobs.sh"

# Training (the recipes' --ngpu N --num-nodes M; python3 -m audiossl.bin.launch --help):
#   local     one process, or torchrun --standalone with N processes on this machine
#   slurm     <exp dir>/train.sbatch (srun torchrun on M nodes, c10d rendezvous), run with sbatch --wait
#   hostfile  start the training stage yourself on the first M hosts of $hostfile (every host without
#             --num-nodes; more than it lists is refused); rendezvous at the first host
export train_launch_mode=local
export slurm_args="--gpus-per-node={ngpu}"   # sbatch options ({ngpu}: N), e.g. add --partition=gpu --time=2-0
export hostfile=""                           # hostfile mode: one host per line
export train_max_restarts=0                  # torchrun restarts a failed or stalled job from its last checkpoint
