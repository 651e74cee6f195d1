"""Keyword spotting (SUPERB KS): a Speech Commands-style data set spoken by the mini_tts voices.

Classes (``LABELS``): the ten command words of Speech Commands v1 (``COMMANDS``), ``_unknown_``
(one of ``UNKNOWN_WORDS``, the 25 other words of Speech Commands v2) and ``_silence_``
(background noise only). Every available English voice of :mod:`audiossl.corpora.mini_tts`
speaks every command word several times; each repetition has its own pitch and tempo jitter
(``mini_tts.jitter``), its own place in a 1 s clip and its own additive noise: a kind of
``NOISE_KINDS`` (made by :mod:`audiossl.corpora.noise`; no babble, whose words could be
keywords) at a seeded SNR of 5–30 dB. ``_silence_`` clips are 1 s of those noise kinds in turn,
at the level the noise has under speech. A clip whose word comes out shorter than 0.1 s is
left out with a warning (mbrola_us3 says "on" and "off" as blips of under 0.1 s).

Split rule: utterances are held out, not voices; every voice is in every split. Repetition
``r`` of a command word goes to train for ``r < train``, then dev, then test (the counts of
``KeywordsSize.command_reps``); a voice's unknown words (a seeded draw without repeats, so a
voice says a test unknown word in no other split) and the silence clips are cut the same way.
TTS is deterministic: a test repetition is the same synthesized word as the training
repetitions of its voice under other jitter, placement and noise, so this KS measures
robustness to those, not to unseen speakers.

Layout::

    audio_dir/raw/<voice>/<word>.wav     the engine's own audio of a word, synthesized once
    audio_dir/wav/<voice>/<utt>.wav      1 s clips, 16 kHz mono 16-bit; utt = <voice>-<word>-<index>
    audio_dir/wav/silence/<utt>.wav      utt = silence-<noise kind>-<index>
    audio_dir/wav/seed                   the seed the clips were made with
    audio_dir/.lock                      held by a run: a second run on the dir waits for it, then reuses
    data_dir/{train,dev,test}/           wav.scp, utt2spk (the voice; "silence"), spk2utt, utt2dur,
                                         utt2label (the class), labels (the 12 classes)

Everything is deterministic from the seed: jitter as in mini_tts, noise, SNR and placement from
``noise.clip_rng(seed, utt)``, unknown words from ``random.Random``. Existing clips are reused;
each is written under a temporary name and renamed. The helpers for spoken, noisy audio
(``spoken``, ``background``, ``with_noise``) serve
:mod:`audiossl.corpora.intents` too.
"""
from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from audiossl.atomic import atomic_path, write_text_atomic
from audiossl.audio import SAMPLE_RATE, reusable_audio, write_pcm16
from audiossl.corpora.mini_tts import (VOICES_BY_SPEAKER, CorpusError, SynthesisError, Voice, available_voices,
                                       check_failures, check_seed, jitter, render_all, run_tool, synthesize_raw)
from audiossl.corpora.noise import (MAX_PEAK, NoiseSources, ambience_paths, clip_rng, load_recording, looped_crop,
                                    make_clip)
from audiossl.corpora.workers import audio_dir_lock
from audiossl.data.kaldi_dir import DataDir

log = logging.getLogger(__name__)

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
                 "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "backward", "forward", "follow", "learn", "visual")
UNKNOWN, SILENCE = "_unknown_", "_silence_"
LABELS = (*COMMANDS, UNKNOWN, SILENCE)
SPLITS = ("train", "dev", "test")
CLIP_SAMPLES = SAMPLE_RATE                     # 1 s, as in Speech Commands

NOISE_KINDS = ("white", "pink", "brown", "blue", "hum", "ambience")   # noise.KINDS that need no speech
SNR_RANGE_DB = (5.0, 30.0)
SPEECH_LEVEL_DBFS = -18.0      # about the median RMS of the trimmed words; silence sits SNR_RANGE_DB below it
ACTIVE_RANGE_DB = 40.0         # speech: the 10 ms frames within this much of the loudest one
MIN_SPEECH_SECONDS = 0.1


# ---------------------------------------------------------------------------- spoken, noisy audio

def jitter_command(raw: Path, out: Path, cents: float, tempo: float) -> list[str]:
    """sox: 16 kHz mono 16-bit, pitch and tempo jitter, peak at -3 dBFS.

    Unlike ``mini_tts.sox_command`` it trims no silence: sox's rule (50 ms above -46 dBFS) cuts
    the final plosive of a short word ("up" becomes "uh"); :func:`active_region` trims instead.
    """
    return ["sox", "-R", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-t", "wav", str(out),
            "pitch", str(cents), "tempo", "-s", str(tempo), "rate", str(SAMPLE_RATE), "norm", "-3"]


