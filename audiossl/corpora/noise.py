"""Noise clips for denoising pretraining (noise mixed into speech, as in WavLM): a Kaldi data dir.

Kinds (``KINDS``): seeded numpy noise — ``white``, ``pink``, ``brown``, ``blue`` (power density
f^0, f^-1, f^-2, f^1 above 20 Hz), ``hum`` (50 or 60 Hz mains with harmonics over faint pink
noise), ``speech_shaped`` (Gaussian noise with the long-term spectrum of the given speech);
``babble`` (3–7 talkers, each a stream of the given speech utterances); ``ambience`` (crops from
a random point of a CC0 recording of Debian's ``sonic-pi-samples``, played back and forth when
the clip outlasts it; skipped with a warning when the package is missing).

Layout::

    audio_dir/<kind>/<clip>.wav    16 kHz mono 16-bit, 2–8 s; clip id = <kind>-<index>, e.g. pink-0003
    audio_dir/seed                 the seed the audio was made with
    data_dir/{wav.scp,utt2spk,spk2utt,utt2dur,utt2kind}    speaker = kind

Each clip is made by a ``numpy.random.Generator`` seeded from ``(seed, clip id)``, so the same
seed gives byte-identical files and a tiny dir holds the first clips of a full one (their
babble and speech-shaped clips aside, which follow the speech given). Existing clips are
reused as they are; each is written under a temporary name and renamed. Every clip is scaled
to an RMS of -26 dBFS, less where its peak would pass -1 dBFS.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft
import soundfile

from audiossl.audio import SAMPLE_RATE, load_entry, reusable_audio, write_pcm16
from audiossl.corpora.workers import check_provenance
from audiossl.data.kaldi_dir import DataDir
from audiossl.errors import UserError

log = logging.getLogger(__name__)

POWER_LAW_EXPONENTS = {"white": 0.0, "pink": -1.0, "brown": -2.0, "blue": 1.0}
KINDS = (*POWER_LAW_EXPONENTS, "hum", "speech_shaped", "babble", "ambience")
CLIPS_PER_KIND = {"tiny": 1, "full": 40}
MIN_SECONDS, MAX_SECONDS = 2.0, 8.0
LOW_CUT_HZ = 20.0
TALKERS = (3, 7)
TARGET_RMS = 10 ** (-26 / 20)
MAX_PEAK = 10 ** (-1 / 20)
HUM_FLOOR_DB = -30.0

SONIC_PI_SAMPLES_DIR = Path("/usr/share/sonic-pi/samples")
# CC0 in /usr/share/doc/sonic-pi-samples/copyright, steady enough to be background noise
AMBIENCE_RECORDINGS = ("ambi_dark_woosh", "ambi_drone", "ambi_glass_hum", "ambi_glass_rub", "ambi_haunted_hum",
                       "ambi_lunar_land", "vinyl_hiss")
ACTIVE_RANGE_DB = 20.0   # a recording's fade-in and fade-out, this much below its loudest 0.1 s, are cut


class NoiseError(UserError, ValueError):
    """A noise dir of another seed, or no speech to make babble from; the message says which."""


# ---------------------------------------------------------------------------- signals

def shaped_noise(rng: np.random.Generator, num_samples: int,
                 amplitude: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Gaussian noise whose amplitude spectrum is ``amplitude(frequency in Hz)``; shape (num_samples,)."""
    length = scipy.fft.next_fast_len(num_samples, real=True)   # an awkward length makes the FFT 10x slower
    freqs = np.fft.rfftfreq(length, 1 / SAMPLE_RATE)
    spectrum = rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))
    return np.fft.irfft(spectrum * amplitude(freqs), n=length)[:num_samples]


def power_law_noise(rng: np.random.Generator, num_samples: int, exponent: float) -> np.ndarray:
    """Noise of power density f^exponent above 20 Hz and none below (white 0, pink -1, brown -2, blue 1)."""
    return shaped_noise(rng, num_samples, lambda f: np.where(
        f >= LOW_CUT_HZ, np.maximum(f, LOW_CUT_HZ) ** (exponent / 2), 0.0))


def mains_hum(rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """50 or 60 Hz hum (8 harmonics, random levels falling as 1/k, random phases) over pink noise 30 dB down."""
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.998, 1.002)
    harmonics = np.arange(1, 9)[:, None]
    levels = rng.uniform(0.3, 1.0, (len(harmonics), 1)) / harmonics
    phases = rng.uniform(0, 2 * np.pi, (len(harmonics), 1))
    t = np.arange(num_samples) / SAMPLE_RATE
    hum = (levels * np.sin(2 * np.pi * f0 * harmonics * t + phases)).sum(axis=0)
    floor = power_law_noise(rng, num_samples, POWER_LAW_EXPONENTS["pink"])
    return hum / _rms(hum) + floor / _rms(floor) * 10 ** (HUM_FLOOR_DB / 20)


