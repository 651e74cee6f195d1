"""Mini TTS: an offline speech corpus synthesized with Debian's speech engines.

Text comes from WordNet example sentences and the World English Bible (Spanish: the
Reina-Valera 1909); voices from flite, mbrola (driven by espeak-ng), pico, RHVoice and
espeak-ng. Each utterance gets its own pitch and tempo jitter, then is resampled to 16 kHz
mono 16-bit, trimmed of silence and level-normalized with sox.

Layout::

    corpus_dir/text/sentences_{en,es}.tsv   cached sentence lists: id, spoken text, transcript
    corpus_dir/wav/<speaker>/<utt>.wav      audio; utterance id = <speaker>-<sentence id>
    corpus_dir/wav/seed                     the seed the audio was made with
    corpus_dir/wav/sentences_{en,es}.sha256 the sentence lists it was made from
    corpus_dir/.lock                        held by a run: a second run on the dir waits for it, then reuses
    corpus_dir/noise/<kind>/<clip>.wav      noise clips (audiossl.corpora.noise); babble from train_unlab
    data_dir/{train_unlab,train_1h,train_10min,dev,test,test_unseen}/   English
    data_dir/{train_unlab,train_1h,train_10min,dev,test,test_unseen}_es/   Spanish (when asked for)
    data_dir/noise/                         the noise clips: wav.scp, utt2spk, spk2utt, utt2dur, utt2kind
    data_dir/local/lm_text_{en,es}.txt      every transcript of the language's texts (LM text)

Everything is deterministic from the seed: sentence choice uses ``random.Random(seed)``,
jitter a generator seeded from ``(seed, utterance id)``, and sox runs in repeatable mode
without dither. Existing wavs are reused; each is written under a temporary name and
renamed, so a wav left by a killed run is never half-written.

TTS voices are far more uniform than people: results on this corpus are optimistic and
do not transfer to real speech.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import html
import logging
import os
import random
import re
import shlex
import shutil
import subprocess
import tempfile
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import soundfile
from tqdm import tqdm

from audiossl.atomic import atomic_path, write_text_atomic
from audiossl.audio import reusable_audio
from audiossl.corpora.noise import prepare_noise
from audiossl.corpora.workers import audio_dir_lock, check_provenance, thread_pool
from audiossl.data.kaldi_dir import DataDir
from audiossl.errors import UserError

log = logging.getLogger(__name__)

WORDNET_DIR = Path("/usr/share/wordnet")
MBROLA_DIR = Path("/usr/share/mbrola")
RHVOICE_DIR = Path("/usr/share/RHVoice/voices")
SAMPLE_RATE = 16000
MAX_FAILURE_RATE = 0.05
MIN_WORDS, MAX_WORDS = 5, 20
PITCH_CENTS = 200.0
TEMPO_RANGE = (0.9, 1.1)
MIN_SECONDS = 0.3

ENGLISH_SPLITS = ("train_unlab", "train_1h", "train_10min", "dev", "test", "test_unseen")
SPANISH_SPLITS = tuple(f"{split}_es" for split in ENGLISH_SPLITS)
SPLIT_SUFFIX = {"en": "", "es": "_es"}  # a language's splits are the English names with this suffix


# ---------------------------------------------------------------------------- text

@dataclass(frozen=True)
class Sentence:
    """A sentence: ``spoken`` is what the engine reads, ``transcript`` the normalized text."""

    id: str
    spoken: str
    transcript: str


@dataclass(frozen=True)
class Language:
    """What a language's sentences may contain and how they are normalized."""

    letters: str                      # lower-case letters allowed besides a-z
    single_letter_words: frozenset[str]
    banned_words: frozenset[str]      # abbreviations the engines expand
    unaccent: dict[str, str]          # whole-word replacements in the transcript

    def spoken(self, text: str) -> str | None:
        """The text an engine reads, or None when the sentence is unusable."""
        text = re.sub(r'["()«»]', "", text.translate(_PUNCTUATION))
        text = re.sub(r"(?<!\w)'|'(?!\w)", "", text)              # quote marks, not apostrophes
        text = re.sub(r"\s+(?=[.,;:!?])|(?<=[¿¡])\s+", "", text)
        text = re.sub(r"\s+", " ", text).strip(" ,;:")
        upper = f"A-Z{self.letters.upper()}"
        allowed = f"a-z{self.letters}{upper}"
        if not re.fullmatch(rf"[¿¡]?[{allowed}][{allowed} .,;:!?¿¡'\-]*", text):
            return None                                   # digits, symbols, foreign letters
        if re.search(rf"[{upper}]{{2}}", text):
            return None                                   # acronyms and all-caps words
        if re.search(r"\.(?=.*\w)", text):
            return None                                   # abbreviations, several sentences
        return text

    def transcript(self, spoken: str) -> str:
        """Upper case letters, apostrophes inside words, single spaces."""
        text = re.sub(rf"[^A-Z{self.letters.upper()}' ]", "", spoken.upper().replace("-", " "))
        text = re.sub(r"(?<!\w)'|'(?!\w)", "", text)
        words = [self.unaccent.get(w, w) for w in text.split()]
        return " ".join(words)

    def accepts(self, transcript: str) -> bool:
        """Whether a transcript has the right length and no spelled-out words."""
        words = transcript.split()
        return (MIN_WORDS <= len(words) <= MAX_WORDS
                and not any(len(w) == 1 and w not in self.single_letter_words for w in words)
                and not any(w in self.banned_words for w in words))