def active_region(samples: np.ndarray) -> slice:
    """From the first to the last 10 ms frame within 40 dB of the loudest frame, one frame more each side."""
    hop = SAMPLE_RATE // 100
    frames = np.lib.stride_tricks.sliding_window_view(samples, hop)[::hop]
    if not len(frames):
        return slice(0, 0)
    levels = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    active = np.flatnonzero(levels >= levels.max() * 10 ** (-ACTIVE_RANGE_DB / 20))
    return slice(max(0, (active[0] - 1) * hop), min(len(samples), (active[-1] + 2) * hop))


def write_raw(voice: Voice, text: str, path: Path) -> None:
    """Atomically write the engine's own audio of ``text`` to ``path``; raises :class:`SynthesisError`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="raw_") as tmp, atomic_path(path) as part:
        raw = Path(tmp) / "raw.wav"                         # pico2wave wants a .wav name
        command = synthesize_raw(voice, text, raw)
        if not raw.is_file() or raw.stat().st_size <= 44:
            raise SynthesisError(f"{command}: no audio written")
        shutil.copyfile(raw, part)


def spoken(voice: Voice, text: str, seed: int, utt: str, raw: Path | None = None) -> np.ndarray:
    """``voice`` reading ``text``, jittered as mini_tts does for ``(seed, utt)`` and trimmed to its
    active region: 16 kHz float32 peaking at -3 dBFS, shape (num_samples,).

    Args:
        raw: the engine's audio of ``text`` (:func:`write_raw`); None: synthesize it now.

    Raises:
        SynthesisError: the engine or sox failed, or less than 0.1 s of speech came out.
    """
    with tempfile.TemporaryDirectory(prefix="spoken_") as tmp:
        if raw is None:
            raw = Path(tmp) / "raw.wav"
            write_raw(voice, text, raw)
        jittered = Path(tmp) / "jittered.wav"
        run_tool(jitter_command(raw, jittered, *jitter(seed, utt)))
        samples, _ = soundfile.read(str(jittered), dtype="float32")
    samples = samples[active_region(samples)]
    if len(samples) < MIN_SPEECH_SECONDS * SAMPLE_RATE:
        raise SynthesisError(f"{voice.speaker} reading '{text}': only {len(samples) / SAMPLE_RATE:.2f} s of speech")
    return samples


def load_noise_sources() -> NoiseSources:
    """What ``noise.make_clip`` needs for ``NOISE_KINDS``: the ambience recordings (none without
    sonic-pi-samples; logged) and no speech, which these kinds do not use."""
    return NoiseSources([], (np.zeros(1), np.zeros(1)), [load_recording(p) for p in ambience_paths()])


def noise_kinds() -> tuple[str, ...]:
    """``NOISE_KINDS``, less ambience when no ambience recording is installed."""
    return tuple(k for k in NOISE_KINDS if k != "ambience" or ambience_paths())


def background(rng: np.random.Generator, kind: str, num_samples: int, sources: NoiseSources) -> np.ndarray:
    """``num_samples`` of a new 2–8 s noise clip of ``kind`` (ambience: of a random recording), from a
    random point, played back and forth if shorter; shape (num_samples,)."""
    index = int(rng.integers(max(1, len(sources.recordings))))
    return looped_crop(rng, make_clip(kind, index, rng, sources), num_samples)


def rms(samples: np.ndarray) -> float:
    """Root mean square of ``samples`` (any shape)."""
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def with_noise(clip: np.ndarray, speech_rms: float, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clip + noise`` with the noise ``snr_db`` below ``speech_rms``, scaled down as a whole if its peak
    would pass -1 dBFS; clip and noise of shape (num_samples,)."""
    mixed = clip + noise * (speech_rms / rms(noise) * 10 ** (-snr_db / 20))
    return mixed * min(1.0, MAX_PEAK / np.abs(mixed).max())


