"""CTC decoding: greedy (best path) and prefix beam search, the blank at id 0.

Inputs are per-frame log-probabilities (``log_softmax`` of the CTC head); outputs are
token ids without blanks, ready for ``Tokenizer.decode``.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from audiossl.text.tokenizer import BLANK_ID

NEG_INF = float("-inf")


def greedy_decode(log_probs: Tensor, lengths: Tensor | None = None) -> list[list[int]]:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks.

    Args:
        log_probs: (B, T, V) scores (log-probabilities or logits: only the argmax matters).
        lengths: (B,) valid frames per utterance; frames beyond are ignored. None: all T.

    Returns:
        B lists of token ids.
    """
    best = log_probs.detach().argmax(dim=-1).cpu()
    lengths = _lengths(lengths, best.shape)
    out = []
    for b in range(best.shape[0]):
        path = torch.unique_consecutive(best[b, : lengths[b]])
        out.append(path[path != BLANK_ID].tolist())
    return out


def prefix_beam_search(log_probs: Tensor | np.ndarray, beam_size: int = 8,
                       prune_threshold: float = -10.0) -> list[tuple[list[int], float]]:
    """CTC prefix beam search (Hannun et al. 2014), no language model.

    Each prefix keeps two log-probabilities: of the alignments so far that end in a blank
    and of those that end in its last token, so that a repeated token extends the prefix
    only after a blank and otherwise merges into it. Without pruning (``beam_size`` at
    least the number of labellings, ``prune_threshold=-inf``) the scores are exact: the
    log of the summed probabilities of all alignments of each labelling.

    Args:
        log_probs: (T, V) log-probabilities of one utterance (tensor or numpy array).
        beam_size: prefixes kept after each frame; also the most tokens tried per frame.
        prune_threshold: tokens whose frame log-probability is below this are not tried
            (the frame's best token always is).

    Returns:
        Up to ``beam_size`` ``(token ids, log-probability)`` pairs, best first.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be positive, got {beam_size}")
    scores = _as_numpy(log_probs)
    if scores.ndim != 2:
        raise ValueError(f"expected (T, V) log-probabilities, got shape {scores.shape}")
    num_tokens = min(beam_size, scores.shape[1])
    candidates = np.argsort(-scores, axis=1, kind="stable")[:, :num_tokens]
    # prefix -> [log p(alignments ending in blank), log p(alignments ending in the last token)]
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, NEG_INF]}
    for frame, tokens in zip(scores.tolist(), candidates.tolist()):
        tried = [c for c in tokens if frame[c] >= prune_threshold] or tokens[:1]
        next_beams: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_blank, p_token) in beams.items():
            last = prefix[-1] if prefix else None
            p_prefix = _logaddexp(p_blank, p_token)
            for c in tried:
                p = frame[c]
                if c == BLANK_ID:
                    entry = next_beams.setdefault(prefix, [NEG_INF, NEG_INF])
                    entry[0] = _logaddexp(entry[0], p_prefix + p)
                    continue
                extended = next_beams.setdefault(prefix + (c,), [NEG_INF, NEG_INF])
                if c == last:
                    # "a a" needs a blank between the two: only blank-ending alignments extend.
                    extended[1] = _logaddexp(extended[1], p_blank + p)
                    entry = next_beams.setdefault(prefix, [NEG_INF, NEG_INF])
                    entry[1] = _logaddexp(entry[1], p_token + p)
                else:
                    extended[1] = _logaddexp(extended[1], p_prefix + p)
        ranked = sorted(((_logaddexp(*p), prefix, p) for prefix, p in next_beams.items()),
                        key=lambda r: r[0], reverse=True)
        beams = {prefix: p for score, prefix, p in ranked[:beam_size] if score > NEG_INF}
        if not beams:
            raise ValueError("every prefix has probability 0: are the log-probabilities finite?")
    return [(list(prefix), _logaddexp(*p)) for prefix, p in beams.items()]


def beam_search_decode(log_probs: Tensor, lengths: Tensor | None = None, beam_size: int = 8,
                       prune_threshold: float = -10.0) -> list[list[int]]:
    """:func:`prefix_beam_search` on each utterance of a batch, keeping the best labelling.

    Args:
        log_probs: (B, T, V) log-probabilities.
        lengths: (B,) valid frames per utterance; frames beyond are ignored. None: all T.

    Returns:
        B lists of token ids.
    """
    scores = _as_numpy(log_probs)
    lengths = _lengths(lengths, scores.shape[:2])
    return [prefix_beam_search(scores[b, : lengths[b]], beam_size, prune_threshold)[0][0]
            for b in range(scores.shape[0])]


def _logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) of two Python floats (faster than numpy on scalars)."""
    if a < b:
        a, b = b, a
    if b == NEG_INF:
        return a
    return a + math.log1p(math.exp(b - a))


def _as_numpy(log_probs: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(log_probs, Tensor):
        return log_probs.detach().cpu().double().numpy()
    return np.asarray(log_probs, dtype=np.float64)


def _lengths(lengths: Tensor | None, shape: tuple[int, ...]) -> list[int]:
    batch, frames = shape[0], shape[1]
    if lengths is None:
        return [frames] * batch
    out = [int(n) for n in lengths]
    if len(out) != batch or any(n < 0 or n > frames for n in out):
        raise ValueError(f"lengths {out} do not fit a batch of {batch} utterances of {frames} frames")
    return out
