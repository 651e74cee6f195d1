"""Speakers: offline speaker identification (SID) and verification (ASV) data from mini TTS voices.

mini TTS has 22 English voices, and MFCC statistics alone tell them apart almost always. Each
voice is therefore split into pseudo-speakers (``<voice>_p<k>``, k < 6), each with a fixed
shift of its own: f0 (cents), vocal-tract length (every formant scaled by one factor, f0 kept)
and tempo. On every utterance comes a small jitter of the same three, white or pink noise and a
level change. Pseudo-speakers of one voice differ in formant positions, which MFCC statistics
see, but also in f0 and rhythm, which they barely see; :func:`mfcc_statistics_baseline`
measures how well they still do. On the full set (seed 0) logistic regression on MFCC
mean and std names 80 % of sid_test's utterances' speakers (94 % of their voices), and cosine
scoring of them gives 22 % EER on asv_test/trials (39 % on the trials whose nontargets share
a voice), minimum DCF 0.99 at p_target 0.05.

Audio, per utterance: the engine's raw audio (``mini_tts.synthesize_raw``); sox resamples,
trims, shifts the pitch by the speaker's plus the utterance's cents and changes the tempo
(``mini_tts.sox_command``). sox's pitch shift scales formants with f0, so the spectral
envelope is then warped back and on to the speaker's vocal-tract factor (:func:`warp_formants`);
last come noise and level, and the wav is written atomically.

Shifts are drawn per voice as a Latin hypercube: on each axis the six pseudo-speakers of a
voice fall in six different strata of the range (the stratum fixed by ``(seed, voice)``, the
place within it by ``(seed, speaker)``), so no two of a voice are alike on every axis.
Pseudo-speakers 0-3 of a voice are SID speakers, 4 and 5 ASV test speakers, at every size.

Layout::

    audio_dir/text/sentences_en.tsv       mini TTS's sentence cache (only sentences of 6-12 words are used)
    audio_dir/wav/<speaker>/<utt>.wav     16 kHz mono 16-bit; utterance id = <speaker>-<sentence id>
    audio_dir/wav/seed                    the seed the audio was made with
    audio_dir/wav/sentences_en.sha256     the sentence list it was made from
    audio_dir/.lock                       held by a run: a second run on the dir waits for it, then reuses
    data_dir/sid_{train,dev,test}/        SID: the SID speakers, own sentences in each; ``labels``:
                                          ``<speaker> <class index>`` of every SID speaker
    data_dir/asv_train/                   the utterances of sid_train (to train speaker embeddings)
    data_dir/asv_test/                    the ASV speakers, none in any training dir; ``trials``
    data_dir/local/speakers.tsv           speaker, voice, role, f0 cents, formant factor, tempo
    data_dir/local/utterances.tsv         utterance, its f0 cents, formant factor, tempo, noise, SNR, level

Everything is deterministic from the seed, and an utterance's audio depends only on the seed
and its id, so tiny and full sets can share ``audio_dir``; existing wavs are reused.

TTS voices are far more uniform than people: results on this corpus are optimistic and do
not transfer to real speech.
"""
from __future__ import annotations

import csv
import functools
import hashlib
import itertools
import logging
import math
import os
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import scipy.signal
import soundfile

from audiossl.atomic import write_text_atomic
from audiossl.audio import write_pcm16
from audiossl.corpora import mini_tts
from audiossl.corpora.mini_tts import (MIN_SECONDS, SAMPLE_RATE, CorpusError, Sentence, SynthesisError, Voice,
                                       available_voices, load_sentences, sox_command, synthesize_missing,
                                       synthesize_raw)
from audiossl.corpora.noise import POWER_LAW_EXPONENTS, power_law_noise
from audiossl.corpora.workers import audio_dir_lock
from audiossl.data.kaldi_dir import DataDir, check_complete, read_table
from audiossl.eval.verification import Trial, write_trials

log = logging.getLogger(__name__)