_PUNCTUATION = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "—": ", ", "–": ", "})
LANGUAGES = {
    "en": Language("", frozenset("AIO"), frozenset({"ETC", "MR", "MRS", "DR", "ST", "VS"}), {}),
    "es": Language("áéíóúñü", frozenset("AEOUY"), frozenset({"ETC", "SR", "SRA", "DR"}),
                    {"Á": "A", "É": "E", "Ó": "O", "Ú": "U"}),
}
TEXT_PACKAGES = {"en": "wordnet-base, diatheke and sword-text-web", "es": "diatheke and sword-text-sparv"}
"""The Debian packages a language's sentences come from."""


def wordnet_examples(wordnet_dir: Path = WORDNET_DIR) -> list[str]:
    """The quoted example sentences of WordNet's noun, verb, adjective and adverb glosses."""
    examples: list[str] = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = wordnet_dir / f"data.{pos}"
        if not path.is_file():
            log.warning("WordNet file %s not found; skipped", path)
            continue
        with open(path, encoding="latin-1") as f:
            for line in f:
                if not line.startswith("  "):             # licence header lines
                    examples += re.findall(r'"([^"]+)"', line.partition(" | ")[2])
    return examples


_VERSE_PREFIX = re.compile(r"(?:(?:I{1,3}|IV) )?[A-Z][a-z]+(?: (?:of )?[A-Z][a-z]+)* \d+:\d+: ")
_MAX_VERSE_CHARS = 1000   # longer "verses" are appendices (the WEB glossary)
_GLUED = "\x00"           # markup between two letters: a lost space ("God|created") or a
                          # split word ("vió|lo"), which cannot be told apart: sentence dropped


def bible_sentences(module: str) -> list[str]:
    """Whole sentences of the SWORD Bible ``module`` (``diatheke``), without verse prefixes.

    The OSIS output is used because the plain one silently glues words across markup
    ("Godcreated"); tags become spaces, and sentences with a tag between two letters are
    dropped. Pieces of sentences that run across verses are dropped too.
    """
    command = ["diatheke", "-b", module, "-f", "osis", "-k", "Gen-Rev"]
    if shutil.which("diatheke") is None:
        log.warning("diatheke not found; Bible module %s skipped", module)
        return []
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        log.warning("%s failed (exit %d); skipped", shlex.join(command), proc.returncode)
        return []
    text = re.sub(r"<title[^>]*>.*?</title>", " ", proc.stdout, flags=re.S)
    text = re.sub(r"(?<=\w)(?:<[^>]*>)+(?=\w)", _GLUED, text)
    text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    sentences = []
    for verse in _VERSE_PREFIX.split(text):
        verse = re.sub(r"\s+", " ", verse).strip()
        if len(verse) > _MAX_VERSE_CHARS:
            continue
        for piece in re.findall(r"[^.!?]+[.!?]+[\"”’')»]*", verse):
            piece = piece.strip()
            if _GLUED not in piece and re.match(r"[\"“‘'(¿¡«]*[A-ZÁÉÍÓÚÑ]", piece):
                sentences.append(piece)
    return sentences


