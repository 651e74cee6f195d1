"""What synthesis and rendering runs share: the thread pool their jobs run on, the lock of their audio dir,
the record of what their audio is made with."""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from audiossl.atomic import waiting_lock, write_text_atomic


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


def audio_dir_lock(audio_dir: Path):
    """Hold ``audio_dir/.lock`` while audio is made there: a second run on the same dir (two recipes side by
    side) waits for the first, then reuses its audio, instead of both writing the same files."""
    return waiting_lock(audio_dir / ".lock", f"{audio_dir}: another run is making audio there")


def check_provenance(audio_dir: Path, made_with: dict[str, str], error: type[Exception]) -> None:
    """Record in ``audio_dir/<name>`` each value the audio there is made with (``{"seed": "0"}``); raise
    ``error`` for one recorded otherwise while the dir holds a wav: audio made two ways must not mix. A dir
    without a wav yet (a run stopped before its first) takes the new values."""
    for name, value in made_with.items():
        path = audio_dir / name
        if path.is_file() and path.read_text().strip() != value and any(audio_dir.rglob("*.wav")):
            raise error(f"{audio_dir} holds audio made with {name} {path.read_text().strip()}, not {value}; "
                        "use another directory")
    audio_dir.mkdir(parents=True, exist_ok=True)
    for name, value in made_with.items():
        write_text_atomic(audio_dir / name, f"{value}\n")
