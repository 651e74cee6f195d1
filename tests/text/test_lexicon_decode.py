"""The lexicon + word LM CTC search on known emissions."""
from __future__ import annotations

import logging

import pytest
import torch

from audiossl.text.lexicon_decode import LexiconDecoder, with_final_boundary
from audiossl.text.ngram import train_arpa, write_lexicon
from audiossl.text.tokenizer import CharTokenizer

TEXT = ["THE CAT SAT ON THE MAT", "THE DOG SAT ON THE LOG", "A CAT AND A DOG", "THE CAT ATE", "THE DOG ATE",
        "A MAT ON A LOG", "THE CAT SAT", "A DOG SAT", "THE MAT", "ON A MAT"]


@pytest.fixture
def lm_dir(tmp_path):
    train_arpa(TEXT, 3, tmp_path / "lm.arpa")
    write_lexicon({w for line in TEXT for w in line.split()}, tmp_path / "lexicon.txt")
    return tmp_path


def emissions(tokenizer: CharTokenizer, frames: list[dict[str, float]]) -> torch.Tensor:
    """(1, T, V) log-probabilities: each frame's listed tokens get their probability, the rest share what is left."""
    out = torch.empty(1, len(frames), tokenizer.vocab_size)
    for t, probs in enumerate(frames):
        rest = (1.0 - sum(probs.values())) / (tokenizer.vocab_size - len(probs))
        out[0, t] = rest
        for token, p in probs.items():
            out[0, t, tokenizer.tokens.index(token)] = p
    return out.log()


def spelled(text: str) -> list[dict[str, float]]:
    """Two confident frames per character (``|`` between words), a blank after each character."""
    frames = []
    for char in "|".join(text.split()):
        frames += [{char: 0.9}, {char: 0.9}, {"<blank>": 0.9}]
    return frames


def test_clear_speech_decodes_to_its_words(lm_dir):
    tokenizer = CharTokenizer.train(TEXT)
    decoder = LexiconDecoder(tokenizer.tokens, lm_dir, beam_size=20, lm_weight=1.0)
    log_probs = torch.cat([emissions(tokenizer, spelled("THE CAT SAT")),
                           emissions(tokenizer, spelled("A DOG") + [{"<blank>": 0.9}] * 18)])
    assert decoder(log_probs, torch.tensor([33, 15])) == ["THE CAT SAT", "A DOG"]


def test_only_lexicon_words_come_out_and_the_lm_settles_ambiguity(lm_dir):
    tokenizer = CharTokenizer.train(TEXT + ["K"])
    frames = spelled("THE CAT SAT")              # three frames per character of "THE|CAT|SAT"
    frames[12:14] = [{"C": 0.45, "K": 0.5}] * 2  # "KAT" is acoustically likelier, but no word
    frames[24:26] = [{"S": 0.4, "M": 0.5}] * 2   # "MAT" a little likelier than "SAT"
    log_probs = emissions(tokenizer, frames)
    lengths = torch.tensor([len(frames)])
    decoder = LexiconDecoder(tokenizer.tokens, lm_dir, beam_size=20, lm_weight=0.0)
    assert decoder(log_probs, lengths) == ["THE CAT MAT"]
    assert LexiconDecoder(tokenizer.tokens, lm_dir, beam_size=20, lm_weight=2.0)(log_probs, lengths) == ["THE CAT SAT"]
    decoder.set_weights(2.0, 0.0)   # the same LM and trie, new weights: as a decoder built with them
    assert decoder(log_probs, lengths) == ["THE CAT SAT"] and (decoder.lm_weight, decoder.word_score) == (2.0, 0.0)
    with pytest.raises(ValueError, match="over 5 tokens, the decoder has"):
        decoder(log_probs[..., :5], lengths)


def test_words_the_tokenizer_cannot_spell_are_left_out_with_a_warning(lm_dir, caplog):
    """They were counted at the INFO level, which decode_ctc does not show: lost words went unnoticed."""
    tokenizer = CharTokenizer.train(["THE CAT SAT ON A MAT"])   # no D, G, L
    with caplog.at_level(logging.WARNING, logger="audiossl.text.lexicon_decode"):
        decoder = LexiconDecoder(tokenizer.tokens, lm_dir, beam_size=20, lm_weight=1.0)
    assert [r.getMessage() for r in caplog.records] == [
        f"{lm_dir}/lexicon.txt: 3 of 10 words use characters the tokenizer lacks (D G L) and are left out, never "
        "decoded: AND, DOG, LOG"]
    assert decoder(emissions(tokenizer, spelled("A CAT")), torch.tensor([15])) == ["A CAT"]
    with pytest.raises(ValueError, match="no word can be spelled"):
        LexiconDecoder(CharTokenizer.train(["XYZ"]).tokens, lm_dir)


def test_bad_setups_are_named(lm_dir, tmp_path):
    with pytest.raises(ValueError, match="needs a character tokenizer"):
        LexiconDecoder(["<blank>", "<unk>", "▁THE"], lm_dir)
    with pytest.raises(FileNotFoundError, match="lm.arpa: missing"):
        LexiconDecoder(CharTokenizer.train(TEXT).tokens, tmp_path / "nowhere")


def test_a_last_letter_on_the_last_frame_still_ends_its_word(lm_dir):
    """CTC targets have no ``|`` after the last word; the search supplies it."""
    tokenizer = CharTokenizer.train(TEXT)
    frames = spelled("A CAT")[:-2]          # "T" on the very last frame
    decoder = LexiconDecoder(tokenizer.tokens, lm_dir, beam_size=20, lm_weight=1.0)
    assert decoder(emissions(tokenizer, frames), torch.tensor([len(frames)])) == ["A CAT"]
    padded, lengths = with_final_boundary(torch.zeros(2, 4, 5), torch.tensor([4, 2]))
    assert padded.shape == (2, 5, 5) and lengths.tolist() == [5, 3]
    assert padded[0, 4].argmax() == 2 and padded[1, 2].argmax() == 2 and padded[1, 3:].eq(0).all()