def extract_sentences(lang: str) -> list[Sentence]:
    """Usable, deduplicated sentences of ``lang`` ("en" or "es") from the offline texts."""
    sources = {"en": [("wn", wordnet_examples), ("web", lambda: bible_sentences("engWEB2015eb"))],
               "es": [("rv", lambda: bible_sentences("spaRV1909eb"))]}[lang]
    language = LANGUAGES[lang]
    seen: set[str] = set()
    sentences: list[Sentence] = []
    for prefix, read in sources:
        kept = 0
        for raw in read():
            spoken = language.spoken(raw)
            if spoken is None:
                continue
            transcript = language.transcript(spoken)
            if transcript in seen or not language.accepts(transcript):
                continue
            seen.add(transcript)
            kept += 1
            sentences.append(Sentence(f"{prefix}{kept:05d}", spoken, transcript))
        log.info("%s sentences from source '%s': %d", lang, prefix, kept)
    return sentences


def load_sentences(corpus_dir: Path, lang: str) -> list[Sentence]:
    """The sentences of ``lang``, extracted once and cached in ``corpus_dir/text`` (unless none)."""
    path = corpus_dir / "text" / f"sentences_{lang}.tsv"
    if not path.is_file():
        sentences = extract_sentences(lang)
        if not sentences:
            return []
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, "".join(f"{s.id}\t{s.spoken}\t{s.transcript}\n" for s in sentences))
    with open(path, encoding="utf-8") as f:
        return [Sentence(*line.rstrip("\n").split("\t")) for line in f]


def check_sentences(corpus_dir: Path, lang: str, sentences: list[Sentence]) -> None:
    """Record in ``corpus_dir/wav/sentences_<lang>.sha256`` the sentence list the audio is made from; refuse
    another, whose ids may name other sentences (a list extracted again from other text packages): the wavs
    reused by id would not say their transcripts. A folder without a wav yet takes the new list."""
    record = corpus_dir / "wav" / f"sentences_{lang}.sha256"
    text = "".join(f"{s.id}\t{s.spoken}\t{s.transcript}\n" for s in sentences)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if record.is_file() and record.read_text().strip() != digest and any(record.parent.rglob("*.wav")):
        raise CorpusError(f"{corpus_dir / 'text' / f'sentences_{lang}.tsv'} is not the sentence list the audio of "
                          f"{record.parent} was made from (whose SHA-256 {record} holds); restore it, or use another "
                          "corpus dir")
    record.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(record, f"{digest}\n")


# ---------------------------------------------------------------------------- voices

@dataclass(frozen=True)
class Voice:
    """A speaker: an engine and its voice argument."""

    speaker: str
    engine: str    # flite, mbrola, pico, rhvoice or espeak
    name: str
    lang: str = "en"


VOICES: tuple[Voice, ...] = (
    Voice("flite_kal", "flite", "kal"),
    Voice("flite_kal16", "flite", "kal16"),
    Voice("flite_awb", "flite", "awb"),
    Voice("flite_rms", "flite", "rms"),
    Voice("flite_slt", "flite", "slt"),
    Voice("mbrola_us1", "mbrola", "us1"),
    Voice("mbrola_us2", "mbrola", "us2"),
    Voice("mbrola_us3", "mbrola", "us3"),
    Voice("mbrola_en1", "mbrola", "en1"),
    Voice("pico_enus", "pico", "en-US"),
    Voice("pico_engb", "pico", "en-GB"),
    Voice("rhvoice_alan", "rhvoice", "alan"),
    Voice("rhvoice_bdl", "rhvoice", "bdl"),
    Voice("rhvoice_clb", "rhvoice", "clb"),
    Voice("rhvoice_slt", "rhvoice", "slt"),
    Voice("espeak_m1", "espeak", "en-gb-x-rp+m1"),
    Voice("espeak_m3", "espeak", "en-us+m3"),
    Voice("espeak_m5", "espeak", "en+m5"),
    Voice("espeak_m7", "espeak", "en-gb-scotland+m7"),
    Voice("espeak_f2", "espeak", "en+f2"),
    Voice("espeak_f4", "espeak", "en-us+f4"),
    Voice("espeak_f5", "espeak", "en-029+f5"),
    Voice("pico_eses", "pico", "es-ES", "es"),
    Voice("mbrola_es1", "mbrola", "es1", "es"),
    Voice("espeak_es_m3", "espeak", "es+m3", "es"),
    Voice("espeak_es_f2", "espeak", "es-419+f2", "es"),
    Voice("espeak_es_m1", "espeak", "es+m1", "es"),
    Voice("espeak_es_f4", "espeak", "es+f4", "es"),
    Voice("espeak_es_m5", "espeak", "es-419+m5", "es"),
    Voice("espeak_es_m7", "espeak", "es+m7", "es"),
)
VOICES_BY_SPEAKER = {v.speaker: v for v in VOICES}


