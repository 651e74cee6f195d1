"""Intent classification (SUPERB IC): a Fluent Speech Commands-style data set spoken by the mini_tts voices.

An intent fills three slots, ``action object location``; the 31 intents (``INTENTS``) are those
of Fluent Speech Commands, with ``change language`` written ``change_language`` (one token
per slot)::

    activate   lights      none kitchen bedroom washroom    deactivate lights   none kitchen bedroom washroom
    increase   heat        none kitchen bedroom washroom    decrease   heat     none kitchen bedroom washroom
    activate   lamp music  none                             deactivate lamp music  none
    increase   volume      none                             decrease   volume   none
    bring      newspaper juice socks shoes  none            change_language  none Chinese Korean English German  none

Each intent has 4 or 5 phrasings (``PHRASINGS``, 149 in all), e.g. "turn on the lights in the
kitchen", "switch on the kitchen lights", "kitchen lights on". Each voice reads each phrasing
once (``tiny``: one seeded phrasing of each intent), with mini_tts's pitch and tempo jitter,
0.1–0.4 s of lead and tail, and additive noise of a kind of ``keywords.NOISE_KINDS`` at a
seeded SNR of 5–30 dB.

Split rule: voices are held out, as Fluent Speech Commands holds out speakers; every phrasing
is in every split. TTS is deterministic, so a voice reading a phrasing in both training and
test would give test audio that differs from a training utterance only by jitter and noise;
with held-out voices the test asks for what a model must do with a new speaker. Test voices
are mini_tts's unseen voices (flite_rms, mbrola_us3, rhvoice_bdl), dev voices three more of
three engines, train the other 16.

Layout::

    audio_dir/wav/<voice>/<utt>.wav    16 kHz mono 16-bit; utt = <voice>-<action>_<object>_<location>-<phrasing>
    audio_dir/wav/seed                 the seed the audio was made with
    audio_dir/.lock                    held by a run: a second run on the dir waits for it, then reuses
    data_dir/{train,dev,test}/         wav.scp, text (the words, upper case), utt2spk (the voice), spk2utt,
                                       utt2dur, utt2intent (action object location), labels_action,
                                       labels_object, labels_location (each slot's values)

Deterministic from the seed; existing wavs are reused, each written under a temporary name
and renamed (the helpers of :mod:`audiossl.corpora.keywords`).
"""
from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from audiossl.atomic import write_text_atomic
from audiossl.audio import SAMPLE_RATE, reusable_audio
from audiossl.corpora.keywords import (SNR_RANGE_DB, SPLITS, background, load_noise_sources, noise_kinds,
                                       pick_voices, rms, spoken, with_noise, write_wav)
from audiossl.corpora.mini_tts import (LANGUAGES, VOICES_BY_SPEAKER, CorpusError, MiniTtsSize, Voice, available_voices,
                                       check_failures, check_seed, render_all)
from audiossl.corpora.noise import NoiseSources, clip_rng
from audiossl.corpora.workers import audio_dir_lock
from audiossl.data.kaldi_dir import DataDir

log = logging.getLogger(__name__)

PAD_SECONDS = (0.1, 0.4)
ROOMS = ("kitchen", "bedroom", "washroom")
LANGUAGE_NAMES = ("Chinese", "Korean", "English", "German")


@dataclass(frozen=True)
class Intent:
    """What a command asks for: one value per slot."""

    action: str
    object: str
    location: str = "none"

    @property
    def label(self) -> str:
        """``action object location``, as in utt2intent."""
        return f"{self.action} {self.object} {self.location}"

    @property
    def name(self) -> str:
        """``action_object_location``, as in utterance ids."""
        return f"{self.action}_{self.object}_{self.location}"


# Templates: {on} is "on" or "off", {up} "up" or "down", {change} "increase" or "decrease", {warmer}
# "warmer" or "cooler"; {room} a room, {language} a language.
LIGHTS = ("turn {on} the lights", "switch {on} the lights", "lights {on}", "turn the lights {on}",
          "switch the lights {on}")
LIGHTS_IN_ROOM = ("turn {on} the lights in the {room}", "switch {on} the {room} lights", "{room} lights {on}",
                  "lights {on} in the {room}", "turn the {room} lights {on}")
LAMP = ("turn {on} the lamp", "switch {on} the lamp", "lamp {on}", "turn the lamp {on}")
HEAT = ("turn {up} the heat", "{change} the heating", "make it {warmer}", "heat {up}", "turn the heat {up}")
HEAT_IN_ROOM = ("turn {up} the heat in the {room}", "{change} the heating in the {room}", "make the {room} {warmer}",
                "{room} heat {up}", "turn the heat {up} in the {room}")
TO_LANGUAGE = ("change the language to {language}", "switch the language to {language}",
               "set the language to {language}", "speak {language}", "use {language}")