SPEAKERS_PER_VOICE = 6
SID_SLOTS = 4                      # pseudo-speakers 0..3 of a voice are SID speakers, the rest ASV
WORDS = (6, 12)                    # short sentences: 2-4 s of speech
SPEAKER_CENTS = (-300.0, 300.0)    # f0 shift of a pseudo-speaker
SPEAKER_FORMANT = (0.88, 1.12)     # formant (vocal-tract) factor
SPEAKER_TEMPO = (0.85, 1.15)
UTTERANCE_CENTS = 50.0             # per-utterance jitter: +-cents, x(1 +- formant), x(1 +- tempo)
UTTERANCE_FORMANT = 0.02
UTTERANCE_TEMPO = 0.05
SNR_DB = (15.0, 40.0)
LEVEL_DB = (-12.0, 0.0)            # peak level, dBFS
NOISE_KINDS = ("white", "pink")
SPLITS = ("sid_train", "sid_dev", "sid_test", "asv_train", "asv_test")


# ---------------------------------------------------------------------------- speakers

@dataclass(frozen=True)
class Shift:
    """A change of voice: f0 by ``cents``, every formant by ``formant``, duration by 1 / ``tempo``."""

    cents: float
    formant: float
    tempo: float


@dataclass(frozen=True)
class PseudoSpeaker:
    """Pseudo-speaker ``index`` of a voice: its id, voice, role ("sid" or "asv") and fixed shift."""

    speaker: str
    voice: Voice
    index: int
    shift: Shift

    @property
    def role(self) -> str:
        return "sid" if self.index < SID_SLOTS else "asv"


def _uniform(low: float, high: float, stratum: int, place: float, strata: int = SPEAKERS_PER_VOICE) -> float:
    return low + (high - low) * (stratum + place) / strata


def voice_speakers(voice: Voice, seed: int) -> list[PseudoSpeaker]:
    """The six pseudo-speakers of ``voice``: one stratum of each axis each, fixed by the seed."""
    strata = random.Random(f"{seed}/{voice.speaker}/strata")
    cents, formant, tempo = (strata.sample(range(SPEAKERS_PER_VOICE), SPEAKERS_PER_VOICE) for _ in range(3))
    speakers = []
    for k in range(SPEAKERS_PER_VOICE):
        name = f"{voice.speaker}_p{k}"
        place = random.Random(f"{seed}/{name}")
        shift = Shift(round(_uniform(*SPEAKER_CENTS, cents[k], place.random()), 1),
                      round(_uniform(*SPEAKER_FORMANT, formant[k], place.random()), 4),
                      round(_uniform(*SPEAKER_TEMPO, tempo[k], place.random()), 4))
        speakers.append(PseudoSpeaker(name, voice, k, shift))
    return speakers


@dataclass(frozen=True)
class Jitter:
    """What happens to one utterance besides its speaker's shift."""

    shift: Shift
    noise: str          # a power-law noise kind of audiossl.corpora.noise
    snr_db: float
    level_db: float


def utterance_jitter(seed: int, utt: str) -> Jitter:
    """The jitter of an utterance, fixed by seed and id."""
    rng = random.Random(f"{seed}/{utt}/jitter")
    shift = Shift(round(rng.uniform(-UTTERANCE_CENTS, UTTERANCE_CENTS), 1),
                  round(1 + rng.uniform(-UTTERANCE_FORMANT, UTTERANCE_FORMANT), 4),
                  round(1 + rng.uniform(-UTTERANCE_TEMPO, UTTERANCE_TEMPO), 4))
    return Jitter(shift, rng.choice(NOISE_KINDS), round(rng.uniform(*SNR_DB), 1), round(rng.uniform(*LEVEL_DB), 1))


def combined(speaker: Shift, jitter: Shift) -> Shift:
    """The shift of an utterance: cents add, factors multiply."""
    return Shift(round(speaker.cents + jitter.cents, 1), round(speaker.formant * jitter.formant, 4),
                 round(speaker.tempo * jitter.tempo, 4))


# ---------------------------------------------------------------------------- audio

