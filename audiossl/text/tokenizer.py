"""Tokenizers for CTC ASR: characters or SentencePiece pieces, the CTC blank at id 0.

Transcripts are normalized upper case (``A``-``Z``, apostrophe, space; other languages
may add letters). Text is read as :func:`normalize_transcript` gives it: runs of whitespace
count as one space, and accented letters are composed (Unicode NFC), so that an ``É``
typed as ``E`` and a combining accent (NFD, as some tools write it) is the same letter.

A tokenizer is stored inside model checkpoints as a plain JSON-able dict
(:meth:`to_dict`) and rebuilt by :func:`tokenizer_from_dict`, so no side files are needed.
"""
from __future__ import annotations

import base64
import io
import random
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Protocol

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from audiossl.errors import ConfigError, UserError

BLANK_ID = 0
"""Id of the CTC blank in every tokenizer (fairseq's ``<pad>``/HF's ``pad_token`` in wav2vec2 CTC)."""
UNK_ID = 1
"""Id of ``<unk>`` in every tokenizer: what a character unseen in training encodes as."""
TOKENIZER_KINDS = ("char", "bpe", "unigram")  # what build_tokenizer trains


def normalize_transcript(text: str) -> str:
    """``text`` in Unicode NFC (composed accents), single-spaced and stripped: how transcripts are
    tokenized, scored and counted in an LM."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class Tokenizer(Protocol):
    """What the ASR model and trainer rely on."""

    kind: ClassVar[str]

    @property
    def vocab_size(self) -> int:
        """Number of ids, the blank included: the size ``V`` of the CTC output layer."""
        ...

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; never :data:`BLANK_ID`."""
        ...

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (blanks skipped), single-spaced and stripped."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-able dict that :func:`tokenizer_from_dict` rebuilds from."""
        ...


