"""Process groups under torchrun (``WORLD_SIZE``/``RANK``/``LOCAL_RANK``); one process otherwise."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist

from audiossl.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if there is one (NCCL on CUDA, gloo on CPU)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise UserError("trainer.device is cuda, but torch sees no CUDA device here (device auto uses one if present)")
    target = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        # torchrun keeps its store across the restarts of a job (--max-restarts): the keys of each attempt
        # go apart, or a restarted rank may read the address of a rank from the attempt before and hang
        store, rank, world_size = next(dist.rendezvous("env://"))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group("nccl" if use_cuda else "gloo", store=dist.PrefixStore(f"attempt_{attempt}", store),
                                rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, target)


def all_reduce_sums(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Sum each value over ranks (identity in one process)."""
    if info.world_size == 1:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.tolist()))


def all_gather_objects(value, info: DistInfo) -> list:
    """Every rank's ``value`` (picklable), in rank order (``[value]`` in one process)."""
    if info.world_size == 1:
        return [value]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


class Watchdog:
    """Ends this process when it makes no progress for ``seconds`` (0: never): a rank waiting in a collective
    on a rank that died or hangs would otherwise wait for ever. The log names the rank and what it was doing
    (``describe()``); under torchrun with ``--max-restarts`` the job then restarts from its last checkpoint.
    """

    EXIT_STATUS = 75  # EX_TEMPFAIL: worth a restart

    def __init__(self, seconds: float, rank: int, describe: Callable[[], str]):
        self.seconds = seconds
        self.rank = rank
        self.describe = describe
        self.last_beat = time.monotonic()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="audiossl-watchdog", daemon=True)

    def start(self) -> None:
        if self.seconds > 0 and not self.thread.is_alive():
            self.thread.start()

    def __enter__(self) -> Watchdog:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()

    def beat(self) -> None:
        """Progress was made (an update, a validation, a checkpoint)."""
        self.last_beat = time.monotonic()

    def _watch(self) -> None:
        while not self.stopped.wait(min(self.seconds / 4, 10.0)):
            idle = time.monotonic() - self.last_beat
            if idle > self.seconds:
                logging.getLogger("audiossl.train").error(
                    "rank %d: no progress for %.0f s in %s: a collective is waiting on a rank that died or hangs; "
                    "ending this process so that the job can restart from its last checkpoint", self.rank, idle,
                    self.describe())
                for handler in logging.getLogger().handlers + logging.getLogger("audiossl.train").handlers:
                    handler.flush()
                os._exit(self.EXIT_STATUS)