ON_OFF = {"activate": {"on": "on"}, "deactivate": {"on": "off"}}
UP_DOWN = {"increase": {"up": "up", "change": "increase", "warmer": "warmer"},
           "decrease": {"up": "down", "change": "decrease", "warmer": "cooler"}}


def _phrasings() -> dict[Intent, tuple[str, ...]]:
    """Every intent and its phrasings, the templates filled in."""
    phrasings: dict[Intent, tuple[str, ...]] = {}

    def add(intent: Intent, templates: tuple[str, ...], **words: str) -> None:
        phrasings[intent] = tuple(t.format(**words) for t in templates)

    for action, words in ON_OFF.items():
        add(Intent(action, "lights"), LIGHTS, **words)
        for room in ROOMS:
            add(Intent(action, "lights", room), LIGHTS_IN_ROOM, room=room, **words)
    for action, words in UP_DOWN.items():
        add(Intent(action, "heat"), HEAT, **words)
        for room in ROOMS:
            add(Intent(action, "heat", room), HEAT_IN_ROOM, room=room, **words)
    for action, words in ON_OFF.items():
        add(Intent(action, "lamp"), LAMP, **words)
    phrasings[Intent("activate", "music")] = ("play the music", "put on some music", "start the music", "music on",
                                              "turn on the music")
    phrasings[Intent("deactivate", "music")] = ("stop the music", "pause the music", "turn off the music", "music off",
                                                "stop playing music")
    phrasings[Intent("increase", "volume")] = ("turn up the volume", "increase the volume", "louder", "make it louder",
                                               "volume up")
    phrasings[Intent("decrease", "volume")] = ("turn down the volume", "decrease the volume", "quieter",
                                               "make it quieter", "volume down")
    phrasings[Intent("bring", "newspaper")] = ("bring me the newspaper", "get me the newspaper", "fetch the newspaper",
                                               "bring the paper", "i want the newspaper")
    phrasings[Intent("bring", "juice")] = ("bring me some juice", "get me some juice", "fetch me a juice",
                                           "i want some juice")
    for thing in ("socks", "shoes"):
        phrasings[Intent("bring", thing)] = (f"bring me my {thing}", f"get me my {thing}", f"fetch my {thing}",
                                             f"i want my {thing}")
    phrasings[Intent("change_language", "none")] = ("change the language", "switch the language", "change language",
                                                    "use another language")
    for language in LANGUAGE_NAMES:
        add(Intent("change_language", language), TO_LANGUAGE, language=language)
    return phrasings


PHRASINGS = _phrasings()
INTENTS = tuple(PHRASINGS)
SLOTS = ("action", "object", "location")
SLOT_VALUES = {slot: tuple(dict.fromkeys(getattr(i, slot) for i in INTENTS)) for slot in SLOTS}


@dataclass(frozen=True)
class IntentsSize:
    """Which voices read in each split, and how many phrasings of each intent (None: all)."""

    train_voices: tuple[str, ...]
    dev_voices: tuple[str, ...]
    test_voices: tuple[str, ...]
    phrasings_per_intent: int | None = None

    @classmethod
    def full(cls) -> "IntentsSize":
        """Every phrasing read by every English voice: test mini_tts's 3 unseen voices, dev 3, train 16."""
        test = MiniTtsSize.full().english.unseen_voices
        dev = ("flite_awb", "mbrola_en1", "espeak_f5")
        train = tuple(v.speaker for v in VOICES_BY_SPEAKER.values() if v.lang == "en" and v.speaker not in test + dev)
        return cls(train, dev, test)

    @classmethod
    def tiny(cls) -> "IntentsSize":
        """Four fast voices (2 train, 1 dev, 1 test), one seeded phrasing of each intent each: seconds."""
        return cls(("flite_slt", "mbrola_us1"), ("espeak_m3",), ("flite_kal",), phrasings_per_intent=1)

    def validate(self) -> None:
        """Raise ValueError for a voice in two splits."""
        voices = self.train_voices + self.dev_voices + self.test_voices
        if len(set(voices)) != len(voices):
            raise ValueError("a voice can be in only one split")


@dataclass(frozen=True)
class IntentUtterance:
    """One planned utterance: a voice reading phrasing ``phrasing`` of ``intent``."""

    utt: str
    split: str
    voice: Voice
    intent: Intent
    phrasing: int

    @property
    def spoken(self) -> str:
        """What the engine reads."""
        return PHRASINGS[self.intent][self.phrasing]

    @property
    def text(self) -> str:
        """The transcript: upper case words, as in mini_tts."""
        return LANGUAGES["en"].transcript(self.spoken)


