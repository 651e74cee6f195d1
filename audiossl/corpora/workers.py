"""What synthesis and rendering runs share: the thread pool their jobs run on, the lock of their audio dir."""
from __future__ import annotations

import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


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


@contextmanager
def audio_dir_lock(audio_dir: Path) -> Iterator[None]:
    """Hold ``audio_dir/.lock`` (made with its dir) while audio is made there: a second run on the same dir
    (two recipes side by side) waits for the first, then reuses its audio, instead of both writing the same
    files. A POSIX lock, dropped by the kernel however its process ends."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(audio_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                log.warning("cannot lock %s (%s): runs side by side on it would clash", audio_dir / ".lock",
                            err.strerror)
            else:
                log.info("%s: another run is making audio there; waiting for it to end", audio_dir)
                fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
