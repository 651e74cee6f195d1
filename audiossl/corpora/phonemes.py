"""Phoneme transcripts of the mini TTS corpus, for phoneme recognition (SUPERB's PR task).

Each sentence as the engine read it (punctuation and case kept, so that espeak-ng sees the
same clauses) is phonemized by the espeak-ng library with its ``en-us`` voice, then mapped
onto the 39 phonemes of CMUdict's ARPAbet (``INVENTORY``), lower case, stress dropped:
"yes" is ``y eh s``, "church" ``ch er ch``. Word boundaries are dropped too: a transcript
is the phonemes of the sentence, space separated, as PR scores them (PER is the WER of
these transcripts: :func:`audiossl.text.scoring.error_rates` ``.wer``).

Layout::

    out_dir/<split>/text          utterance id, then its phonemes: "flite_slt-wn00001 ih t w ah z ..."
    out_dir/<split>/phones.txt    the inventory, one phoneme a line
    out_dir/<split>/{wav.scp,utt2spk,spk2utt,utt2lang,utt2dur}   copied from data_dir/<split>

The labels are espeak-ng's American reading of the text, not what each voice said: flite,
pico and RHVoice use their own lexicons and the British, Scottish and Caribbean voices
their own accents, so part of any PER is label noise. They depend on the installed
espeak-ng (1.51 in Debian 12) and are otherwise fixed by the text: a re-run writes the
same files.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from audiossl.atomic import write_text_atomic
from audiossl.corpora.mini_tts import ENGLISH_SPLITS, Sentence, load_sentences
from audiossl.data.kaldi_dir import FEATURE_TABLES, DataDir
from audiossl.errors import UserError

log = logging.getLogger(__name__)

VOICE = "en-us"
INVENTORY = ("aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh", "ih",
             "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh", "uw", "v",
             "w", "y", "z", "zh")
"""CMUdict's ARPAbet phonemes without stress, lower case: the symbols of every transcript."""

ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # consonants; t# is the flap of "water", t2 the t of "into", ? the glottal stop of "button"
    "p": ("p",), "b": ("b",), "t": ("t",), "t#": ("t",), "t2": ("t",), "?": ("t",), "d": ("d",),
    "k": ("k",), "g": ("g",), "x": ("k",), "f": ("f",), "v": ("v",), "T": ("th",), "D": ("dh",),
    "s": ("s",), "z": ("z",), "S": ("sh",), "Z": ("zh",), "h": ("hh",), "tS": ("ch",), "dZ": ("jh",),
    "m": ("m",), "n": ("n",), "N": ("ng",), "l": ("l",), "r": ("r",), "r-": ("r",), "w": ("w",),
    "_!w": ("w",), "j": ("y",),
    # syllabic consonants: "cycle", "button"
    "@L": ("ah", "l"), "n-": ("ah", "n"),
    # vowels; I#, I2 are reduced ih, a#, @2, @- reduced ah, i the final vowel of "happy"
    "i:": ("iy",), "i": ("iy",), "I": ("ih",), "I#": ("ih",), "I2": ("ih",), "E": ("eh",), "a": ("ae",),
    "aa": ("ae",), "A:": ("aa",), "0": ("aa",), "V": ("ah",), "@": ("ah",), "@2": ("ah",), "@-": ("ah",),
    "a#": ("ah",), "O:": ("ao",), "O2": ("ao",), "O": ("ao",), "U": ("uh",), "u:": ("uw",), "u": ("uw",),
    "3": ("er",), "3:": ("er",), "eI": ("ey",), "aI": ("ay",), "OI": ("oy",), "aU": ("aw",), "oU": ("ow",),
    "A~": ("aa", "n"), "O~": ("ao", "n"),
    # vowels with r, and vowel pairs
    "A@": ("aa", "r"), "O@": ("ao", "r"), "o@": ("ao", "r"), "e@": ("eh", "r"), "i@3": ("ih", "r"),
    "U@": ("uh", "r"), "aI3": ("ay", "er"), "i@": ("iy", "ah"), "aI@": ("ay", "ah"),
}
"""espeak-ng's en-us phonemes (ASCII names, stress marks stripped) as ARPAbet phonemes."""

