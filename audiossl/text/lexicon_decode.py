"""Lexicon-constrained CTC beam search with a word n-gram LM (flashlight-text, through torchaudio).

An LM dir, as :mod:`audiossl.bin.train_lm` writes it, holds ``lm.arpa`` (a word n-gram
model) and ``lexicon.txt`` (each word spelled in characters and ended by ``|``). The
search only emits lexicon words, scoring each hypothesis as
``log p_ctc + lm_weight * log10 p_lm + word_score * words`` (KenLM's scores are log10); it needs a character
tokenizer, whose ``|`` is the word boundary the lexicon spells.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor
from torchaudio.models.decoder import ctc_decoder

from audiossl.text.ngram import UNK
from audiossl.text.tokenizer import CharTokenizer

log = logging.getLogger(__name__)

LM_FILE, LEXICON_FILE = "lm.arpa", "lexicon.txt"


def check_lm_dir(lm_dir: str | Path) -> Path:
    """``lm_dir`` as a Path; FileNotFoundError naming the file when it lacks the LM or the lexicon."""
    lm_dir = Path(lm_dir)
    for name in (LM_FILE, LEXICON_FILE):
        if not (lm_dir / name).is_file():
            raise FileNotFoundError(f"{lm_dir / name}: missing; audiossl.bin.train_lm writes an LM dir")
    return lm_dir


class LexiconDecoder:
    """Decode CTC log-probabilities into lexicon words scored by an n-gram LM.

    Args:
        tokens: the character tokenizer's tokens (``CharTokenizer.tokens``: ``<blank>``,
            ``<unk>``, ``|``, letters).
        lm_dir: a dir with ``lm.arpa`` and ``lexicon.txt``. Lexicon words with a character
            the tokenizer lacks cannot be spelled and are left out (the count is logged).
        beam_size: hypotheses kept per frame.
        token_beam: the likeliest tokens of each frame that may extend a hypothesis (None: all).
        lm_weight: weight of the LM log-probability.
        word_score: added per emitted word (positive values favour more words).
    """

    def __init__(self, tokens: list[str], lm_dir: str | Path, beam_size: int = 100,
                 lm_weight: float = 2.0, word_score: float = 0.0, token_beam: int | None = 10) -> None:
        if tuple(tokens[:3]) != CharTokenizer.SPECIALS:
            raise ValueError("the lexicon search needs a character tokenizer (tokens <blank> <unk> | ...), "
                             f"got one starting {tokens[:3]}")
        lm_dir = check_lm_dir(lm_dir)
        letters = set(tokens[3:])
        kept, dropped = [], 0
        for line in (lm_dir / LEXICON_FILE).read_text(encoding="utf-8").splitlines():
            word = line.split("\t", 1)[0]
            if set(word) <= letters:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            log.info("%s: %d of %d words use characters the tokenizer lacks and are left out",
                     lm_dir / LEXICON_FILE, dropped, dropped + len(kept))
        if not kept:
            raise ValueError(f"{lm_dir / LEXICON_FILE}: no word can be spelled with the tokenizer's characters")
        with tempfile.NamedTemporaryFile("w", suffix=".lexicon.txt", encoding="utf-8") as lexicon:
            lexicon.write("\n".join(kept) + "\n")
            lexicon.flush()
            with _quiet_stderr():  # KenLM draws a progress bar on fd 2 while it reads the ARPA file
                self._decoder = ctc_decoder(lexicon=lexicon.name, tokens=list(tokens), lm=str(lm_dir / LM_FILE),
                                            beam_size=beam_size, beam_size_token=token_beam,
                                            lm_weight=lm_weight, word_score=word_score,
                                            sil_score=0.0, blank_token="<blank>", sil_token="|", unk_word=UNK)

    def __call__(self, log_probs: Tensor, lengths: Tensor) -> list[str]:
        """Best word sequence of each utterance.

        Args:
            log_probs: (B, T, V) log-probabilities.
            lengths: (B,) valid frames per utterance.

        Returns:
            B transcripts (words joined by single spaces).
        """
        emissions, lengths = with_final_boundary(log_probs.detach().float().cpu(), lengths.detach().cpu())
        results = self._decoder(emissions, lengths.to(torch.int32))
        return [" ".join(hyps[0].words) if hyps else "" for hyps in results]


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