def plan_intents(size: IntentsSize, voices: list[Voice], seed: int) -> list[IntentUtterance]:
    """Every utterance: each voice of each split reads the chosen phrasings of every intent."""
    size.validate()
    plan = []
    for split, names in zip(SPLITS, (size.train_voices, size.dev_voices, size.test_voices)):
        chosen = pick_voices(names, voices)
        if not chosen:
            raise CorpusError(f"none of the {split} voices {' '.join(names)} is available")
        for voice in chosen:
            rng = random.Random(f"{seed}/{voice.speaker}/phrasings")
            for intent, phrasings in PHRASINGS.items():
                indices = range(len(phrasings))
                if size.phrasings_per_intent is not None:
                    indices = sorted(rng.sample(indices, min(size.phrasings_per_intent, len(phrasings))))
                plan += [IntentUtterance(f"{voice.speaker}-{intent.name}-{p}", split, voice, intent, p)
                         for p in indices]
    return plan


def wav_path(audio_dir: Path, u: IntentUtterance) -> Path:
    """Where an utterance's audio lives: ``audio_dir/wav/<voice>/<utt>.wav``."""
    return audio_dir / "wav" / u.voice.speaker / f"{u.utt}.wav"


def intent_audio(u: IntentUtterance, seed: int, sources: NoiseSources, kinds: tuple[str, ...]) -> np.ndarray:
    """The phrasing read with jitter, 0.1–0.4 s of lead and tail, over noise of a random kind at 5–30 dB SNR;
    shape (num_samples,)."""
    speech = spoken(u.voice, u.spoken, seed, u.utt)
    rng = clip_rng(seed, u.utt)
    lead, tail = (int(rng.uniform(*PAD_SECONDS) * SAMPLE_RATE) for _ in range(2))
    clip = np.concatenate([np.zeros(lead), speech, np.zeros(tail)])
    kind = kinds[int(rng.integers(len(kinds)))]
    return with_noise(clip, rms(speech), background(rng, kind, len(clip), sources), rng.uniform(*SNR_RANGE_DB))


def write_intent_split(path: Path, utts: list[IntentUtterance], audio_dir: Path) -> None:
    """Write an IC data dir (wav.scp, text, utt2spk, spk2utt, utt2dur, utt2intent, labels_<slot>) and log its size."""
    durations = {u.utt: soundfile.info(str(wav_path(audio_dir, u))).frames / SAMPLE_RATE for u in utts}
    DataDir({
        "wav.scp": {u.utt: str(wav_path(audio_dir, u)) for u in utts},
        "text": {u.utt: u.text for u in utts},
        "utt2spk": {u.utt: u.voice.speaker for u in utts},
        "utt2dur": {u.utt: f"{durations[u.utt]:.4f}" for u in utts},
        "utt2intent": {u.utt: u.intent.label for u in utts},
    }).write(path)
    for slot, values in SLOT_VALUES.items():
        write_text_atomic(path / f"labels_{slot}", "".join(f"{v}\n" for v in values))
    log.info("%s: %d utterances, %d voices, %d intents, %.2f h", path.name, len(utts), len({u.voice for u in utts}),
             len({u.intent for u in utts}), sum(durations.values()) / 3600)


def prepare_intents(audio_dir: str | os.PathLike, data_dir: str | os.PathLike, size: str = "full", seed: int = 0,
                    num_workers: int = 2, progress: bool = False) -> dict[str, Path]:
    """Synthesize the IC audio into ``audio_dir`` and write ``data_dir/{train,dev,test}``.

    Args:
        size: "full" (22 voices × 149 phrasings) or "tiny" (4 voices × 31 intents; for tests).
        seed: fixes the phrasings of "tiny", jitter, padding and noise; the same seed gives identical files.
        num_workers: parallel synthesis threads (each runs engine and sox subprocesses).

    Returns:
        ``{split: data dir}``.

    Raises:
        SynthesisError: more than 5 % of the utterances failed to synthesize.
        CorpusError: ``audio_dir`` holds audio of another seed, or a split has no available voice.
    """
    sizes = {"full": IntentsSize.full, "tiny": IntentsSize.tiny}
    if size not in sizes:
        raise ValueError(f"size must be one of {' '.join(sizes)}, got '{size}'")
    audio_dir, data_dir = Path(audio_dir).absolute(), Path(data_dir)
    with audio_dir_lock(audio_dir):
        check_seed(audio_dir / "wav" / "seed", seed)
        plan = plan_intents(sizes[size](), available_voices(), seed)
        todo = [u for u in plan if not reusable_audio(wav_path(audio_dir, u))]
        log.info("%d utterances planned, %d already made, %d to make", len(plan), len(plan) - len(todo), len(todo))
        failures: dict[str, str] = {}
        if todo:
            sources, kinds = load_noise_sources(), noise_kinds()

            def job(u: IntentUtterance) -> Callable[[], None]:
                return lambda: write_wav(wav_path(audio_dir, u), intent_audio(u, seed, sources, kinds))

            failures = render_all({u.utt: job(u) for u in todo}, num_workers, progress, "synthesizing")
            check_failures(failures, len(plan))
        written = {}
        for split in SPLITS:
            kept = [u for u in plan if u.split == split and u.utt not in failures]
            write_intent_split(data_dir / split, kept, audio_dir)
            written[split] = data_dir / split
        return written
