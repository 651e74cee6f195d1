"""Atomic file writes: a killed job, a full disk or a power loss leaves the previous file or none, never part of one;
and a lock file on which runs that would write the same files take turns.

    with atomic_path("exp/model.safetensors") as tmp:
        save_file(tensors, str(tmp))          # anything that writes a file at a given path
    write_text_atomic("data/local/lm.txt", text)
    with atomic_dir("data/train_st") as tmp:   # a directory of files, replaced whole
        data.write(tmp)
    with waiting_lock("cache/x.lock", "cache/x: another run is computing it"):   # one run at a time
        ...
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from audiossl.errors import UserError

logger = logging.getLogger(__name__)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same directory, so the rename is atomic) to write to.

    When the block ends without an error the temporary file is synced to disk and renamed onto ``path``
    (a power loss then leaves the old file or the new one, never an empty one); when it raises, the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
        replace_synced(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_synced(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Sync the finished file ``src`` to disk, then rename it onto ``dst`` (same directory): the rename
    of :func:`atomic_path`, for files whose temporary names are chosen elsewhere."""
    _sync(src)
    os.replace(src, dst)


def _sync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``Path(path).write_text(text)`` in UTF-8, through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary directory beside ``path`` to fill; it replaces ``path`` whole when the block ends
    without an error (no file of an earlier ``path`` stays), and is removed, ``path`` left as it was, when
    it raises. Its files are synced to disk before the swap. A kill between the two renames leaves the
    earlier directory as ``.<name>.old`` beside it, and the next ``atomic_dir`` of ``path`` puts it back first.
    A link to a directory replaces the directory it links to; a file, the working directory or one above it
    is a :class:`~audiossl.errors.UserError`.
    """
    path = Path(path).absolute()
    if path.is_symlink():  # the directory it links to is the one replaced
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: a file, not a directory: name a directory to write")
    if path == Path.cwd() or path in Path.cwd().parents:
        raise UserError(f"{path}: the working directory or one above it cannot be replaced; name another directory")
    tmp, old = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")
    if old.is_dir() and not path.exists():  # a run killed between the renames below: the earlier directory, whole
        old.rename(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for folder, _, names in os.walk(tmp):  # on disk before the swap, as atomic_path's files
            for name in names:
                _sync(Path(folder, name))
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def waiting_lock(path: str | os.PathLike, busy: str) -> Iterator[None]:
    """Hold the lock file ``path`` (made with its folder) for the block; while another process holds it,
    log ``busy`` and wait. A POSIX lock, dropped by the kernel however its process ends. On a file system
    without locks, a warning, and the block runs unlocked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EACCES, errno.EAGAIN):
                logger.warning("cannot lock %s (%s): runs side by side may clash", path, err.strerror)
            else:
                logger.info("%s; waiting for it to end", busy)
                fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