def _flite_voices() -> set[str]:
    if shutil.which("flite") is None:
        return set()
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    return set(out.partition(":")[2].split())


def available_voices(voices: tuple[Voice, ...] = VOICES) -> list[Voice]:
    """The voices whose engine (and voice data) is installed; the others are logged. Without sox, which
    post-processes every voice's audio, a :class:`CorpusError` says so before any engine runs."""
    if shutil.which("sox") is None:
        raise CorpusError("sox not found: install the Debian package sox (it post-processes every voice's audio)")
    flite = _flite_voices()
    espeak = shutil.which("espeak-ng") is not None
    checks: dict[str, Callable[[Voice], bool]] = {
        "flite": lambda v: v.name in flite,
        "espeak": lambda v: espeak,
        "mbrola": lambda v: espeak and shutil.which("mbrola") is not None
        and (MBROLA_DIR / v.name / v.name).is_file(),
        "pico": lambda v: shutil.which("pico2wave") is not None,
        "rhvoice": lambda v: shutil.which("RHVoice-test") is not None and (RHVOICE_DIR / v.name).is_dir(),
    }
    found = [v for v in voices if checks[v.engine](v)]
    missing = [v.speaker for v in voices if v not in found]
    if missing:
        log.warning("voices skipped (engine or voice data not installed): %s", " ".join(missing))
    return found


# ---------------------------------------------------------------------------- synthesis

class SynthesisError(UserError, RuntimeError):
    """An engine or sox call that failed or gave no audio; the message names the command."""


class CorpusError(UserError, ValueError):
    """A corpus dir or set of installed voices that cannot give the corpus asked for; the message says why."""


def run_tool(argv: list[str], stdin: str | None = None) -> str:
    """Run a command and return its standard output; raise :class:`SynthesisError` on failure."""
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SynthesisError(f"{shlex.join(argv)}: {err}") from err
    if proc.returncode != 0:
        tail = "".join(f": {line}" for line in proc.stderr.strip().splitlines()[-1:])
        raise SynthesisError(f"{shlex.join(argv)} failed (exit {proc.returncode}){tail}")
    return proc.stdout


# espeak-ng writes stressed vowels "e/" and "o/" that the es1 diphone set lacks; mbrola
# would replace every diphone touching them with silence.
_MBROLA_PHONEME_FIXES = {"es1": (re.compile(r"^([eo])/", re.M), r"\1")}


def _synthesize_mbrola(voice: Voice, text: str, out: Path) -> str:
    espeak = ["espeak-ng", "-v", f"mb-{voice.name}", "-q", "--pho", text]
    mbrola = ["mbrola", "-e", str(MBROLA_DIR / voice.name / voice.name), "-", str(out)]
    pho = run_tool(espeak)
    if voice.name in _MBROLA_PHONEME_FIXES:
        pattern, replacement = _MBROLA_PHONEME_FIXES[voice.name]
        pho = pattern.sub(replacement, pho)
    run_tool(mbrola, pho)
    return f"{shlex.join(espeak)} | {shlex.join(mbrola)}"


def synthesize_raw(voice: Voice, text: str, out: Path) -> str:
    """Write the engine's own audio for ``text`` to ``out`` (a .wav); returns the command."""
    if voice.engine == "mbrola":
        return _synthesize_mbrola(voice, text, out)
    stdin = None
    if voice.engine == "flite":
        argv = ["flite", "-voice", voice.name, "-t", text, "-o", str(out)]
    elif voice.engine == "espeak":
        argv = ["espeak-ng", "-v", voice.name, "-w", str(out), text]
    elif voice.engine == "pico":
        argv = ["pico2wave", "-l", voice.name, "-w", str(out), text]
    elif voice.engine == "rhvoice":
        argv, stdin = ["RHVoice-test", "-p", voice.name, "-o", str(out)], text
    else:
        raise ValueError(f"unknown engine '{voice.engine}'")
    run_tool(argv, stdin)
    return shlex.join(argv)


def jitter(seed: int, utt: str) -> tuple[float, float]:
    """``(pitch shift in cents, tempo factor)`` of an utterance, fixed by seed and id."""
    rng = random.Random(f"{seed}/{utt}")
    return round(rng.uniform(-PITCH_CENTS, PITCH_CENTS), 1), round(rng.uniform(*TEMPO_RANGE), 3)


