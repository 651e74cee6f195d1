"""Decoding ``wav.scp`` entries: audio files, Kaldi pipe commands, segments; resampling.

A ``wav.scp`` value is either a path to an audio file soundfile can read (wav, flac,
ogg, ...) or a shell command ending in ``|`` whose standard output is such a file.
"""
from __future__ import annotations

import io
import subprocess

import numpy as np
import soundfile

from audiossl.errors import UserError

SAMPLE_RATE = 16000


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


def entry_info(entry: str) -> tuple[int, int]:
    """``(num_samples, sample_rate)`` of an entry, reading only the header for files."""
    source = _open(entry)
    try:
        info = soundfile.info(source)
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise AudioError(f"cannot decode '{entry}': {err}") from err
    return info.frames, info.samplerate


def load_entry(entry: str, start: float = 0.0, end: float = -1.0,
               sample_rate: int | None = SAMPLE_RATE) -> tuple[np.ndarray, int]:
    """Decode a ``wav.scp`` value to mono float32 in [-1, 1].

    Args:
        entry: an audio path or a pipe command ending in ``|``.
        start, end: the region in seconds (``end`` -1: to the end), as in ``segments``.
        sample_rate: resample to this rate; None keeps the file's.

    Returns:
        ``(samples, rate)``; samples has shape (num_samples,). The first channel is kept.
    """
    source = _open(entry)
    try:
        with soundfile.SoundFile(source) as f:
            rate = f.samplerate
            first = int(round(start * rate))
            last = f.frames if end < 0 else int(round(end * rate))
            if first > f.frames or last > f.frames + 1:
                raise AudioError(f"region {start:.3f}-{end:.3f} s is past the end of '{entry}' "
                                 f"({f.frames / rate:.3f} s)")
            f.seek(first)
            samples = f.read(max(0, min(last, f.frames) - first), dtype="float32", always_2d=True)[:, 0]
    except AudioError:
        raise
    except (RuntimeError, soundfile.LibsndfileError) as err:
        raise AudioError(f"cannot decode '{entry}': {err}") from err
    if sample_rate is not None and rate != sample_rate:
        samples, rate = resample(samples, rate, sample_rate), sample_rate
    return samples, rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling with torchaudio (sinc interpolation). samples: (num_samples,)."""
    import torch
    import torchaudio.functional

    return torchaudio.functional.resample(torch.from_numpy(samples), rate, target).numpy()