def lpc_log_envelopes(spectra: np.ndarray, order: int = 20) -> np.ndarray:
    """Natural-log spectral envelopes, up to a constant per frame, of the all-pole (LPC) model of each
    frame; spectra (num_bins, num_frames) complex STFT → (num_bins, num_frames)."""
    n_fft = 2 * (spectra.shape[0] - 1)
    autocorrelation = np.fft.irfft(np.abs(spectra) ** 2, n=n_fft, axis=0)[:order + 1]
    autocorrelation[0] = autocorrelation[0] * (1 + 1e-4) + 1e-12      # white-noise correction: stable, never singular
    envelopes = np.empty(spectra.shape)
    for frame in range(spectra.shape[1]):
        r = autocorrelation[:, frame]
        predictor = scipy.linalg.solve_toeplitz(r[:order], r[1:])
        inverse_filter = np.fft.rfft(np.concatenate([[1.0], -predictor]), n=n_fft)
        envelopes[:, frame] = -np.log(np.maximum(np.abs(inverse_filter), 1e-9))
    return envelopes


def warp_formants(samples: np.ndarray, factor: float, n_fft: int = 512, order: int = 20) -> np.ndarray:
    """Scale the spectral envelope along frequency by ``factor``, keeping the harmonics (f0) in place.

    Each short-time spectrum (``n_fft`` samples, hop n_fft / 4) is multiplied by
    ``E(f / factor) / E(f)``, E the envelope of its all-pole model of ``order`` poles (formants
    and spectral tilt, not the harmonics); phases are kept. samples: (num_samples,) float →
    (num_samples,) float64.
    """
    if factor == 1.0:
        return samples.astype(np.float64)
    hop = n_fft // 4
    _, _, spectra = scipy.signal.stft(samples, nperseg=n_fft, noverlap=n_fft - hop)
    envelope = lpc_log_envelopes(spectra, order)
    bins = np.arange(envelope.shape[0], dtype=np.float64)
    warped = np.stack([np.interp(bins / factor, bins, frame) for frame in envelope.T], axis=1)
    gain = np.exp(np.clip(warped - envelope, -np.log(1000.0), np.log(1000.0)))   # at most +-60 dB
    _, out = scipy.signal.istft(spectra * gain, nperseg=n_fft, noverlap=n_fft - hop)
    return np.pad(out, (0, max(0, len(samples) - len(out))))[:len(samples)]