def sox_command(raw: Path, out: Path, cents: float, tempo: float) -> list[str]:
    """Resample to 16 kHz mono 16-bit, trim silence at both ends, jitter, normalize to -3 dBFS."""
    trim = ["silence", "1", "0.05", "0.5%"]
    return ["sox", "-R", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-t", "wav", str(out),
            *trim, "reverse", *trim, "reverse", "pitch", str(cents), "tempo", "-s", str(tempo),
            "rate", str(SAMPLE_RATE), "norm", "-3"]


def synthesize_utterance(voice: Voice, text: str, out: Path, seed: int, utt: str) -> None:
    """Synthesize, post-process and atomically write ``out``; raises :class:`SynthesisError`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as part, tempfile.TemporaryDirectory(prefix="mini_tts_") as tmp:
        raw = Path(tmp) / "raw.wav"
        command = synthesize_raw(voice, text, raw)
        if not raw.is_file() or raw.stat().st_size <= 44:
            raise SynthesisError(f"{command}: no audio written")
        run_tool(sox_command(raw, part, *jitter(seed, utt)))   # sox is told the type: the name's suffix does not matter
        info = soundfile.info(str(part))
        if info.frames < MIN_SECONDS * info.samplerate:
            raise SynthesisError(f"{command}: only {info.frames / info.samplerate:.2f} s of audio after trimming")


# ---------------------------------------------------------------------------- corpus

@dataclass(frozen=True)
class LanguageSize:
    """One language's voices and utterances per voice and split.

    Every utterance has its own sentence; ``train_1h`` and ``train_10min`` are the first
    ``train_1h_seconds`` / ``train_10min_seconds`` of ``train_unlab`` in a seeded,
    speaker-balanced order; ``test_unseen`` is read by the unseen voices only.
    """

    train_voices: tuple[str, ...]
    unseen_voices: tuple[str, ...]
    train_per_voice: int
    dev_per_voice: int
    test_per_voice: int
    unseen_per_voice: int
    train_1h_seconds: float = 3600.0
    train_10min_seconds: float = 600.0


@dataclass(frozen=True)
class MiniTtsSize:
    """How big the corpus is: each language's :class:`LanguageSize`.

    ``unlabelled_only_per_voice`` more utterances per English training voice go into
    ``train_unlab`` alone, drawn from the sentences the other splits leave, so every other
    split is the same as without them.
    """

    english: LanguageSize
    spanish: LanguageSize
    unlabelled_only_per_voice: int = 0

    @classmethod
    def full(cls) -> "MiniTtsSize":
        """English: 19 training voices (about 2.2 h), 3 unseen voices of three engines. Spanish: 6
        training voices (pico and espeak-ng; about 1.5 h), 2 unseen (mbrola and an espeak-ng variant)."""
        unseen = ("flite_rms", "mbrola_us3", "rhvoice_bdl")
        train = tuple(v.speaker for v in VOICES if v.lang == "en" and v.speaker not in unseen)
        unseen_es = ("mbrola_es1", "espeak_es_m7")
        train_es = tuple(v.speaker for v in VOICES if v.lang == "es" and v.speaker not in unseen_es)
        return cls(LanguageSize(train, unseen, train_per_voice=150, dev_per_voice=8, test_per_voice=8,
                                unseen_per_voice=50),
                   LanguageSize(train_es, unseen_es, train_per_voice=200, dev_per_voice=8, test_per_voice=12,
                                unseen_per_voice=40))

    @classmethod
    def large(cls) -> "MiniTtsSize":
        """The full corpus with 450 more unlabelled utterances per English training voice (about 9 h in all)."""
        return dataclasses.replace(cls.full(), unlabelled_only_per_voice=450)

    @classmethod
    def tiny(cls) -> "MiniTtsSize":
        """Three fast English training voices, one unseen; two Spanish, one unseen: seconds to synthesize."""
        return cls(LanguageSize(("flite_slt", "mbrola_us1", "espeak_m3"), ("flite_kal",), train_per_voice=6,
                                dev_per_voice=2, test_per_voice=2, unseen_per_voice=4, train_1h_seconds=30.0,
                                train_10min_seconds=10.0),
                   LanguageSize(("espeak_es_m3", "espeak_es_f2"), ("mbrola_es1",), train_per_voice=6,
                                dev_per_voice=2, test_per_voice=2, unseen_per_voice=3, train_1h_seconds=30.0,
                                train_10min_seconds=10.0))

    def languages(self) -> dict[str, LanguageSize]:
        return {"en": self.english, "es": self.spanish}

    def validate(self) -> None:
        """Raise ValueError for unknown speakers, a voice of another language, or a voice both seen and unseen."""
        for lang, language in self.languages().items():
            for speaker in language.train_voices + language.unseen_voices:
                if speaker not in VOICES_BY_SPEAKER:
                    raise ValueError(f"unknown voice '{speaker}' (known: {' '.join(VOICES_BY_SPEAKER)})")
                if VOICES_BY_SPEAKER[speaker].lang != lang:
                    raise ValueError(f"voice '{speaker}' does not speak {lang!r}")
            if set(language.train_voices) & set(language.unseen_voices):
                raise ValueError("a voice cannot be both a training and an unseen voice")


@dataclass(frozen=True)
class Utterance:
    """One planned utterance: a voice reading a sentence (never labelled if ``unlabelled_only``)."""

    utt: str
    voice: Voice
    sentence: Sentence
    unlabelled_only: bool = False


def _assign(blocks: list[tuple[str, list[Voice], int]], sentences: list[Sentence],
            rng: random.Random) -> dict[str, list[Utterance]]:
    """Give each (split, voices, per voice) block its own sentences, drawn without repeats."""
    needed = sum(len(voices) * n for _, voices, n in blocks)
    if needed > len(sentences):
        raise CorpusError(f"need {needed} sentences, only {len(sentences)} are available")
    pool = iter(rng.sample(sentences, needed))
    plan: dict[str, list[Utterance]] = {}
    for split, voices, n in blocks:
        plan[split] = [Utterance(f"{v.speaker}-{s.id}", v, s) for v in voices for s in (next(pool) for _ in range(n))]
    return plan


def plan_corpus(size: MiniTtsSize, voices: list[Voice], sentences: dict[str, list[Sentence]], seed: int,
                languages: tuple[str, ...] = ("en",)) -> dict[str, list[Utterance]]:
    """The utterances of every split of ``languages`` but the labelled subsets; dev/test sentences are unseen
    in training. Each language draws its sentences from its own seeded stream, so adding one changes no other.
    Sentences are drawn for every voice of ``size``, then the voices not in ``voices`` (not installed) are
    left out: a voice's utterances are the same whichever other voices are installed."""
    size.validate()
    available = {v.speaker for v in voices}

    def every(names: tuple[str, ...]) -> list[Voice]:
        return [VOICES_BY_SPEAKER[n] for n in names]

    drawn: dict[str, list[Utterance]] = {}
    for lang in languages:
        language, suffix = size.languages()[lang], SPLIT_SUFFIX[lang]
        if not available & set(language.train_voices):
            raise CorpusError(f"no {lang} training voice is available")
        if language.unseen_per_voice and not available & set(language.unseen_voices):
            raise CorpusError(f"none of the {lang} unseen voices {' '.join(language.unseen_voices)} is installed: "
                              f"test_unseen{suffix} would be empty")
        if not sentences[lang]:
            raise CorpusError(f"no {lang} sentence found: install the Debian packages {TEXT_PACKAGES[lang]}")
        log.info("%s voices: training %s; unseen %s", lang,
                 " ".join(n for n in language.train_voices if n in available),
                 " ".join(n for n in language.unseen_voices if n in available))
        rng = random.Random(seed if lang == "en" else f"{seed}/{lang}")
        blocks = [("train_unlab", language.train_voices, language.train_per_voice),
                  ("dev", language.train_voices, language.dev_per_voice),
                  ("test", language.train_voices, language.test_per_voice),
                  ("test_unseen", language.unseen_voices, language.unseen_per_voice)]
        drawn.update(_assign([(split + suffix, every(names), n) for split, names, n in blocks], sentences[lang], rng))
    if size.unlabelled_only_per_voice and "en" in languages:
        used = {u.sentence.id for utts in drawn.values() for u in utts}
        left = [s for s in sentences["en"] if s.id not in used]
        extra = _assign([("train_unlab", every(size.english.train_voices), size.unlabelled_only_per_voice)], left,
                        random.Random(f"{seed}/unlabelled-only"))["train_unlab"]
        drawn["train_unlab"] += [dataclasses.replace(u, unlabelled_only=True) for u in extra]
    return {split: [u for u in utts if u.voice.speaker in available] for split, utts in drawn.items()}


