"""CTC decoding: greedy on hand-built matrices, prefix beam search against brute force."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from audiossl.text.ctc_decode import beam_search_decode, greedy_decode, prefix_beam_search


def one_hot_log_probs(paths: list[list[int]], vocab: int, peak: float = 0.9) -> torch.Tensor:
    """(B, T, V) log-probabilities putting ``peak`` on each frame's token of ``paths``."""
    probs = torch.full((len(paths), len(paths[0]), vocab), (1 - peak) / (vocab - 1))
    for b, path in enumerate(paths):
        for t, token in enumerate(path):
            probs[b, t, token] = peak
    return probs.log()


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    """CTC's many-to-one map: merge repeats, then drop blanks."""
    return tuple(token for n, token in enumerate(path) if token != 0 and (n == 0 or path[n - 1] != token))


def test_greedy_merges_repeats_and_keeps_repeats_split_by_blank() -> None:
    log_probs = one_hot_log_probs([[1, 1, 0, 1, 2, 2, 0, 0], [0, 2, 2, 2, 0, 1, 1, 2]], vocab=3)
    assert greedy_decode(log_probs) == [[1, 1, 2], [2, 1, 2]]
    # Frames beyond each length are ignored.
    assert greedy_decode(log_probs, torch.tensor([3, 6])) == [[1], [2, 1]]
    assert greedy_decode(log_probs, torch.tensor([0, 8])) == [[], [2, 1, 2]]
    with pytest.raises(ValueError):
        greedy_decode(log_probs, torch.tensor([9, 8]))


def test_beam_finds_most_probable_labelling_where_greedy_fails() -> None:
    # Two frames, P(blank) = 0.6, P(a) = 0.4 each: the best path is "- -" (0.36), so greedy
    # outputs nothing, but "a" has paths "a a", "a -", "- a" totalling 0.16 + 0.24 + 0.24 = 0.64.
    log_probs = torch.tensor([[0.6, 0.4], [0.6, 0.4]]).log()
    assert greedy_decode(log_probs[None]) == [[]]
    hyps = prefix_beam_search(log_probs, beam_size=4)
    assert [h for h, _ in hyps] == [[1], []]
    assert hyps[0][1] == pytest.approx(math.log(0.64))
    assert hyps[1][1] == pytest.approx(math.log(0.36))
    assert beam_search_decode(log_probs[None], beam_size=4) == [[1]]


def test_beam_scores_match_brute_force_enumeration() -> None:
    gen = torch.Generator().manual_seed(0)
    log_probs = torch.randn(4, 3, generator=gen, dtype=torch.float64).mul(1.5).log_softmax(-1)
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(3), repeat=4):
        score = sum(log_probs[t, token].item() for t, token in enumerate(path))
        totals[collapse(path)] = np.logaddexp(totals.get(collapse(path), -math.inf), score)
    hyps = prefix_beam_search(log_probs, beam_size=100, prune_threshold=-math.inf)
    assert {tuple(h): s for h, s in hyps} == pytest.approx(totals)
    assert [s for _, s in hyps] == pytest.approx(sorted(totals.values(), reverse=True))
    assert np.logaddexp.reduce([s for _, s in hyps]) == pytest.approx(0.0)  # all labellings: probability 1
    # With a beam of 1 the best hypothesis is still a real labelling with its exact score or less.
    (best, score), = prefix_beam_search(log_probs, beam_size=1, prune_threshold=-math.inf)
    assert score <= totals[tuple(best)] + 1e-9


def test_beam_handles_repeated_tokens() -> None:
    log_probs = one_hot_log_probs([[1, 0, 1, 1, 2, 2], [1, 1, 1, 2, 2, 2]], vocab=3, peak=0.95)
    assert beam_search_decode(log_probs, beam_size=8) == [[1, 1, 2], [1, 2]]


def test_beam_agrees_with_greedy_on_peaked_distributions() -> None:
    gen = torch.Generator().manual_seed(1)
    paths = torch.randint(0, 6, (5, 40), generator=gen)
    log_probs = one_hot_log_probs(paths.tolist(), vocab=6, peak=0.9)
    lengths = torch.tensor([40, 33, 17, 1, 0])
    greedy = greedy_decode(log_probs, lengths)
    assert beam_search_decode(log_probs, lengths, beam_size=8) == greedy
    assert beam_search_decode(log_probs.to(torch.bfloat16), lengths, beam_size=4) == greedy
    assert greedy[4] == [] and len(greedy[0]) > 10


def test_prefix_beam_search_accepts_numpy_and_prunes() -> None:
    log_probs = one_hot_log_probs([[0, 1, 2, 2, 0, 1]], vocab=3)[0]
    from_tensor = prefix_beam_search(log_probs, beam_size=3)
    from_numpy = prefix_beam_search(log_probs.numpy(), beam_size=3)
    assert from_tensor == from_numpy and from_tensor[0][0] == [1, 2, 1]
    assert len(from_tensor) == 3
    # Pruning every token but each frame's best leaves only the best path's labelling.
    (labels, score), = prefix_beam_search(log_probs, beam_size=3, prune_threshold=0.0)
    assert labels == [1, 2, 1] and score == pytest.approx(6 * math.log(0.9))
    with pytest.raises(ValueError):
        prefix_beam_search(log_probs[None])
