"""Run one training command as the site's cmd.sh and the recipe's --ngpu / --num-nodes say.

  python3 -m audiossl.bin.launch --mode local --ngpu 2 exp/hubert_iter1 -- -m audiossl.bin.pretrain ...

Modes: local (one process, or torchrun --standalone with --ngpu processes on this machine); slurm (writes
JOB_DIR/train.sbatch: srun starts torchrun on each of --num-nodes nodes, c10d rendezvous at the first;
submitted with sbatch --wait, so the recipe waits for it); hostfile (run this same command on the first
--num-nodes hosts of --hostfile yourself, every host by default: torchrun's rendezvous is at the first host,
one node per host). --ngpu is the number of processes per node, one per GPU; on a machine without GPUs they
share the CPU (gloo).
With --max-restarts N, torchrun restarts the processes after one fails or its watchdog ends a stalled
one (trainer.watchdog_seconds), and training resumes from the last checkpoint. The exit status is the
training's.
"""
from __future__ import annotations

import argparse
import sys

from audiossl.bin.arguments import positive_int, shell_words
from audiossl.errors import reports_user_errors
from audiossl.train.launch import MODES, Launch, launch_training


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, default="local", help="where it runs (default: %(default)s)")
    parser.add_argument("--ngpu", type=positive_int, default=1, help="processes per node, one per GPU (default: 1)")
    parser.add_argument("--num-nodes", type=positive_int,
                        help="nodes (slurm, hostfile; default: 1, in hostfile mode every host of --hostfile)")
    parser.add_argument("--port", type=positive_int, default=29500, help="rendezvous port on the first node")
    parser.add_argument("--max-restarts", type=int, default=0,
                        help="restart every process this many times after one fails or stalls (torchrun elastic); "
                             "the training resumes from its last checkpoint (default: 0)")
    parser.add_argument("--slurm-args", type=shell_words, default="",
                        help="sbatch options for the job script, {ngpu} replaced, e.g. '--partition=gpu "
                             "--gpus-per-node={ngpu}' (give it as --slurm-args=...)")
    parser.add_argument("--hostfile", default="", help="hostfile mode: one host per line, the first hosts the rendezvous")
    parser.add_argument("--dry-run", action="store_true", help="print the command (and write the job script) only")
    parser.add_argument("job_dir", help="the run's experiment dir (the Slurm job script goes there)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then python's arguments, e.g. -m audiossl.bin.pretrain ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the training command after --, e.g. -- -m audiossl.bin.pretrain ...")
    launch = Launch(args.mode, args.ngpu, args.num_nodes, args.port, args.slurm_args,
                    args.hostfile or None, args.max_restarts)
    return launch_training(launch, command, args.job_dir, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
