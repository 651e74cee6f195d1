"""The thread pool that synthesis and rendering jobs run on."""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


@contextmanager
def thread_pool(num_workers: int) -> Iterator[ThreadPoolExecutor]:
    """A ``ThreadPoolExecutor`` that, when the block raises (Ctrl-C, a full disk), cancels the jobs not
    yet started and waits only for the running ones; a plain ``with`` would run every queued job first."""
    pool = ThreadPoolExecutor(max_workers=num_workers)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
