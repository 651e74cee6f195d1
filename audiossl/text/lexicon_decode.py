"""Lexicon-constrained CTC beam search with a word n-gram LM (flashlight-text).

An LM dir, as :mod:`audiossl.bin.train_lm` writes it, holds ``lm.arpa`` (a word n-gram
model) and ``lexicon.txt`` (each word spelled in characters and ended by ``|``). The
search only emits lexicon words, scoring each hypothesis as
``log p_ctc + lm_weight * log10 p_lm + word_score * words`` (KenLM's scores are log10); it needs a character
tokenizer, whose ``|`` is the word boundary the lexicon spells. A bad LM dir or tokenizer raises
:class:`~audiossl.text.ngram.LMError`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import torch
from flashlight.lib.text.decoder import (CriterionType, LexiconDecoder as FlashlightLexiconDecoder,
                                         LexiconDecoderOptions, SmearingMode, Trie)
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary, create_word_dict
from torch import Tensor

from audiossl.text.ngram import LEXICON_FILE, LM_FILE, UNK, LMError
from audiossl.text.tokenizer import BLANK_ID, CharTokenizer

log = logging.getLogger(__name__)


def check_lm_dir(lm_dir: str | Path) -> Path:
    """``lm_dir`` as a Path; FileNotFoundError naming the file when it lacks the LM or the lexicon."""
    lm_dir = Path(lm_dir)
    for name in (LM_FILE, LEXICON_FILE):
        if not (lm_dir / name).is_file():
            raise FileNotFoundError(f"{lm_dir / name}: missing; audiossl.bin.train_lm writes an LM dir")
    return lm_dir


def check_char_tokens(tokens: list[str]) -> None:
    """:class:`LMError` unless ``tokens`` are a character tokenizer's, which the lexicon spells."""
    if tuple(tokens[:3]) != CharTokenizer.SPECIALS:
        raise LMError("the lexicon search needs a character tokenizer (tokens <blank> <unk> | ...), "
                      f"got one starting {tokens[:3]}")


def read_lexicon(path: Path) -> list[tuple[str, list[str]]]:
    """``(word, spelling tokens)`` of each line ``word<TAB>t1 t2 ... |``; LMError naming a malformed line."""
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            word, tab, spelling = line.rstrip("\n").partition("\t")
            if not tab or not word or not spelling.split():
                raise LMError(f"{path}:{number}: expected 'word<TAB>spelling', got {line.rstrip()!r}")
            entries.append((word, spelling.split()))
    return entries