ESPEAK_NON_PHONEMES = frozenset({"_", "_:", "_!", ";"})
"""Pauses (``_``, ``_:``, ``_!``) and ``;`` (written between vowels, nothing in espeak-ng's IPA): dropped."""

STRESS_MARKS = "',%="
_SEPARATOR = "|"
_AUDIO_OUTPUT_SYNCHRONOUS = 2      # espeak_AUDIO_OUTPUT: no sound device is opened
_INITIALIZE_DONT_EXIT = 0x8000     # return an error instead of exiting the process
_CHARS_UTF8 = 1


class PhonemeError(UserError, ValueError):
    """espeak-ng missing, a phoneme outside the inventory, or a data dir not of the corpus; names which."""


class _Espeak:
    """The espeak-ng library, loaded once; its state is global, so calls hold a lock."""

    _instance: _Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng")
        if name is None:
            raise PhonemeError("the espeak-ng library (libespeak-ng1) is not installed; tools/install.sh installs it")
        lib = ctypes.CDLL(name)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        if lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_DONT_EXIT) < 0:
            raise PhonemeError(f"{name}: espeak_Initialize failed (espeak-ng-data missing?)")
        if lib.espeak_SetVoiceByName(VOICE.encode()) != 0:
            raise PhonemeError(f"{name}: espeak-ng has no voice '{VOICE}'")
        self.lib = lib

    @classmethod
    def words(cls, sentence: str) -> list[list[str]]:
        """The words of ``sentence``, each a list of espeak-ng phoneme names (stress marks kept)."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            text = ctypes.create_string_buffer(sentence.encode("utf-8"))
            position = ctypes.c_char_p(ctypes.addressof(text))
            mode = ord(_SEPARATOR) << 8           # ASCII phoneme names, this separator between them
            clauses = []
            while position.value:                 # one clause a call; NULL or "" at the end
                clauses.append(cls._instance.lib.espeak_TextToPhonemes(ctypes.byref(position), _CHARS_UTF8, mode))
        return [word.split(_SEPARATOR) for clause in clauses for word in clause.decode("utf-8").split()]


def arpabet(words: list[list[str]], name: str) -> list[str]:
    """ARPAbet phonemes of espeak-ng's phoneme names (``words`` as :meth:`_Espeak.words` gives them).

    An ``r`` inside a word right after ``r`` or ``er`` is dropped: espeak-ng writes the r of
    "victory" (``t 3 r i``) and "appearance" (``p i@3 r @``) both in the vowel and after it.
    Raises :class:`PhonemeError` naming ``name`` for a phoneme name outside the table.
    """
    phonemes: list[str] = []
    for word in words:
        for position, token in enumerate(word):
            token = token.lstrip(STRESS_MARKS)
            if token in ESPEAK_NON_PHONEMES:
                continue
            if token not in ESPEAK_TO_ARPABET:
                raise PhonemeError(f"{name}: espeak-ng phoneme '{token}' (in '{'|'.join(word)}') has no ARPAbet "
                                   f"symbol in the inventory")
            if token in ("r", "r-") and position and phonemes and phonemes[-1] in ("r", "er"):
                continue
            phonemes.extend(ESPEAK_TO_ARPABET[token])
    return phonemes


def phoneme_transcripts(sentences: Sequence[str], names: Sequence[str] | None = None) -> list[list[str]]:
    """The ARPAbet phonemes (symbols of ``INVENTORY``) of each English sentence.

    Args:
        sentences: text as read aloud, punctuation and case kept (they change espeak-ng's
            clauses, and with them weak and strong forms: "for" in "what for?").
        names: what errors call each sentence (utterance ids); default "sentence <index>".

    Raises:
        PhonemeError: espeak-ng gave a phoneme outside the table, or no phoneme at all; the
            message names the sentence.
    """
    if names is not None and len(names) != len(sentences):
        raise ValueError(f"{len(names)} names for {len(sentences)} sentences")
    transcripts = []
    for index, sentence in enumerate(sentences):
        name = names[index] if names is not None else f"sentence {index}"
        phonemes = arpabet(_Espeak.words(sentence), f"{name} ({sentence!r})")
        if not phonemes:
            raise PhonemeError(f"{name}: espeak-ng gave no phoneme for {sentence!r}")
        transcripts.append(phonemes)
    return transcripts


def prepare_phoneme_dirs(corpus_dir: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                         splits: Sequence[str] = ENGLISH_SPLITS) -> dict[str, Path]:
    """Write ``out_dir/<split>``: the mini TTS data dir ``data_dir/<split>`` with phoneme transcripts.

    Every table but ``text`` (and feature tables) is copied; ``text`` holds the phonemes of
    the sentence each utterance reads, taken from ``corpus_dir/text/sentences_en.tsv`` (the
    text as spoken, not the upper-case transcript). Splits missing from ``data_dir`` are
    skipped with a warning. Files are written atomically; a re-run writes the same bytes.

    Args:
        corpus_dir, data_dir: as given to :func:`audiossl.corpora.mini_tts.prepare_mini_tts`.
        splits: English splits only (Spanish utterances are an error).

    Returns:
        ``{split: out dir}`` of the splits written.

    Raises:
        PhonemeError: no sentence list in ``corpus_dir``, or none of ``splits`` in ``data_dir``; an
            utterance not English, whose sentence id is not in the list or whose transcript is not
            that sentence's (the dirs are of different corpora); a phoneme outside the inventory.
            Each names the utterance.
    """
    corpus_dir, data_dir, out_dir = Path(corpus_dir), Path(data_dir), Path(out_dir)
    sentence_list = corpus_dir / "text" / "sentences_en.tsv"
    if not sentence_list.is_file():
        raise PhonemeError(f"{sentence_list}: not found; is {corpus_dir} the corpus dir of {data_dir}?")
    sentences = {s.id: s for s in load_sentences(corpus_dir, "en")}
    present = [split for split in splits if (data_dir / split).is_dir()]
    if not present:
        raise PhonemeError(f"{data_dir}: holds none of the data dirs {' '.join(splits)}; "
                           "audiossl.bin.prepare_mini_tts makes them")
    for split in sorted(set(splits) - set(present)):
        log.warning("%s: no such data dir; skipped", data_dir / split)
    data = {split: DataDir.read(data_dir / split) for split in present}
    spoken = {split: _spoken_sentences(data_dir / split, data[split], sentences, sentence_list) for split in present}
    first_reader: dict[str, str] = {}
    for split in present:
        for utt, text in spoken[split].items():
            first_reader.setdefault(text, utt)
    texts = sorted(first_reader)
    phonemes = dict(zip(texts, phoneme_transcripts(texts, [first_reader[t] for t in texts])))
    written = {}
    for split in present:
        tables = {name: table for name, table in data[split].tables.items()
                  if name not in FEATURE_TABLES and name not in ("text", "spk2utt")}
        tables["text"] = {utt: " ".join(phonemes[text]) for utt, text in spoken[split].items()}
        DataDir(tables).write(out_dir / split)
        write_text_atomic(out_dir / split / "phones.txt", "".join(f"{p}\n" for p in INVENTORY))
        written[split] = out_dir / split
        log.info("%s: %d utterances, %d phonemes", out_dir / split, len(tables["text"]),
                 sum(len(phonemes[text]) for text in spoken[split].values()))
    return written


def _spoken_sentences(path: Path, data: DataDir, sentences: dict[str, Sentence], sentence_list: Path) -> dict[str, str]:
    """``{utt: sentence as spoken}`` of a mini TTS data dir, checked against its transcripts."""
    transcripts = data.transcripts(path)
    languages = data.tables.get("utt2lang", {})
    spoken = {}
    for utt, transcript in transcripts.items():
        if languages.get(utt, "en") != "en":
            raise PhonemeError(f"{path}: utterance '{utt}' is in language '{languages[utt]}'; "
                               "only English has phonemes")
        speaker = data.tables["utt2spk"][utt]
        sentence = sentences.get(utt.removeprefix(f"{speaker}-"))
        if not utt.startswith(f"{speaker}-") or sentence is None:
            raise PhonemeError(f"{path}: utterance '{utt}' of speaker '{speaker}' names no sentence of {sentence_list}")
        if sentence.transcript != transcript:
            raise PhonemeError(f"{path}: utterance '{utt}' has transcript '{transcript}', but sentence {sentence.id} "
                               f"of {sentence_list} is '{sentence.transcript}'")
        spoken[utt] = sentence.spoken
    return spoken
