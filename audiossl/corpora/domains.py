"""Domain-shifted copies of a data dir, made offline (Robust wav2vec 2.0's question: which domains
should pretraining see; the ATC benchmark's narrow-band radio).

Domains (the clean source and the corpus's held-out voices, ``test_unseen``, are the other two):

- ``noisy``: each utterance mixed with a noise of :data:`~audiossl.corpora.keywords.NOISE_KINDS`
  at an SNR drawn from 0 to 20 dB.
- ``radio``: narrow-band radio / telephone as air-traffic-control audio: 8 kHz, band-pass 300 to
  3400 Hz, driven 6 to 12 dB into clipping, hiss 25 to 35 dB down, back at 16 kHz.

Every draw comes from the seed, the domain and the utterance id, so a copy is the same on every
machine and an interrupted one continues where it stopped (finished files are kept). The seed
is recorded in ``audio_dir/<domain>/seed``: files of another seed are never reused. A copy holds
``audio_dir/<domain>/.lock``: a second one into the same folder waits for it.
"""
from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np
import scipy.signal

from audiossl.audio import SAMPLE_RATE, AudioError, load_entry, resample, reusable_audio
from audiossl.corpora.keywords import background, load_noise_sources, noise_kinds, rms, with_noise, write_wav
from audiossl.corpora.mini_tts import check_seed, render_all
from audiossl.corpora.noise import MAX_PEAK, NoiseSources
from audiossl.corpora.workers import audio_dir_lock
from audiossl.data.kaldi_dir import FEATURE_TABLES, UTT_TABLES, DataDir, DataDirError

log = logging.getLogger(__name__)

DOMAINS = ("noisy", "radio")
SNR_RANGE_DB = (0.0, 20.0)
RADIO_RATE = 8000
RADIO_BAND_HZ = (300.0, 3400.0)
RADIO_DRIVE_DB = (6.0, 12.0)
RADIO_HISS_DB = (25.0, 35.0)


def utterance_rng(seed: int, domain: str, utt: str) -> np.random.Generator:
    """The generator of one utterance's draws in one domain."""
    return np.random.default_rng([seed, DOMAINS.index(domain), zlib.crc32(utt.encode())])


def noisy(samples: np.ndarray, rng: np.random.Generator, sources: NoiseSources) -> np.ndarray:
    """``samples`` (16 kHz, (S,)) with a noise of a random kind at a random SNR of :data:`SNR_RANGE_DB`."""
    kinds = noise_kinds()
    noise = background(rng, kinds[int(rng.integers(len(kinds)))], len(samples), sources)
    return with_noise(samples, rms(samples), noise, float(rng.uniform(*SNR_RANGE_DB)))


def radio(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``samples`` (16 kHz, (S,)) through a narrow-band radio channel; same length and rate."""
    narrow = resample(samples.astype(np.float32), SAMPLE_RATE, RADIO_RATE).astype(np.float64)
    band = scipy.signal.butter(4, RADIO_BAND_HZ, btype="bandpass", fs=RADIO_RATE, output="sos")
    narrow = scipy.signal.sosfilt(band, narrow)
    drive = 10 ** (rng.uniform(*RADIO_DRIVE_DB) / 20) / max(np.abs(narrow).max(), 1e-9)
    clipped = np.clip(narrow * drive, -1.0, 1.0)
    hissed = with_noise(clipped, rms(clipped), rng.normal(size=len(clipped)), float(rng.uniform(*RADIO_HISS_DB)))
    wide = resample(hissed.astype(np.float32), RADIO_RATE, SAMPLE_RATE)   # may ring past the clipped peak
    wide = np.pad(wide, (0, max(0, len(samples) - len(wide))))[:len(samples)]
    return wide * min(1.0, MAX_PEAK / max(np.abs(wide).max(), 1e-9))


def shift_domain(source_dir: str | os.PathLike, out_dir: str | os.PathLike, audio_dir: str | os.PathLike,
                 domain: str, seed: int = 0, num_workers: int = 2, progress: bool = False) -> DataDir:
    """Write ``domain``'s copy of the data dir ``source_dir``: one wav per utterance under
    ``audio_dir/<domain>/`` and a data dir ``out_dir`` with the same utterances, renamed
    ``<utt>-<domain>`` (so sets of several domains combine), their texts, speakers and languages."""
    if domain not in DOMAINS:
        raise DataDirError(f"unknown domain '{domain}'; known: {', '.join(DOMAINS)}")
    source = DataDir.read(source_dir)
    if "wav.scp" not in source:
        raise DataDirError(f"{source_dir}: no wav.scp, so no audio to shift to the {domain} domain")
    sources = load_noise_sources() if domain == "noisy" else None
    folder = Path(audio_dir) / domain
    paths = {utt: folder / f"{utt}-{domain}.wav" for utt in source.utterances}
    with audio_dir_lock(folder):
        check_seed(folder / "seed", seed)

        def job(utt: str):
            def shifted() -> None:
                entry, segment = source.audio_entry(utt)
                try:
                    samples, _ = load_entry(entry, *((segment.start, segment.end) if segment else ()))
                except AudioError as err:
                    raise AudioError(f"{source_dir}: utterance '{utt}': {err}") from None
                rng = utterance_rng(seed, domain, utt)
                write_wav(paths[utt], noisy(samples, rng, sources) if domain == "noisy" else radio(samples, rng))
            return shifted

        todo = {utt: job(utt) for utt, path in paths.items() if not reusable_audio(path)}
        log.info("%s -> %s: %d utterances, %d to make", source_dir, domain, len(paths), len(todo))
        render_all(todo, num_workers, progress, f"{domain} copy of {Path(source_dir).name}")
        renamed = {utt: f"{utt}-{domain}" for utt in source.utterances}
        tables = {name: {renamed[utt]: value for utt, value in table.items() if utt in renamed}
                  for name, table in source.tables.items() if name in UTT_TABLES and name not in FEATURE_TABLES}
        tables["wav.scp"] = {renamed[utt]: str(path.resolve()) for utt, path in paths.items()}
        shifted_dir = DataDir(tables)
        shifted_dir.write(out_dir)
        return shifted_dir