class LexiconDecoder:
    """Decode CTC log-probabilities into lexicon words scored by an n-gram LM.

    The LM and the lexicon's trie are built once; :meth:`set_weights` changes the LM weight
    and word score over them, so that a grid of weights costs one LM load.

    Args:
        tokens: the character tokenizer's tokens (``CharTokenizer.tokens``: ``<blank>``,
            ``<unk>``, ``|``, letters).
        lm_dir: a dir with ``lm.arpa`` and ``lexicon.txt``. Lexicon words with a character
            the tokenizer lacks cannot be spelled and are left out (a warning names them).
        beam_size: hypotheses kept per frame.
        lm_weight: weight of the LM log-probability.
        word_score: added per emitted word (positive values favour more words).
        token_beam: the likeliest tokens of each frame that may extend a hypothesis (None: all).

    Raises:
        LMError: not a character tokenizer, a malformed lexicon or an LM file KenLM cannot read.
        FileNotFoundError: ``lm_dir`` lacks one of its files.
    """

    def __init__(self, tokens: list[str], lm_dir: str | Path, beam_size: int = 100,
                 lm_weight: float = 2.0, word_score: float = 0.0, token_beam: int | None = 10) -> None:
        check_char_tokens(tokens)
        lm_dir = check_lm_dir(lm_dir)
        letters = set(tokens[3:])
        spellings, dropped = {}, []
        for word, spelling in read_lexicon(lm_dir / LEXICON_FILE):
            if set(word) <= letters:
                spellings[word] = [spelling]
            else:
                dropped.append(word)
        if dropped:  # a warning: an LM text normalised otherwise than the transcripts (case, accents) loses words
            lacking = sorted({c for word in dropped for c in word} - letters)
            log.warning("%s: %d of %d words use characters the tokenizer lacks (%s) and are left out, never "
                        "decoded: %s%s", lm_dir / LEXICON_FILE, len(dropped), len(dropped) + len(spellings),
                        " ".join(lacking[:20]) + (" ..." if len(lacking) > 20 else ""), ", ".join(dropped[:10]),
                        ", ..." if len(dropped) > 10 else "")
        if not spellings:
            raise LMError(f"{lm_dir / LEXICON_FILE}: no word can be spelled with the tokenizer's characters")
        self.tokens = list(tokens)
        self.words = create_word_dict({**spellings, UNK: []})  # the LM's <unk>, never spelled
        try:
            with _quiet_stderr():  # KenLM draws a progress bar on fd 2 while it reads the ARPA file
                self._lm = KenLM(str(lm_dir / LM_FILE), self.words)
        except RuntimeError as err:
            reason = str(err).strip().rpartition("\n")[2]  # the lines before name KenLM's C++ source
            raise LMError(f"{lm_dir / LM_FILE}: KenLM cannot read it: {reason}") from None
        token_ids = Dictionary(self.tokens)
        self._trie = Trie(len(self.tokens), CharTokenizer.WORD_ID)
        start = self._lm.start(False)
        for word, [spelling] in spellings.items():
            word_id = self.words.get_index(word)
            _, score = self._lm.score(start, word_id)  # the word's unigram score, smeared over its prefixes
            self._trie.insert([token_ids.get_index(t) for t in spelling], word_id, score)
        self._trie.smear(SmearingMode.MAX)
        self.beam_size, self.token_beam = beam_size, token_beam
        self.set_weights(lm_weight, word_score)

    def set_weights(self, lm_weight: float, word_score: float) -> None:
        """Use another LM weight and word score from now on (the LM and trie are kept)."""
        options = LexiconDecoderOptions(
            beam_size=self.beam_size, beam_size_token=self.token_beam or len(self.tokens), beam_threshold=50.0,
            lm_weight=lm_weight, word_score=word_score, unk_score=float("-inf"), sil_score=0.0, log_add=False,
            criterion_type=CriterionType.CTC)
        self.lm_weight, self.word_score = lm_weight, word_score
        self._search = FlashlightLexiconDecoder(options, self._trie, self._lm, CharTokenizer.WORD_ID,
                                                BLANK_ID, self.words.get_index(UNK), [], False)

    def __call__(self, log_probs: Tensor, lengths: Tensor) -> list[str]:
        """Best word sequence of each utterance.

        Args:
            log_probs: (B, T, V) log-probabilities.
            lengths: (B,) valid frames per utterance.

        Returns:
            B transcripts (words joined by single spaces).
        """
        if log_probs.shape[-1] != len(self.tokens):
            raise ValueError(f"log-probabilities over {log_probs.shape[-1]} tokens, the decoder has {len(self.tokens)}")
        emissions, lengths = with_final_boundary(log_probs.detach().float().cpu(), lengths.detach().cpu())
        out = []
        for b in range(emissions.shape[0]):
            frames = emissions[b]  # contiguous (T + 1, V) float32 rows: the search reads them by address
            results = self._search.decode(frames.data_ptr(), int(lengths[b]), frames.shape[1])
            out.append(" ".join(self.words.get_entry(w) for w in results[0].words if w >= 0) if results else "")
        return out


def with_final_boundary(log_probs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Each utterance with one more frame that is surely ``|``, just after its last one.

    The lexicon spells each word with a closing ``|``, but CTC targets have no ``|`` after the
    last word, so a last word whose final letter is on the last frame could never end.

    Args:
        log_probs: (B, T, V); lengths: (B,) valid frames.

    Returns:
        (B, T + 1, V) log-probabilities and (B,) lengths, each one frame longer.
    """
    batch, frames, vocab = log_probs.shape
    out = torch.cat([log_probs, log_probs.new_zeros(batch, 1, vocab)], dim=1)
    boundary = torch.full((vocab,), -1e4, dtype=out.dtype)
    boundary[CharTokenizer.WORD_ID] = 0.0
    out[torch.arange(batch), lengths.long()] = boundary
    return out.contiguous(), lengths + 1


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null (C++ code writes there directly); errors still raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
