"""Decoding ``wav.scp`` entries: audio files, Kaldi pipe commands, segments; resampling.

A ``wav.scp`` value is either a path to an audio file soundfile can read (wav, flac,
ogg, ...) or a shell command ending in ``|`` whose standard output is such a file.
"""
from __future__ import annotations

import io
import logging
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import soundfile

from audiossl.atomic import atomic_path
from audiossl.errors import UserError

SAMPLE_RATE = 16000
SEGMENT_OVERSHOOT = 0.01   # seconds a segment may end past its recording (times rounded), cut there
logger = logging.getLogger(__name__)
_noted: set[tuple[str, str]] = set()  # (entry, what) already logged in this process


class AudioError(UserError, RuntimeError):
    """Audio that is missing or cannot be decoded; the message names the entry."""


def is_pipe(entry: str) -> bool:
    """Whether a ``wav.scp`` value is a command (``cmd ... |``) rather than a path."""
    return entry.rstrip().endswith("|")


def read_entry_bytes(entry: str) -> bytes:
    """Run a pipe entry and return its standard output; raise :class:`AudioError` on failure."""
    command = entry.rstrip()[:-1].strip()
    proc = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"command '{command}' failed (exit {proc.returncode}): {message[-1] if message else ''}")
    return proc.stdout


def _open(entry: str):
    if is_pipe(entry):
        return io.BytesIO(read_entry_bytes(entry))
    return entry.strip()


STREAMED_LENGTH = 0x7FFFF000  # a data size at least this is "unknown": the header of a WAV written to a pipe


def _check_complete(f: soundfile.SoundFile, entry: str) -> None:
    """Refuse a file whose data chunk is shorter than its header says (a copy cut short): libsndfile
    would read the part that is there without a word. Pipes, and WAV headers written by a stream
    (no length known), are not checked."""
    if is_pipe(entry):
        return
    declared = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", f.extra_info, re.MULTILINE)
    if declared and int(declared.group(2)) < int(declared.group(1)) < STREAMED_LENGTH:
        raise AudioError(f"'{entry}' is truncated: its header declares {declared.group(1)} bytes of audio, "
                         f"the file holds {declared.group(2)}")


def _note_once(entry: str, what: str) -> None:
    if (entry, what) not in _noted:
        _noted.add((entry, what))
        logger.warning("'%s': %s", entry, what)


def entry_info(entry: str) -> tuple[int, int]:
    """``(num_samples, sample_rate)`` of an entry, reading only the header for files."""
    source = _open(entry)
    try:
        with soundfile.SoundFile(source) as f:
            _check_complete(f, entry)
            return f.frames, f.samplerate
    except AudioError:
        raise
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise AudioError(f"cannot decode '{entry}': {err}") from err


def reusable_audio(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a whole audio file, to be reused rather than made again. A file there that
    does not decode or is cut short (a copy interrupted) is logged and is not reusable."""
    if not Path(path).is_file():
        return False
    try:
        entry_info(str(path))
    except AudioError as err:
        logger.warning("%s: made again", err)
        return False
    return True


def region_bounds(start: float, end: float, rate: int, num_samples: int, entry: str) -> tuple[int, int]:
    """The first sample and the one past the last of the region ``start``-``end`` s (``end`` < 0: to the
    end, as in ``segments``) of a recording of ``num_samples`` at ``rate``. A region that ends up to
    ``SEGMENT_OVERSHOOT`` past the recording is cut at its end; one that starts before 0 or at or after
    the end, ends past that, or ends where it starts or before is an :class:`AudioError` naming ``entry``."""
    first = int(round(start * rate))
    last = num_samples if end < 0 else int(round(end * rate))
    length = f"'{entry}' ({num_samples / rate:.3f} s)"
    if start < 0 or (end >= 0 and end <= start):
        raise AudioError(f"region {start:.3f}-{end:.3f} s of {length} is no region: a start of 0 s or more, "
                         f"and an end after it (or -1, the recording's end) are needed")
    if first >= num_samples or last > num_samples + round(SEGMENT_OVERSHOOT * rate):
        raise AudioError(f"region {start:.3f}-{end:.3f} s is past the end of {length}")
    return first, min(last, num_samples)


def load_entry(entry: str, start: float = 0.0, end: float = -1.0,
               sample_rate: int | None = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Decode a ``wav.scp`` value to mono float32 in [-1, 1].

    Args:
        entry: an audio path or a pipe command ending in ``|``.
        start, end: the region in seconds (``end`` -1: to the end), as in ``segments``; checked by
            :func:`region_bounds`.
        sample_rate: resample to this rate; None keeps the file's.

    Returns:
        ``(samples, rate)``; samples has shape (num_samples,). The first channel is kept (logged once per
        entry). A truncated file, no samples, NaN/inf samples, a region starting before 0 s or a rate
        below 1 Hz raise :class:`AudioError`; an all-zero region is logged once per entry.
    """
    if start < 0 or (sample_rate is not None and sample_rate < 1):
        raise AudioError(f"'{entry}': region {start:.3f}-{end:.3f} s at {sample_rate} Hz: a region starts at 0 s "
                         "or later, and a sample rate is 1 Hz or more")
    source = _open(entry)
    try:
        with soundfile.SoundFile(source) as f:
            _check_complete(f, entry)
            if f.channels > 1:
                _note_once(entry, f"{f.channels} channels: the first is kept")
            rate = f.samplerate
            first, last = region_bounds(start, end, rate, f.frames, entry) if f.frames else (0, 0)
            f.seek(first)
            count = last - first
            if f.subtype == "PCM_16":   # the same values as libsndfile's float conversion, in a fraction of its time
                samples = np.multiply(f.read(count, dtype="int16", always_2d=True)[:, 0], np.float32(1 / 32768),
                                      dtype=np.float32)
            else:
                samples = f.read(count, dtype="float32", always_2d=True)[:, 0]
    except AudioError:
        raise
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise AudioError(f"cannot decode '{entry}': {err}") from err
    if samples.size == 0:
        raise AudioError(f"'{entry}': no samples" + (f" in region {start:.3f}-{end:.3f} s" if start or end >= 0 else ""))
    if not np.isfinite(samples).all():
        raise AudioError(f"'{entry}': {int((~np.isfinite(samples)).sum())} NaN or inf sample(s)")
    if not samples.any():
        _note_once(entry, "every sample is zero (digital silence)")
    if sample_rate is not None and rate != sample_rate:
        samples, rate = resample(samples, rate, sample_rate), sample_rate
    return samples, rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling with torchaudio (sinc interpolation). samples: (num_samples,)."""
    import torch
    import torchaudio.functional

    return torchaudio.functional.resample(torch.from_numpy(samples), rate, target).numpy()


def write_pcm16(path: str | os.PathLike, pcm: np.ndarray, rate: int) -> None:
    """Write the int16 samples ``pcm`` (shape (num_samples,)) as a mono 16-bit wav, atomically, making its
    folder. A failed write (a full disk: libsndfile's bare "System error") is an ``OSError`` naming
    ``path``, which entry points report as an error, not a traceback; no part of the file is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as part:
        try:
            soundfile.write(str(part), pcm, rate, subtype="PCM_16", format="WAV")
        except soundfile.LibsndfileError as err:
            raise OSError(f"{path}: cannot write the wav ({err}); is the disk full?") from err