def labelled_order(utts: list[Utterance], seed: int) -> list[Utterance]:
    """Training utterances in a seeded order that cycles through the speakers."""
    rng = random.Random(seed)
    by_speaker: dict[str, list[Utterance]] = {}
    for u in sorted(utts, key=lambda u: u.utt):
        by_speaker.setdefault(u.voice.speaker, []).append(u)
    queues = [rng.sample(group, len(group)) for _, group in sorted(by_speaker.items())]
    longest = max((len(q) for q in queues), default=0)
    return [q[i] for i in range(longest) for q in queues if i < len(q)]


def first_seconds(order: list[Utterance], durations: dict[str, float], seconds: float) -> list[Utterance]:
    """The shortest prefix of ``order`` lasting at least ``seconds`` (or all of it)."""
    chosen, total = [], 0.0
    for u in order:
        if total >= seconds:
            break
        chosen.append(u)
        total += durations[u.utt]
    return chosen


def render_all(jobs: dict[str, Callable[[], None]], num_workers: int, progress: bool, desc: str) -> dict[str, str]:
    """Run ``{key: job}`` on ``num_workers`` threads; returns ``{key: error}`` of the jobs that raised
    :class:`SynthesisError` (each logged)."""
    failures: dict[str, str] = {}
    with thread_pool(num_workers) as pool:
        futures = {pool.submit(job): key for key, job in jobs.items()}
        for future in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="utt", disable=not progress):
            try:
                future.result()
            except SynthesisError as err:
                failures[futures[future]] = str(err)
                log.warning("%s skipped: %s", futures[future], err)
    return failures