def write_wav(path: Path, samples: np.ndarray) -> None:
    """Write 16 kHz mono 16-bit ``samples`` (in [-1, 1]; beyond it clipped, never wrapped) atomically."""
    write_pcm16(path, np.round(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2"), SAMPLE_RATE)


def pick_voices(names: tuple[str, ...], available: list[Voice]) -> list[Voice]:
    """The voices of ``names`` that are available, in that order."""
    unknown = [n for n in names if n not in VOICES_BY_SPEAKER]
    if unknown:
        raise ValueError(f"unknown voice '{unknown[0]}' (known: {' '.join(VOICES_BY_SPEAKER)})")
    found = {v.speaker for v in available}
    return [VOICES_BY_SPEAKER[n] for n in names if n in found]


def split_of(index: int, counts: tuple[int, int, int]) -> str:
    """The split of item ``index`` when the first ``counts[0]`` go to train, the next to dev, the rest to test."""
    return SPLITS[0] if index < counts[0] else SPLITS[1] if index < counts[0] + counts[1] else SPLITS[2]


# ---------------------------------------------------------------------------- the data set

@dataclass(frozen=True)
class KeywordsSize:
    """How big the set is; each triple counts train, dev and test."""

    voices: tuple[str, ...]
    command_reps: tuple[int, int, int]         # repetitions of each command word by each voice
    unknown_per_voice: tuple[int, int, int]    # unknown-word utterances of each voice
    silence: tuple[int, int, int]              # silence clips

    @classmethod
    def full(cls) -> "KeywordsSize":
        """Every English voice (22): 12 repetitions of each command word (8 train, 2 dev, 2 test),
        24 unknown words per voice and as many silence clips as a command word has utterances."""
        voices = tuple(v.speaker for v in VOICES_BY_SPEAKER.values() if v.lang == "en")
        reps = (8, 2, 2)
        return cls(voices, reps, (16, 4, 4), tuple(len(voices) * n for n in reps))

    @classmethod
    def tiny(cls) -> "KeywordsSize":
        """Three fast voices, one utterance of each class and voice per split: a few seconds to make."""
        return cls(("flite_slt", "mbrola_us1", "espeak_m3"), (1, 1, 1), (1, 1, 1), (6, 6, 6))


@dataclass(frozen=True)
class KeywordUtterance:
    """One planned clip: a voice saying ``word``, or (``voice`` None) noise of ``noise_kind``."""

    utt: str
    split: str
    label: str
    voice: Voice | None = None
    word: str | None = None
    noise_kind: str | None = None


def plan_keywords(size: KeywordsSize, voices: list[Voice], kinds: tuple[str, ...],
                  seed: int) -> list[KeywordUtterance]:
    """Every clip of the set: commands and unknown words of each voice in ``voices`` (those of
    ``size`` that are available), silence clips cycling through ``kinds``."""
    voices = pick_voices(size.voices, voices)
    if not voices:
        raise CorpusError(f"none of the voices {' '.join(size.voices)} is available")
    plan = []
    for voice in voices:
        for word in COMMANDS:
            plan += [KeywordUtterance(f"{voice.speaker}-{word}-{r:02d}", split_of(r, size.command_reps), word,
                                      voice, word) for r in range(sum(size.command_reps))]
        rng = random.Random(f"{seed}/{voice.speaker}/unknown")
        count = sum(size.unknown_per_voice)
        rounds = -(-count // len(UNKNOWN_WORDS))
        words = [w for _ in range(rounds) for w in rng.sample(UNKNOWN_WORDS, len(UNKNOWN_WORDS))]
        plan += [KeywordUtterance(f"{voice.speaker}-{word}-{i:02d}", split_of(i, size.unknown_per_voice), UNKNOWN,
                                  voice, word) for i, word in enumerate(words[:count])]
    plan += [KeywordUtterance(f"silence-{kinds[i % len(kinds)]}-{i:04d}", split_of(i, size.silence), SILENCE,
                              noise_kind=kinds[i % len(kinds)]) for i in range(sum(size.silence))]
    return plan


def raw_path(audio_dir: Path, voice: Voice, word: str) -> Path:
    """Where the engine's audio of ``word`` by ``voice`` is kept."""
    return audio_dir / "raw" / voice.speaker / f"{word}.wav"


def clip_path(audio_dir: Path, u: KeywordUtterance) -> Path:
    """Where a clip lives: ``audio_dir/wav/<voice or silence>/<utt>.wav``."""
    return audio_dir / "wav" / (u.voice.speaker if u.voice else "silence") / f"{u.utt}.wav"


def keyword_clip(u: KeywordUtterance, audio_dir: Path, seed: int, sources: NoiseSources,
                 kinds: tuple[str, ...]) -> np.ndarray:
    """The 1 s clip of ``u``, shape (16000,): the word (centre 1 s if longer) at a random place over
    noise of a random kind at 5–30 dB SNR, or, for silence, noise 5–30 dB below ``SPEECH_LEVEL_DBFS``."""
    rng = clip_rng(seed, u.utt)
    if u.voice is None:
        noise = background(rng, u.noise_kind, CLIP_SAMPLES, sources)
        level = 10 ** ((SPEECH_LEVEL_DBFS - rng.uniform(*SNR_RANGE_DB)) / 20)
        return noise * (level / rms(noise))
    speech = spoken(u.voice, u.word, seed, u.utt, raw_path(audio_dir, u.voice, u.word))
    excess = max(0, len(speech) - CLIP_SAMPLES)
    speech = speech[excess // 2:excess // 2 + CLIP_SAMPLES]
    clip = np.zeros(CLIP_SAMPLES)
    offset = int(rng.integers(CLIP_SAMPLES - len(speech), endpoint=True))
    clip[offset:offset + len(speech)] = speech
    kind = kinds[int(rng.integers(len(kinds)))]
    return with_noise(clip, rms(speech), background(rng, kind, CLIP_SAMPLES, sources), rng.uniform(*SNR_RANGE_DB))


def write_keyword_split(path: Path, utts: list[KeywordUtterance], audio_dir: Path) -> None:
    """Write a KS data dir (wav.scp, utt2spk, spk2utt, utt2dur, utt2label, labels) and log its size."""
    durations = {u.utt: soundfile.info(str(clip_path(audio_dir, u))).frames / SAMPLE_RATE for u in utts}
    DataDir({
        "wav.scp": {u.utt: str(clip_path(audio_dir, u)) for u in utts},
        "utt2spk": {u.utt: u.voice.speaker if u.voice else "silence" for u in utts},
        "utt2dur": {u.utt: f"{durations[u.utt]:.4f}" for u in utts},
        "utt2label": {u.utt: u.label for u in utts},
    }).write(path)
    write_text_atomic(path / "labels", "".join(f"{label}\n" for label in LABELS))
    counts = {label: sum(u.label == label for u in utts) for label in LABELS}
    log.info("%s: %d clips (%s)", path.name, len(utts), " ".join(f"{k} {n}" for k, n in counts.items()))


def prepare_keywords(audio_dir: str | os.PathLike, data_dir: str | os.PathLike, size: str = "full", seed: int = 0,
                     num_workers: int = 2, progress: bool = False) -> dict[str, Path]:
    """Make the KS clips in ``audio_dir`` and write ``data_dir/{train,dev,test}``.

    Args:
        size: "full" (22 voices, 3,432 clips planned, 0.95 h; about 90 s of CPU time) or "tiny"
            (3 voices, 117 clips; for tests).
        seed: fixes unknown words, jitter, placement and noise; the same seed gives identical files.
        num_workers: parallel synthesis threads (each runs engine and sox subprocesses).

    Returns:
        ``{split: data dir}``.

    Raises:
        SynthesisError: more than 5 % of the clips failed to synthesize.
        CorpusError: ``audio_dir`` holds clips of another seed, or no voice of the size is available.
    """
    sizes = {"full": KeywordsSize.full, "tiny": KeywordsSize.tiny}
    if size not in sizes:
        raise ValueError(f"size must be one of {' '.join(sizes)}, got '{size}'")
    audio_dir, data_dir = Path(audio_dir).absolute(), Path(data_dir)
    with audio_dir_lock(audio_dir):
        check_seed(audio_dir / "wav" / "seed", seed)
        kinds = noise_kinds()
        plan = plan_keywords(sizes[size](), available_voices(), kinds, seed)
        todo = [u for u in plan if not reusable_audio(clip_path(audio_dir, u))]
        log.info("%d clips planned, %d already made, %d to make", len(plan), len(plan) - len(todo), len(todo))
        failures: dict[str, str] = {}
        if todo:
            words = {(u.voice, u.word) for u in todo
                     if u.voice and not reusable_audio(raw_path(audio_dir, u.voice, u.word))}
            raw_failures = render_all({f"{v.speaker}-{w}": (lambda v=v, w=w: write_raw(v, w, raw_path(audio_dir, v, w)))
                                       for v, w in sorted(words, key=lambda vw: (vw[0].speaker, vw[1]))},
                                      num_workers, progress, "synthesizing words")
            failures = {u.utt: raw_failures[f"{u.voice.speaker}-{u.word}"] for u in todo
                        if u.voice and f"{u.voice.speaker}-{u.word}" in raw_failures}
            sources = load_noise_sources()

            def job(u: KeywordUtterance) -> Callable[[], None]:
                return lambda: write_wav(clip_path(audio_dir, u), keyword_clip(u, audio_dir, seed, sources, kinds))

            failures |= render_all({u.utt: job(u) for u in todo if u.utt not in failures}, num_workers, progress,
                                   "making clips")
            check_failures(failures, len(plan))
        written = {}
        for split in SPLITS:
            write_keyword_split(data_dir / split, [u for u in plan if u.split == split and u.utt not in failures],
                                audio_dir)
            written[split] = data_dir / split
        return written