def _rng(seed: int, utt: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{utt}/noise".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def degrade(samples: np.ndarray, jitter: Jitter, rng: np.random.Generator) -> np.ndarray:
    """Add the jitter's noise at its SNR (against the mean power of the speech) and apply its level,
    the peak taken as 0 dB; samples (num_samples,) → (num_samples,) float64 within [-1, 1]."""
    speech_power = float(np.mean(np.square(samples)))
    noise = power_law_noise(rng, len(samples), POWER_LAW_EXPONENTS[jitter.noise])
    noise *= math.sqrt(speech_power / max(float(np.mean(np.square(noise))), 1e-20) / 10 ** (jitter.snr_db / 10))
    mixed = samples + noise
    return mixed * (10 ** (jitter.level_db / 20) / max(float(np.abs(mixed).max()), 1e-9))


def synthesize_pseudo_utterance(speaker: PseudoSpeaker, text: str, out: Path, seed: int, utt: str) -> None:
    """Synthesize ``text`` as ``speaker`` with the utterance's jitter and write ``out`` atomically.

    Raises :class:`SynthesisError` when the engine or sox fails or leaves too little audio.
    """
    jitter = utterance_jitter(seed, utt)
    shift = combined(speaker.shift, jitter.shift)
    with tempfile.TemporaryDirectory(prefix="speakers_") as tmp:
        raw, shifted = Path(tmp) / "raw.wav", Path(tmp) / "shifted.wav"
        command = synthesize_raw(speaker.voice, text, raw)
        if not raw.is_file() or raw.stat().st_size <= 44:
            raise SynthesisError(f"{command}: no audio written")
        mini_tts.run_tool(sox_command(raw, shifted, shift.cents, shift.tempo))
        samples, _ = soundfile.read(str(shifted), dtype="float64")
        if len(samples) < MIN_SECONDS * SAMPLE_RATE:
            raise SynthesisError(f"{command}: only {len(samples) / SAMPLE_RATE:.2f} s of audio after trimming")
    # sox's pitch shift scaled the formants by 2^(cents/1200) too: warp them to the speaker's factor
    samples = warp_formants(samples, shift.formant / 2 ** (shift.cents / 1200))
    samples = degrade(samples, jitter, _rng(seed, utt))
    write_pcm16(out, np.round(samples * 32767).astype("<i2"), SAMPLE_RATE)


# ---------------------------------------------------------------------------- plan

@dataclass(frozen=True)
class SpeakersSize:
    """How big the data is: voices, pseudo-speakers of each, utterances per speaker and split, trials."""

    voices: tuple[str, ...]
    sid_per_voice: int
    asv_per_voice: int
    train_per_speaker: int
    dev_per_speaker: int
    test_per_speaker: int
    asv_per_speaker: int
    nontargets_per_target: float = 4.0
    same_voice_share: float = 0.25     # of the nontarget trials: both speakers from one voice

    @classmethod
    def full(cls) -> "SpeakersSize":
        """88 SID speakers (22 voices x 4) with 20 / 3 / 5 utterances, 44 ASV speakers with 12 each."""
        voices = tuple(v.speaker for v in mini_tts.VOICES if v.lang == "en")
        return cls(voices, sid_per_voice=4, asv_per_voice=2, train_per_speaker=20, dev_per_speaker=3,
                   test_per_speaker=5, asv_per_speaker=12)

    @classmethod
    def tiny(cls) -> "SpeakersSize":
        """Four fast voices: 8 SID and 4 ASV speakers, a few seconds to synthesize."""
        return cls(("flite_slt", "flite_kal", "mbrola_us1", "espeak_m3"), sid_per_voice=2, asv_per_voice=1,
                   train_per_speaker=3, dev_per_speaker=1, test_per_speaker=1, asv_per_speaker=3)

    def validate(self) -> None:
        """Raise ValueError for unknown voices or more pseudo-speakers than a voice has."""
        for name in self.voices:
            if name not in mini_tts.VOICES_BY_SPEAKER:
                raise ValueError(f"unknown voice '{name}' (known: {' '.join(mini_tts.VOICES_BY_SPEAKER)})")
        if not 0 < self.sid_per_voice <= SID_SLOTS or not 0 < self.asv_per_voice <= SPEAKERS_PER_VOICE - SID_SLOTS:
            raise ValueError(f"a voice has {SID_SLOTS} SID and {SPEAKERS_PER_VOICE - SID_SLOTS} ASV pseudo-speakers")


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: a pseudo-speaker reading a sentence."""

    utt: str
    speaker: PseudoSpeaker
    sentence: Sentence


def plan_speakers(size: SpeakersSize, voices: Sequence[Voice], sentences: Sequence[Sentence],
                  seed: int) -> dict[str, list[Utterance]]:
    """``{split: utterances}`` for sid_train, sid_dev, sid_test and asv_test; every utterance has its own sentence.
    Sentences are drawn for every voice of ``size``, then the voices not in ``voices`` (not installed) are left
    out: a speaker's utterances are the same whichever other voices are installed."""
    size.validate()
    available = {v.speaker for v in voices}
    if len(available & set(size.voices)) < 2:
        raise CorpusError(f"need at least two of the voices {' '.join(size.voices)}; available: "
                          f"{' '.join(sorted(available)) or 'none'}")
    speakers = [voice_speakers(mini_tts.VOICES_BY_SPEAKER[name], seed) for name in size.voices]
    sid = [s for group in speakers for s in group[:size.sid_per_voice]]
    asv = [s for group in speakers for s in group[SID_SLOTS:SID_SLOTS + size.asv_per_voice]]
    blocks = [("sid_train", sid, size.train_per_speaker), ("sid_dev", sid, size.dev_per_speaker),
              ("sid_test", sid, size.test_per_speaker), ("asv_test", asv, size.asv_per_speaker)]
    short = [s for s in sentences if WORDS[0] <= len(s.transcript.split()) <= WORDS[1]]
    needed = sum(len(group) * n for _, group, n in blocks)
    if needed > len(short):
        raise CorpusError(f"need {needed} sentences of {WORDS[0]}-{WORDS[1]} words, only {len(short)} are available")
    pool = iter(random.Random(seed).sample(short, needed))
    drawn = {split: [Utterance(f"{spk.speaker}-{s.id}", spk, s) for spk in group for s in itertools.islice(pool, n)]
             for split, group, n in blocks}
    return {split: [u for u in utts if u.speaker.voice.speaker in available] for split, utts in drawn.items()}


def make_trials(utts: Sequence[Utterance], seed: int, nontargets_per_target: float = 4.0,
                same_voice_share: float = 0.25) -> list[Trial]:
    """Every same-speaker pair as a target trial and ``nontargets_per_target`` times as many
    different-speaker pairs, a ``same_voice_share`` of them (or all there are) between speakers of
    one voice; sorted, enrollment id before test id."""
    rng = random.Random(f"{seed}/trials")
    ordered = sorted(utts, key=lambda u: u.utt)
    targets, same_voice, other_voice = [], [], []
    for a, b in itertools.combinations(ordered, 2):
        if a.speaker.speaker == b.speaker.speaker:
            targets.append((a.utt, b.utt, True))
        elif a.speaker.voice == b.speaker.voice:
            same_voice.append((a.utt, b.utt, False))
        else:
            other_voice.append((a.utt, b.utt, False))
    num_nontargets = min(round(nontargets_per_target * len(targets)), len(same_voice) + len(other_voice))
    num_same = min(round(same_voice_share * num_nontargets), len(same_voice))
    num_other = min(num_nontargets - num_same, len(other_voice))
    return sorted(targets + rng.sample(same_voice, num_same) + rng.sample(other_voice, num_other))


# ---------------------------------------------------------------------------- corpus

def wav_path(audio_dir: Path, utt: Utterance) -> Path:
    """Where an utterance's audio lives: ``audio_dir/wav/<speaker>/<utt>.wav``."""
    return audio_dir / "wav" / utt.speaker.speaker / f"{utt.utt}.wav"


def synthesize_all(utts: Sequence[Utterance], audio_dir: Path, seed: int, num_workers: int = 2,
                   progress: bool = False) -> dict[str, str]:
    """Synthesize every utterance whose wav is missing (:func:`~audiossl.corpora.mini_tts.synthesize_missing`)."""
    jobs = {u.utt: (wav_path(audio_dir, u), functools.partial(synthesize_pseudo_utterance, u.speaker, u.sentence.spoken,
                                                                wav_path(audio_dir, u), seed, u.utt)) for u in utts}
    return synthesize_missing(jobs, num_workers, progress)


def write_split(path: Path, utts: Sequence[Utterance], audio_dir: Path, durations: dict[str, float]) -> None:
    """Write a Kaldi data dir (wav.scp, text, utt2spk, spk2utt, utt2dur) and log its size."""
    DataDir({
        "wav.scp": {u.utt: str(wav_path(audio_dir, u)) for u in utts},
        "text": {u.utt: u.sentence.transcript for u in utts},
        "utt2spk": {u.utt: u.speaker.speaker for u in utts},
        "utt2dur": {u.utt: f"{durations[u.utt]:.4f}" for u in utts},
    }).write(path)
    log.info("%s: %d utterances, %d speakers, %.3f h", path.name, len(utts),
             len({u.speaker.speaker for u in utts}), sum(durations[u.utt] for u in utts) / 3600)


def _write_tsv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    text = "".join("\t".join(map(str, row)) + "\n" for row in [header, *rows])
    write_text_atomic(path, text)


def write_plan(local_dir: Path, plan: dict[str, list[Utterance]], seed: int) -> None:
    """``speakers.tsv`` (each pseudo-speaker's shift) and ``utterances.tsv`` (each utterance's) in ``local_dir``."""
    local_dir.mkdir(parents=True, exist_ok=True)
    utts = sorted({u.utt: u for split in plan.values() for u in split}.values(), key=lambda u: u.utt)
    speakers = sorted({u.speaker.speaker: u.speaker for u in utts}.values(), key=lambda s: s.speaker)
    _write_tsv(local_dir / "speakers.tsv", ("speaker", "voice", "role", "cents", "formant", "tempo"),
               [(s.speaker, s.voice.speaker, s.role, s.shift.cents, s.shift.formant, s.shift.tempo) for s in speakers])
    rows = []
    for u in utts:
        jitter = utterance_jitter(seed, u.utt)
        shift = combined(u.speaker.shift, jitter.shift)
        rows.append((u.utt, u.speaker.speaker, shift.cents, shift.formant, shift.tempo, jitter.noise,
                     jitter.snr_db, jitter.level_db))
    _write_tsv(local_dir / "utterances.tsv",
               ("utt", "speaker", "cents", "formant", "tempo", "noise", "snr_db", "level_db"), rows)


def read_tsv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a tab-separated file with a header line (``speakers.tsv``, ``utterances.tsv``)."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def prepare_speakers(audio_dir: str | os.PathLike, data_dir: str | os.PathLike, size: str = "full",
                     seed: int = 0, num_workers: int = 2, progress: bool = False) -> dict[str, Path]:
    """Synthesize the SID and ASV audio into ``audio_dir`` and write the Kaldi data dirs under ``data_dir``.

    Args:
        size: "full" (88 SID speakers with 20 / 3 / 5 utterances, 44 ASV speakers with 12 and 14,520
            trials; 2,992 wavs of 2.35 s on average, 2.0 h, 223 MB; 15.6 min on a 2-core machine
            that other jobs kept busy) or "tiny" (a few seconds; for tests).
        seed: fixes sentences, speakers' shifts, jitter and trials; the same seed gives identical dirs.
        num_workers: parallel synthesis threads (each runs engine and sox subprocesses).

    Returns:
        ``{split: data dir}`` for sid_train, sid_dev, sid_test, asv_train and asv_test.

    Raises:
        SynthesisError: more than 5 % of the utterances failed to synthesize.
        CorpusError: ``audio_dir`` holds audio of another seed, or too few voices or sentences are available.
    """
    sizes = {"full": SpeakersSize.full, "tiny": SpeakersSize.tiny}
    if size not in sizes:
        raise ValueError(f"size must be one of {' '.join(sizes)}, got '{size}'")
    dims = sizes[size]()
    audio_dir, data_dir = Path(audio_dir).absolute(), Path(data_dir)
    with audio_dir_lock(audio_dir):
        mini_tts.check_seed(audio_dir / "wav" / "seed", seed)
        sentences = load_sentences(audio_dir, "en")
        mini_tts.check_sentences(audio_dir, "en", sentences)
        plan = plan_speakers(dims, available_voices(), sentences, seed)
        failures = synthesize_all([u for utts in plan.values() for u in utts], audio_dir, seed, num_workers, progress)
        plan = {split: [u for u in utts if u.utt not in failures] for split, utts in plan.items()}
        plan["asv_train"] = plan["sid_train"]
        durations = {u.utt: soundfile.info(str(wav_path(audio_dir, u))).frames / SAMPLE_RATE
                     for utts in plan.values() for u in utts}
        written = {}
        for split in SPLITS:
            write_split(data_dir / split, plan[split], audio_dir, durations)
            written[split] = data_dir / split
        classes = sorted({u.speaker.speaker for u in plan["sid_train"]})
        for split in ("sid_train", "sid_dev", "sid_test"):
            write_text_atomic(data_dir / split / "labels", "".join(f"{spk} {i}\n" for i, spk in enumerate(classes)))
        trials = make_trials(plan["asv_test"], seed, dims.nontargets_per_target, dims.same_voice_share)
        write_trials(data_dir / "asv_test" / "trials", trials)
        num_targets = sum(t[2] for t in trials)
        log.info("asv_test/trials: %d trials, %d target, %d nontarget", len(trials), num_targets,
                 len(trials) - num_targets)
        write_plan(data_dir / "local", plan, seed)
        return written