def check_failures(failures: dict[str, str], total: int) -> None:
    """Raise :class:`SynthesisError` when more than 5 % of ``total`` utterances failed."""
    if len(failures) > MAX_FAILURE_RATE * total:
        raise SynthesisError(f"{len(failures)} of {total} utterances failed to synthesize "
                             f"(more than {MAX_FAILURE_RATE:.0%}); first: {next(iter(failures.values()))}")


def synthesize_missing(jobs: dict[str, tuple[Path, Callable[[], None]]], num_workers: int,
                       progress: bool) -> dict[str, str]:
    """Run the job of each utterance ``{utt: (its wav, job writing it)}`` whose wav is missing; returns
    ``{utt: error}`` for failures (:func:`render_all`, :func:`check_failures`)."""
    todo = {utt: job for utt, (wav, job) in jobs.items() if not reusable_audio(wav)}
    log.info("%d utterances planned, %d already synthesized, %d to synthesize",
             len(jobs), len(jobs) - len(todo), len(todo))
    failures = render_all(todo, num_workers, progress, "synthesizing")
    check_failures(failures, len(jobs))
    return failures


def synthesize_all(utts: list[Utterance], corpus_dir: Path, seed: int, num_workers: int = 2,
                   progress: bool = True) -> dict[str, str]:
    """Synthesize every utterance whose wav is missing (:func:`synthesize_missing`)."""
    jobs = {u.utt: (wav_path(corpus_dir, u), functools.partial(synthesize_utterance, u.voice, u.sentence.spoken,
                                                                  wav_path(corpus_dir, u), seed, u.utt)) for u in utts}
    return synthesize_missing(jobs, num_workers, progress)


def wav_path(corpus_dir: Path, utt: Utterance) -> Path:
    """Where an utterance's audio lives: ``corpus_dir/wav/<speaker>/<utt>.wav``."""
    return corpus_dir / "wav" / utt.voice.speaker / f"{utt.utt}.wav"


def check_seed(seed_file: Path, seed: int) -> None:
    """Record in ``seed_file`` the seed the audio beside it is made with (:func:`check_provenance`)."""
    check_provenance(seed_file.parent, {seed_file.name: str(seed)}, CorpusError)


def write_split(path: Path, utts: list[Utterance], corpus_dir: Path, durations: dict[str, float]) -> None:
    """Write a Kaldi data dir (wav.scp, text, utt2spk, spk2utt, utt2lang, utt2dur) and log its size."""
    DataDir({
        "wav.scp": {u.utt: str(wav_path(corpus_dir, u)) for u in utts},
        "text": {u.utt: u.sentence.transcript for u in utts},
        "utt2spk": {u.utt: u.voice.speaker for u in utts},
        "utt2lang": {u.utt: u.voice.lang for u in utts},
        "utt2dur": {u.utt: f"{durations[u.utt]:.4f}" for u in utts},
    }).write(path)
    hours = sum(durations[u.utt] for u in utts) / 3600
    log.info("%s: %d utterances, %d speakers, %.3f h", path.name, len(utts),
             len({u.voice.speaker for u in utts}), hours)


