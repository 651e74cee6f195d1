"""One training command on this machine, on a Slurm allocation, or on hosts a cluster started itself.

Every mode ends in torchrun (``torch.distributed.run``), whose c10d rendezvous joins the nodes:

- ``local``: one process, or ``torchrun --standalone --nproc-per-node N`` on this machine.
- ``slurm``: a job script written into the experiment dir (readable, resubmittable), ``sbatch --wait``
  of it; in it ``srun`` starts one torchrun per node, the rendezvous at the allocation's first node.
- ``hostfile``: the cluster starts this same command on the first ``num_nodes`` hosts listed in the hostfile
  (every host by default; no SSH from here); torchrun on each joins the rendezvous at the first host.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from audiossl.errors import ConfigError

MODES = ("local", "slurm", "hostfile")


@dataclass
class Launch:
    """How to run: ``procs_per_node`` processes (one per GPU; CPU processes where there is no GPU) on
    ``num_nodes`` nodes (None: every host of the hostfile in hostfile mode, else 1). ``slurm_args``: sbatch
    options of the job script, ``{ngpu}`` replaced by ``procs_per_node`` (e.g. ``--gpus-per-node={ngpu}``).
    ``max_restarts``: torchrun restarts every process this many times after one fails (the training resumes
    from its last checkpoint)."""

    mode: str = "local"
    procs_per_node: int = 1
    num_nodes: int | None = None
    port: int = 29500
    slurm_args: list[str] = field(default_factory=list)
    hostfile: str | None = None
    max_restarts: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"launch mode is one of {', '.join(MODES)}, not {self.mode!r}")
        if self.num_nodes is None and self.mode != "hostfile":
            self.num_nodes = 1
        if self.procs_per_node < 1 or (self.num_nodes is not None and self.num_nodes < 1):
            raise ConfigError(f"--ngpu and --num-nodes must be at least 1, got {self.procs_per_node} and "
                              f"{self.num_nodes}")
        if self.mode == "local" and self.num_nodes > 1:
            raise ConfigError(f"--num-nodes {self.num_nodes} needs the slurm or hostfile launch mode "
                              "(train_launch_mode in cmd.sh); local runs on this machine only")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port takes 1 to 65535, not {self.port}")
        if self.max_restarts < 0:
            raise ConfigError(f"--max-restarts takes 0 or more, not {self.max_restarts}")
        if self.mode == "hostfile" and not self.hostfile:
            raise ConfigError("the hostfile launch mode needs --hostfile (hostfile in cmd.sh)")


def torchrun(launch: Launch, nnodes: int) -> list[str]:
    """torchrun of ``nnodes`` nodes meeting at a c10d rendezvous (its endpoint and id to follow)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--nproc-per-node",
            str(launch.procs_per_node), "--max-restarts", str(launch.max_restarts), "--rdzv-backend", "c10d"]


def read_hosts(path: str) -> list[str]:
    """The hosts of a hostfile: one per line (a first word; ``#`` comments and blank lines skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()   # a byte order mark is no part of a host
    except OSError as err:
        raise ConfigError(f"hostfile {path}: {err.strerror}") from None
    hosts = []
    for number, line in enumerate(lines, 1):
        if line.split() and not line.lstrip().startswith("#"):
            host = line.split()[0]
            if ":" in host:  # host:slots of other launchers, or IPv6, which the rendezvous endpoint cannot take
                raise ConfigError(f"hostfile {path}:{number}: '{host}' is not a host name or IPv4 address (one host "
                                  "per line; its processes are --ngpu)")
            hosts.append(host)
    if not hosts:
        raise ConfigError(f"hostfile {path}: no hosts")
    return hosts


def run_id(job_dir: str | os.PathLike) -> str:
    """A rendezvous id every node derives alike from the experiment dir's absolute path."""
    return "audiossl-" + hashlib.sha1(str(Path(job_dir).absolute()).encode()).hexdigest()[:12]


def local_command(launch: Launch, python_args: list[str]) -> list[str]:
    if launch.procs_per_node == 1 and launch.max_restarts == 0:
        return [sys.executable, *python_args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(launch.procs_per_node), "--max-restarts", str(launch.max_restarts), *python_args]


def hostfile_command(launch: Launch, python_args: list[str], job_dir: str | os.PathLike) -> list[str]:
    """torchrun on the first ``num_nodes`` hosts of the hostfile (all of them when None)."""
    hosts = read_hosts(launch.hostfile)
    num_nodes = launch.num_nodes or len(hosts)
    if num_nodes > len(hosts):
        raise ConfigError(f"--num-nodes {num_nodes}, but hostfile {launch.hostfile} lists only {len(hosts)} "
                          f"host{'s' if len(hosts) > 1 else ''}: ask for at most {len(hosts)}, or list more hosts")
    return [*torchrun(launch, num_nodes), "--rdzv-endpoint", f"{hosts[0]}:{launch.port}",
            "--rdzv-id", run_id(job_dir), *python_args]


def sbatch_word(option: str) -> str:
    """``option`` as sbatch reads it back from a ``#SBATCH`` line: in double quotes (``"`` and ``\\``
    escaped) when it holds white space, a quote, a backslash or a ``#``, which would start a comment."""
    if not re.search(r"[\s\"'\\#]", option):
        return option
    return '"' + re.sub(r'(["\\])', r"\\\1", option) + '"'


def slurm_script(launch: Launch, python_args: list[str], job_dir: str | os.PathLike) -> str:
    """The sbatch job script: one task per node, each a torchrun of ``python_args``, in this directory."""
    job_dir = Path(job_dir).absolute()
    options = [f"--job-name={job_dir.name}", f"--nodes={launch.num_nodes}", "--ntasks-per-node=1",
               f"--output={job_dir}/slurm-%j.log",
               *(arg.replace("{ngpu}", str(launch.procs_per_node)) for arg in launch.slurm_args)]
    command = " ".join([shlex.join(torchrun(launch, launch.num_nodes)),
                        f'--rdzv-endpoint "$head:{launch.port}" --rdzv-id "$SLURM_JOB_ID"', shlex.join(python_args)])
    return "\n".join([
        "#!/bin/bash",
        *(f"#SBATCH {sbatch_word(option)}" for option in options),
        "# Written by audiossl.bin.launch; resubmit with: sbatch " + shlex.quote(str(job_dir / "train.sbatch")),
        "set -euo pipefail",
        f"cd {shlex.quote(os.getcwd())}",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)  # the rendezvous host',
        f"srun --nodes={launch.num_nodes} --ntasks-per-node=1 {command}",
        ""])


def launch_training(launch: Launch, python_args: list[str], job_dir: str | os.PathLike, dry_run: bool = False) -> int:
    """Run ``python_args`` (e.g. ``-m audiossl.bin.pretrain ...``) as ``launch`` says; its exit status."""
    if launch.mode == "slurm":
        script = Path(job_dir) / "train.sbatch"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(slurm_script(launch, python_args, job_dir))
        command = ["sbatch", "--wait", str(script)]
    elif launch.mode == "hostfile":
        command = hostfile_command(launch, python_args, job_dir)
    else:
        command = local_command(launch, python_args)
    print(shlex.join(command), file=sys.stderr if not dry_run else sys.stdout, flush=True)
    if dry_run:
        return 0
    try:
        return subprocess.run(command).returncode
    except FileNotFoundError as err:
        raise ConfigError(f"cannot run {command[0]}: {err.strerror} (is this a {launch.mode} host?)") from None