class CharTokenizer:
    """Letters with ``|`` for the space between words, as fairseq's wav2vec2 ``dict.ltr.txt``.

    Ids: ``<blank>`` 0, ``<unk>`` 1, ``|`` 2, then the training characters in code point
    order. ``"IT'S OK"`` encodes as ``I T ' S | O K``; characters not seen in training
    (and a literal ``|``) encode as ``<unk>``, which decodes as ``"<unk>"``.
    """

    kind: ClassVar[str] = "char"
    SPECIALS: ClassVar[tuple[str, str, str]] = ("<blank>", "<unk>", "|")
    UNK_ID: ClassVar[int] = UNK_ID
    WORD_ID: ClassVar[int] = 2

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tuple(tokens[:3]) != self.SPECIALS:
            raise ValueError(f"a char vocabulary starts with {self.SPECIALS}, got {tokens[:3]}")
        letters = tokens[3:]
        bad = [t for t in letters if len(t) != 1 or t.isspace() or t in self.SPECIALS]
        if bad or len(set(letters)) != len(letters):
            raise ValueError(f"char vocabulary entries must be distinct single non-space characters: {bad or letters}")
        self.tokens = tokens
        self._letter_ids = {t: i for i, t in enumerate(tokens) if i >= len(self.SPECIALS)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """Vocabulary of every non-space character in ``texts``; a :class:`UserError` quotes a transcript
        that holds ``|``."""
        letters: set[str] = set()
        for text in texts:
            if "|" in text:
                raise UserError(f"a transcript holds '|', the word boundary token, which transcripts may not: '{text}'")
            letters.update(normalize_transcript(text).replace(" ", ""))
        return cls(cls.SPECIALS + tuple(sorted(letters)))

    @property
    def vocab_size(self) -> int:
        """Number of ids, blank included."""
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Letter ids with :attr:`WORD_ID` between words (none at the ends)."""
        ids: list[int] = []
        for n, word in enumerate(normalize_transcript(text).split()):
            if n:
                ids.append(self.WORD_ID)
            ids.extend(self._letter_ids.get(c, self.UNK_ID) for c in word)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Join the letters, ``|`` as a space; blanks skipped, spaces collapsed."""
        text = "".join(" " if i == self.WORD_ID else self.tokens[i] for i in map(int, ids) if i != BLANK_ID)
        return " ".join(text.split())

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "char", "tokens": [...]}``."""
        return {"kind": self.kind, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        """Inverse of :meth:`to_dict`."""
        _check_kind(d, cls.kind)
        return cls(d["tokens"])


class SentencePieceTokenizer:
    """SentencePiece BPE or unigram pieces (the units of ESPnet/icefall BPE CTC recipes).

    The blank is SentencePiece's pad piece: the model is trained with ``pad_id=0,
    pad_piece="<blank>"``, ``unk_id=1`` and no ``<s>``/``</s>``, so id 0 is a control
    symbol that encode never produces and decode drops; ids need no shifting and
    :attr:`vocab_size` (blank and ``<unk>`` included) is the trainer's ``vocab_size``.
    Text is not normalized (``normalization_rule_name="identity"``); every training
    character is kept (``character_coverage=1.0``); unknown characters decode as ``" ⁇ "``.
    """

    kind: ClassVar[str] = "sentencepiece"

    def __init__(self, model_proto: bytes) -> None:
        self.model_proto = bytes(model_proto)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model_proto)
        if self._sp.pad_id() != BLANK_ID:
            raise ValueError(f"the SentencePiece model must have its pad piece (the CTC blank) at id {BLANK_ID}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, model_type: str = "bpe", seed: int = 0,
              max_sentences: int | None = None) -> SentencePieceTokenizer:
        """Train in memory on ``texts``; the same input gives the same model bytes.

        Args:
            texts: transcripts, one per utterance.
            vocab_size: total ids, blank and ``<unk>`` included (SentencePiece ``--vocab_size``).
            model_type: ``"bpe"`` or ``"unigram"`` (SentencePiece ``--model_type``).
            seed: seeds the subsampling below (a private :class:`random.Random`).
            max_sentences: train on this many transcripts drawn at random, kept in corpus
                order (SentencePiece ``--input_sentence_size``); None uses them all.
        """
        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
        sentences = [s for s in map(normalize_transcript, texts) if s]
        if not sentences:
            raise UserError("no non-empty transcripts to train a tokenizer on")
        if max_sentences is not None and len(sentences) > max_sentences:
            keep = sorted(random.Random(seed).sample(range(len(sentences)), max_sentences))
            sentences = [sentences[i] for i in keep]
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
                model_type=model_type, character_coverage=1.0, normalization_rule_name="identity",
                pad_id=BLANK_ID, pad_piece="<blank>", unk_id=UNK_ID, bos_id=-1, eos_id=-1,
                input_sentence_size=0, minloglevel=2,
            )
        except RuntimeError as err:  # e.g. a vocab_size under the characters seen, or over what the text holds
            raise ConfigError(f"SentencePiece cannot make a {model_type} vocabulary of {vocab_size} pieces "
                              f"from these transcripts: {err}") from None
        return cls(model.getvalue())

    @property
    def vocab_size(self) -> int:
        """Number of ids, blank included."""
        return self._sp.get_piece_size()

    @property
    def model_type(self) -> str:
        """``"bpe"`` or ``"unigram"``: the SentencePiece ``--model_type`` it was trained with."""
        spec = sentencepiece_model_pb2.ModelProto.FromString(self.model_proto).trainer_spec
        return sentencepiece_model_pb2.TrainerSpec.ModelType.Name(spec.model_type).lower()

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text``."""
        return self._sp.encode(normalize_transcript(text), out_type=int)

    def decode(self, ids: Sequence[int]) -> str:
        """Detokenized text; blanks skipped, spaces collapsed."""
        return " ".join(self._sp.decode([int(i) for i in ids]).split())

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "sentencepiece", "model": <base64 of the serialized ModelProto>}``."""
        return {"kind": self.kind, "model": base64.b64encode(self.model_proto).decode("ascii")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SentencePieceTokenizer:
        """Inverse of :meth:`to_dict`."""
        _check_kind(d, cls.kind)
        return cls(base64.b64decode(d["model"], validate=True))


TOKENIZERS: dict[str, type[CharTokenizer] | type[SentencePieceTokenizer]] = {
    CharTokenizer.kind: CharTokenizer,
    SentencePieceTokenizer.kind: SentencePieceTokenizer,
}


def build_tokenizer(kind: str, texts: Iterable[str], vocab_size: int | None = None, *, seed: int = 0,
                    max_sentences: int | None = None) -> Tokenizer:
    """Train a tokenizer of ``kind`` ``"char"``, ``"bpe"`` or ``"unigram"`` on ``texts``.

    ``vocab_size`` is required for ``"bpe"``/``"unigram"`` and must be None for ``"char"``
    (its vocabulary is the training characters); ``seed`` and ``max_sentences`` are
    passed to :meth:`SentencePieceTokenizer.train`.
    """
    if kind == "char":
        if vocab_size is not None:
            raise ConfigError("a char tokenizer's vocabulary comes from the data: leave vocab_size unset")
        return CharTokenizer.train(texts)
    if kind in ("bpe", "unigram"):
        if vocab_size is None:
            raise ConfigError(f"a {kind} tokenizer needs vocab_size")
        return SentencePieceTokenizer.train(texts, vocab_size, kind, seed=seed, max_sentences=max_sentences)
    raise ConfigError(f"unknown tokenizer kind {kind!r}: expected one of {list(TOKENIZER_KINDS)}")


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`to_dict` output, dispatching on ``d["kind"]``."""
    kind = d.get("kind")
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}: expected one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[kind].from_dict(d)


def _check_kind(d: dict[str, Any], kind: str) -> None:
    if d.get("kind") != kind:
        raise ValueError(f"expected a {kind!r} tokenizer dict, got kind {d.get('kind')!r}")