# ---------------------------------------------------------------------------- MFCC statistics

def mfcc_statistics(data_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{utt: (26,)}``: the mean and standard deviation over frames of each utterance's 13 Kaldi MFCCs
    (``torchaudio.compliance.kaldi.mfcc`` defaults, no dither)."""
    import torch

    from audiossl.audio import load_entry
    from audiossl.features.kaldi import FeatureConfig, FeatureExtractor

    extractor = FeatureExtractor(FeatureConfig.from_file("mfcc", None))
    stats = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)     # ops this small run many times slower on a busy machine with more threads
    check_complete(data_dir)
    try:
        for utt, entry in read_table(Path(data_dir) / "wav.scp").items():
            feats = extractor(load_entry(entry)[0])
            stats[utt] = np.concatenate([feats.mean(axis=0), feats.std(axis=0)])
    finally:
        torch.set_num_threads(threads)
    return stats


def mfcc_statistics_baseline(data_dir: str | os.PathLike) -> dict[str, float]:
    """How well MFCC statistics (:func:`mfcc_statistics`) identify and verify the speakers of ``data_dir``.

    SID: logistic regression on standardized statistics, trained on sid_train; accuracy on
    sid_dev and sid_test, over pseudo-speakers (``sid_test_accuracy``) and, with the same
    audio, over the voices they come from (``sid_test_voice_accuracy``). ASV: cosine scores of
    the statistics less the mean of asv_train's, on asv_test/trials: EER and minimum DCF at
    p_target 0.01 and 0.05 (c_miss = c_fa = 1), on all trials and on those whose nontargets are
    of one voice (``same_voice_*``). Rates are fractions, not percentages.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from audiossl.eval.verification import check_trials, read_trials, score_trials, verification_metrics

    data_dir = Path(data_dir)
    voice_of = {row["speaker"]: row["voice"] for row in read_tsv(data_dir / "local" / "speakers.tsv")}
    stats = {split: mfcc_statistics(data_dir / split) for split in ("sid_train", "sid_dev", "sid_test", "asv_test")}
    utt2spk = {split: read_table(data_dir / split / "utt2spk") for split in stats}   # dirs checked by mfcc_statistics

    def xy(split: str, label) -> tuple[np.ndarray, list[str]]:
        utts = sorted(stats[split])
        return np.stack([stats[split][u] for u in utts]), [label(utt2spk[split][u]) for u in utts]

    results: dict[str, float] = {}
    for name, label in (("", lambda spk: spk), ("_voice", lambda spk: voice_of[spk])):
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        classifier.fit(*xy("sid_train", label))
        for split in ("sid_dev", "sid_test"):
            features, labels = xy(split, label)
            results[f"{split}{name}_accuracy"] = float(np.mean(classifier.predict(features) == np.array(labels)))

    mean = np.mean(np.stack(list(stats["sid_train"].values())), axis=0)   # asv_train holds sid_train's utterances
    embeddings = {utt: vector - mean for utt, vector in stats["asv_test"].items()}
    trials_path = data_dir / "asv_test" / "trials"
    trials = read_trials(trials_path)
    check_trials(trials, embeddings, trials_path)
    scores, is_target, metrics = score_trials(trials, embeddings)
    results.update(metrics)
    asv_voice = {utt: voice_of[spk] for utt, spk in utt2spk["asv_test"].items()}
    hard = np.array([t[2] or asv_voice[t[0]] == asv_voice[t[1]] for t in trials])
    results.update({f"same_voice_{k}": v for k, v in verification_metrics(scores[hard], is_target[hard]).items()})
    return results