def prepare_mini_tts(corpus_dir: str | os.PathLike, data_dir: str | os.PathLike, size: str = "full",
                     seed: int = 0, num_workers: int = 2, progress: bool = True,
                     languages: tuple[str, ...] = ("en",)) -> dict[str, Path]:
    """Synthesize the corpus into ``corpus_dir`` and write its Kaldi data dirs under ``data_dir``.

    Args:
        size: "full" (about 2.2 h of English training audio), "large" (the full corpus with about 9 h
            in ``train_unlab``; every other split as in "full") or "tiny" (seconds; for tests).
        seed: fixes sentence choice and per-utterance jitter; the same seed gives identical dirs.
        num_workers: parallel synthesis threads (each runs engine and sox subprocesses).
        languages: "en" and/or "es" (Spanish splits end in ``_es``); English is always made, as the noise
            set's babble is English speech.

    Returns:
        ``{split: data dir}`` for every split of ``languages`` and ``noise`` (noise clips, babble made of
        ``train_unlab`` speech only; "tiny" size for a tiny corpus, else "full").

    Raises:
        SynthesisError: more than 5 % of the utterances failed to synthesize.
        CorpusError: ``corpus_dir`` holds audio of another seed or sentence list, or too few voices or
            sentences are available.
        NoiseError: ``corpus_dir/noise`` holds noise of another seed.
    """
    sizes = {"full": MiniTtsSize.full, "large": MiniTtsSize.large, "tiny": MiniTtsSize.tiny}
    if size not in sizes:
        raise ValueError(f"size must be one of {' '.join(sizes)}, got '{size}'")
    unknown = sorted(set(languages) - set(SPLIT_SUFFIX))
    if unknown:
        raise ValueError(f"languages must be among {' '.join(SPLIT_SUFFIX)}, got {' '.join(unknown)}")
    languages = tuple(lang for lang in SPLIT_SUFFIX if lang == "en" or lang in languages)
    dims = sizes[size]()
    corpus_dir, data_dir = Path(corpus_dir).absolute(), Path(data_dir)
    with audio_dir_lock(corpus_dir):
        check_seed(corpus_dir / "wav" / "seed", seed)
        sentences = {lang: load_sentences(corpus_dir, lang) for lang in languages}
        for lang in languages:
            check_sentences(corpus_dir, lang, sentences[lang])
        plan = plan_corpus(dims, available_voices(), sentences, seed, languages)
        failures = synthesize_all([u for utts in plan.values() for u in utts], corpus_dir, seed, num_workers, progress)
        plan = {split: [u for u in utts if u.utt not in failures] for split, utts in plan.items()}
        durations = {}
        for u in (u for utts in plan.values() for u in utts):
            info = soundfile.info(str(wav_path(corpus_dir, u)))
            durations[u.utt] = info.frames / info.samplerate
        written = {}
        for lang in languages:
            language, suffix = dims.languages()[lang], SPLIT_SUFFIX[lang]
            order = labelled_order([u for u in plan["train_unlab" + suffix] if not u.unlabelled_only], seed)
            plan["train_1h" + suffix] = first_seconds(order, durations, language.train_1h_seconds)
            plan["train_10min" + suffix] = first_seconds(order, durations, language.train_10min_seconds)
            for split in ENGLISH_SPLITS:
                write_split(data_dir / (split + suffix), plan[split + suffix], corpus_dir, durations)
                written[split + suffix] = data_dir / (split + suffix)
            if sentences[lang]:
                write_lm_text(data_dir / "local" / f"lm_text_{lang}.txt", sentences[lang])
        written["noise"] = prepare_noise(corpus_dir / "noise", data_dir / "noise",
                                         [wav_path(corpus_dir, u) for u in plan["train_unlab"]],
                                         size="tiny" if size == "tiny" else "full", seed=seed)
        return written


def write_lm_text(path: Path, sentences: list[Sentence]) -> None:
    """Every transcript of a language's text sources, one per line: the text of its word LM.

    The dev and test sentences are in it too; ``audiossl.bin.train_lm --exclude-data`` removes them.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(f"{s.transcript}\n" for s in sentences))