def long_term_spectrum(speech_wavs: Sequence[Path], n_fft: int = 512,
                       max_files: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """``(frequencies in Hz, mean power)``, each (n_fft // 2 + 1,), of Hann-windowed half-overlapping
    frames of up to ``max_files`` wavs spread evenly over ``speech_wavs``."""
    window = np.hanning(n_fft)
    total, num_frames = np.zeros(n_fft // 2 + 1), 0
    for path in speech_wavs[::max(1, len(speech_wavs) // max_files)][:max_files]:
        samples, _ = load_entry(str(path))
        if len(samples) < n_fft:
            continue
        frames = np.lib.stride_tricks.sliding_window_view(samples, n_fft)[::n_fft // 2]
        total += (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2).sum(axis=0)
        num_frames += len(frames)
    if not num_frames:
        raise NoiseError(f"no speech wav is longer than {n_fft} samples")
    return np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE), total / num_frames


def babble(rng: np.random.Generator, speech_wavs: Sequence[Path], num_samples: int) -> np.ndarray:
    """Sum of 3–7 talkers; each is a stream of random utterances of ``speech_wavs`` (each at unit RMS),
    entered at a random point of its first utterance. Returns (num_samples,)."""
    mix = np.zeros(num_samples)
    for _ in range(rng.integers(TALKERS[0], TALKERS[1], endpoint=True)):
        stream, length, start = [], 0, None
        while start is None or length < start + num_samples:
            samples, _ = load_entry(str(speech_wavs[rng.integers(len(speech_wavs))]))
            stream.append(samples / (_rms(samples) or 1.0))
            length += len(samples)
            start = int(rng.integers(len(samples))) if start is None else start
        mix += np.concatenate(stream)[start:start + num_samples]
    return mix


def load_recording(path: Path) -> np.ndarray:
    """A recording mixed down to mono at 16 kHz, its fade-in and fade-out cut; shape (num_samples,)."""
    import scipy.signal   # 1 s to import: only when a recording is needed

    samples, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    common = math.gcd(rate, SAMPLE_RATE)
    mono = scipy.signal.resample_poly(samples.mean(axis=1), SAMPLE_RATE // common, rate // common)
    hop = SAMPLE_RATE // 10
    levels = np.array([_rms(mono[i:i + hop]) for i in range(0, len(mono) - hop + 1, hop)])
    active = np.flatnonzero(levels >= levels.max() * 10 ** (-ACTIVE_RANGE_DB / 20))
    return mono[active[0] * hop:(active[-1] + 1) * hop]


def looped_crop(rng: np.random.Generator, recording: np.ndarray, num_samples: int) -> np.ndarray:
    """``num_samples`` from a random point of ``recording`` played forwards and backwards in turn
    (no click at the turns, any length); shape (num_samples,)."""
    period = 2 * len(recording)
    position = (rng.integers(period) + np.arange(num_samples)) % period
    return recording[np.where(position < len(recording), position, period - 1 - position)]


def ambience_paths(samples_dir: Path = SONIC_PI_SAMPLES_DIR) -> list[Path]:
    """The ambience recordings present in ``samples_dir``; the missing ones are logged."""
    paths = [samples_dir / f"{name}.flac" for name in AMBIENCE_RECORDINGS]
    found = [p for p in paths if p.is_file()]
    if not found:
        log.warning("no ambience recording in %s (Debian package sonic-pi-samples): ambience noise skipped",
                    samples_dir)
    elif len(found) < len(paths):
        log.warning("ambience recordings missing from %s: %s", samples_dir,
                    " ".join(p.name for p in paths if p not in found))
    return found


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def level_normalized(samples: np.ndarray) -> np.ndarray:
    """``samples`` scaled to an RMS of -26 dBFS, or less so that the peak stays within -1 dBFS."""
    return samples * min(TARGET_RMS / _rms(samples), MAX_PEAK / np.abs(samples).max())


# ---------------------------------------------------------------------------- clips

@dataclass
class NoiseSources:
    """What clips are made from: speech wavs (sorted), their long-term spectrum, ambience recordings."""

    speech_wavs: list[Path]
    speech_spectrum: tuple[np.ndarray, np.ndarray]
    recordings: list[np.ndarray]

    @classmethod
    def load(cls, speech_wavs: Sequence[str | os.PathLike], recording_paths: Sequence[Path]) -> "NoiseSources":
        """Read the recordings and the long-term spectrum of the speech (the speech itself is read as needed)."""
        speech = sorted(Path(p) for p in speech_wavs)
        return cls(speech, long_term_spectrum(speech), [load_recording(p) for p in recording_paths])


def clip_rng(seed: int, clip: str) -> np.random.Generator:
    """The generator of one clip, fixed by the seed and the clip id."""
    digest = hashlib.sha256(f"{seed}/{clip}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def make_clip(kind: str, index: int, rng: np.random.Generator, sources: NoiseSources) -> np.ndarray:
    """Clip ``index`` of ``kind``: 2–8 s, not yet level-normalized; shape (num_samples,)."""
    num_samples = int(rng.integers(MIN_SECONDS * SAMPLE_RATE, MAX_SECONDS * SAMPLE_RATE, endpoint=True))
    if kind in POWER_LAW_EXPONENTS:
        return power_law_noise(rng, num_samples, POWER_LAW_EXPONENTS[kind])
    if kind == "hum":
        return mains_hum(rng, num_samples)
    if kind == "speech_shaped":
        freqs, power = sources.speech_spectrum
        return shaped_noise(rng, num_samples, lambda f: np.sqrt(np.interp(f, freqs, power)))
    if kind == "babble":
        return babble(rng, sources.speech_wavs, num_samples)
    if kind == "ambience":
        return looped_crop(rng, sources.recordings[index % len(sources.recordings)], num_samples)
    raise ValueError(f"unknown noise kind '{kind}'")


def write_clip(path: Path, samples: np.ndarray) -> None:
    """Write a level-normalized clip as 16 kHz mono 16-bit wav, atomically."""
    if not np.any(samples):
        raise NoiseError(f"{path}: its sources gave only silence")
    write_pcm16(path, np.round(level_normalized(samples) * 32767).astype("<i2"), SAMPLE_RATE)


def _check_seed(audio_dir: Path, seed: int) -> None:
    """Record the seed of the noise clips (:func:`~audiossl.corpora.workers.check_provenance`)."""
    check_provenance(audio_dir, {"seed": str(seed)}, NoiseError)


def prepare_noise(audio_dir: str | os.PathLike, data_dir: str | os.PathLike,
                  speech_wavs: Sequence[str | os.PathLike], size: str = "full", seed: int = 0,
                  samples_dir: Path = SONIC_PI_SAMPLES_DIR) -> Path:
    """Make the missing noise clips in ``audio_dir`` and write their Kaldi data dir ``data_dir``.

    Args:
        speech_wavs: 16 kHz speech for babble and the speech-shaped spectrum; give training
            audio only, so that evaluation speech never turns up as noise.
        size: "full" (40 clips of each kind, about 27 min) or "tiny" (one clip of each kind).
        seed: fixes every clip; the same seed gives byte-identical clips.
        samples_dir: where sonic-pi-samples keeps its recordings; without them no ambience.

    Returns:
        ``data_dir``.

    Raises:
        NoiseError: ``audio_dir`` holds noise of another seed, or ``speech_wavs`` is empty.
    """
    if size not in CLIPS_PER_KIND:
        raise ValueError(f"size must be one of {' '.join(CLIPS_PER_KIND)}, got '{size}'")
    if not speech_wavs:
        raise NoiseError("no speech wavs given to make babble and speech-shaped noise from")
    audio_dir, data_dir = Path(audio_dir).absolute(), Path(data_dir)
    _check_seed(audio_dir, seed)
    recording_paths = ambience_paths(samples_dir)
    kinds = [k for k in KINDS if k != "ambience" or recording_paths]
    clips = [(f"{kind}-{i:04d}", kind, i) for kind in kinds for i in range(CLIPS_PER_KIND[size])]
    path = {clip: audio_dir / kind / f"{clip}.wav" for clip, kind, _ in clips}
    todo = [c for c in clips if not reusable_audio(path[c[0]])]
    log.info("%s: %d noise clips planned, %d already made, %d to make", audio_dir, len(clips),
             len(clips) - len(todo), len(todo))
    if todo:
        sources = NoiseSources.load(speech_wavs, recording_paths)
        for clip, kind, index in todo:
            write_clip(path[clip], make_clip(kind, index, clip_rng(seed, clip), sources))
    durations = {clip: soundfile.info(str(path[clip])).frames / SAMPLE_RATE for clip, _, _ in clips}
    DataDir({
        "wav.scp": {clip: str(path[clip]) for clip, _, _ in clips},
        "utt2spk": {clip: kind for clip, kind, _ in clips},
        "utt2kind": {clip: kind for clip, kind, _ in clips},
        "utt2dur": {clip: f"{durations[clip]:.4f}" for clip, _, _ in clips},
    }).write(data_dir)
    log.info("%s: %d noise clips of %d kinds, %.1f min", data_dir.name, len(clips), len(kinds),
             sum(durations.values()) / 60)
    return data_dir
