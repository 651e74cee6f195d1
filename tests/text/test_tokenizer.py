"""Tokenizers: round trips, unknown characters, the blank at id 0, dict serialization."""
from __future__ import annotations

import io
import json
import unicodedata

import pytest
import sentencepiece as spm

from audiossl.errors import UserError
from audiossl.text.tokenizer import (
    BLANK_ID,
    CharTokenizer,
    SentencePieceTokenizer,
    build_tokenizer,
    tokenizer_from_dict,
)

TEXTS = [
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "IT'S A TEST OF THE WORD PIECES",
    "HELLO WORLD",
    "SHE SELLS SEA SHELLS BY THE SEA SHORE",
    "PACK MY BOX WITH FIVE DOZEN LIQUOR JUGS",
    "HOW VEXINGLY QUICK DAFT ZEBRAS JUMP",
] * 5


def test_char_vocabulary_and_round_trip() -> None:
    tok = CharTokenizer.train(TEXTS)
    assert tok.tokens[:3] == ["<blank>", "<unk>", "|"]
    assert tok.vocab_size == 3 + 27  # 26 letters (the texts are pangrams) and the apostrophe
    ids = tok.encode("IT'S  A TEST ")
    assert [tok.tokens[i] for i in ids] == list("IT'S|A|TEST")
    assert tok.decode(ids) == "IT'S A TEST"
    for text in TEXTS:
        assert tok.decode(tok.encode(text)) == text
    assert BLANK_ID not in tok.encode(" ".join(TEXTS))


def test_char_unknown_characters_and_blanks() -> None:
    tok = CharTokenizer.train(["AB BA"])
    ids = tok.encode("ABC A|B")
    assert ids == [3, 4, CharTokenizer.UNK_ID, CharTokenizer.WORD_ID, 3, CharTokenizer.UNK_ID, 4]
    assert tok.decode(ids) == "AB<unk> A<unk>B"
    # CTC output with blanks and stray word boundaries decodes to clean single-spaced text.
    assert tok.decode([0, 2, 3, 0, 2, 2, 4, 2]) == "A B"
    with pytest.raises(UserError, match="a transcript holds '\\|', the word boundary token.*: 'A\\|B'"):
        CharTokenizer.train(["A|B"])


def test_char_dict_round_trip() -> None:
    tok = CharTokenizer.train(TEXTS + ["ÉTÉ"])
    d = json.loads(json.dumps(tok.to_dict()))
    again = tokenizer_from_dict(d)
    assert isinstance(again, CharTokenizer) and again.tokens == tok.tokens
    assert again.encode("ÉTÉ HELLO") == tok.encode("ÉTÉ HELLO")
    with pytest.raises(ValueError):
        CharTokenizer(["<unk>", "<blank>", "|", "A"])
    with pytest.raises(ValueError):
        CharTokenizer(["<blank>", "<unk>", "|", "A", "A"])


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_sentencepiece_round_trip_and_blank(model_type: str) -> None:
    tok = SentencePieceTokenizer.train(TEXTS, vocab_size=40, model_type=model_type)
    assert tok.vocab_size == 40
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids and BLANK_ID not in ids and all(0 < i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
    ids = tok.encode("HELLO  QUICK WORLD ")
    assert tok.decode([BLANK_ID, *ids, BLANK_ID]) == "HELLO QUICK WORLD"
    # Pieces are longer than characters on the training text.
    assert len(tok.encode(TEXTS[0])) < len(TEXTS[0])


def test_sentencepiece_deterministic_and_dict_round_trip() -> None:
    a = SentencePieceTokenizer.train(TEXTS, vocab_size=36, model_type="bpe", seed=3)
    b = SentencePieceTokenizer.train(TEXTS, vocab_size=36, model_type="bpe", seed=3)
    assert a.model_proto == b.model_proto
    d = json.loads(json.dumps(a.to_dict()))
    assert d["kind"] == "sentencepiece" and isinstance(d["model"], str)
    again = tokenizer_from_dict(d)
    assert isinstance(again, SentencePieceTokenizer)
    assert again.vocab_size == a.vocab_size
    for text in TEXTS + ["ZEBRA QUIZ", "A WORD NOT SEEN"]:
        assert again.encode(text) == a.encode(text)


def test_sentencepiece_subsampling_is_seeded() -> None:
    texts = [f"{w} {v}" for w in ("ALPHA", "BRAVO", "CHARLIE", "DELTA") for v in ("ONE", "TWO", "THREE")] * 3
    a = SentencePieceTokenizer.train(texts, vocab_size=25, seed=1, max_sentences=20)
    b = SentencePieceTokenizer.train(texts, vocab_size=25, seed=1, max_sentences=20)
    c = SentencePieceTokenizer.train(texts, vocab_size=25, seed=2, max_sentences=20)
    assert a.model_proto == b.model_proto
    assert a.model_proto != c.model_proto


def test_unknown_character_never_blank() -> None:
    tok = SentencePieceTokenizer.train(TEXTS, vocab_size=40)
    ids = tok.encode("HELLO 123")
    assert BLANK_ID not in ids and 1 in ids  # <unk> is id 1


def test_build_tokenizer() -> None:
    assert isinstance(build_tokenizer("char", TEXTS), CharTokenizer)
    bpe = build_tokenizer("bpe", TEXTS, vocab_size=40)
    assert isinstance(bpe, SentencePieceTokenizer) and (bpe.vocab_size, bpe.model_type) == (40, "bpe")
    unigram = build_tokenizer("unigram", TEXTS, vocab_size=40)
    assert isinstance(unigram, SentencePieceTokenizer) and unigram.model_type == "unigram"
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer("bpe", TEXTS)
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer("char", TEXTS, vocab_size=30)
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        build_tokenizer("wordpiece", TEXTS)
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        tokenizer_from_dict({"kind": "os.system"})
    with pytest.raises(ValueError, match="pad piece"):
        SentencePieceTokenizer(_plain_sentencepiece_model())


def _plain_sentencepiece_model() -> bytes:
    """A model trained with SentencePiece's defaults (``<unk>`` at id 0, no room for the blank)."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TEXTS), model_writer=model, vocab_size=40,
                                   minloglevel=2)
    return model.getvalue()


@pytest.mark.parametrize("kind, vocab_size", [("char", None), ("bpe", 40)])
def test_accents_composed_or_not_are_the_same_tokens(kind: str, vocab_size: int | None) -> None:
    """Transcripts of two sources, one with composed accents (NFC), one with combining ones (NFD): the char
    vocabulary had É and the combining accent apart, and NFD text encoded as E then <unk>."""
    composed = [unicodedata.normalize("NFC", t) for t in ("CAFÉ CON LECHE", "ÁRBOL Y CAMIÓN", "ÑANDÚ")] + TEXTS
    tokenizer = build_tokenizer(kind, [unicodedata.normalize("NFD", composed[0]), *composed[1:]], vocab_size)
    for text in composed[:3]:
        ids = tokenizer.encode(unicodedata.normalize("NFD", text))
        assert ids == tokenizer.encode(text) and CharTokenizer.UNK_ID not in ids and tokenizer.decode(ids) == text
