import torch
import pytest

from audiossl.nn.masking import compute_span_mask


def _mask(seed, lengths, time, prob=0.8, span=10, min_masks=2):
    return compute_span_mask(
        (len(lengths), time), torch.tensor(lengths), prob, span, min_masks, torch.Generator().manual_seed(seed)
    )


def test_same_seed_same_mask_and_different_seed_differs():
    a = _mask(3, [500, 321, 64], 500)
    b = _mask(3, [500, 321, 64], 500)
    c = _mask(4, [500, 321, 64], 500)
    assert a.dtype == torch.bool and a.shape == (3, 500)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_global_rng_is_untouched():
    state = torch.get_rng_state()
    _mask(0, [200, 100], 200)
    assert torch.equal(state, torch.get_rng_state())


def test_padding_never_masked():
    lengths = [400, 37, 12, 5, 0]
    mask = _mask(1, lengths, 400, prob=1.0, min_masks=3)
    for row, n in zip(mask, lengths):
        assert not row[n:].any()
    assert mask[1, :37].any() and mask[3, :5].any()


def test_masked_fraction_matches_overlapping_spans():
    # p = 0.8 / 10 starts per frame, each covering 10 frames: 1 - (1 - 0.08) ** 10 = 0.566,
    # slightly less because starts are limited to [0, n - 10).
    lengths = [2000] * 64
    mask = _mask(0, lengths, 2000)
    fraction = mask.float().mean().item()
    assert 0.54 < fraction < 0.58
    # every masked run is a union of whole spans: run lengths are >= span length
    for row in mask[:8].int():
        edges = torch.diff(torch.cat([torch.zeros(1, dtype=torch.int), row, torch.zeros(1, dtype=torch.int)]))
        run_lengths = (edges == -1).nonzero().flatten() - (edges == 1).nonzero().flatten()
        assert (run_lengths >= 10).all()


def test_number_of_spans_without_overlap_room():
    # span_length 1: every start is its own frame, so counts are exact: int(p * n + u) in {floor, ceil}
    lengths = [100, 57]
    mask = _mask(5, lengths, 100, prob=0.3, span=1, min_masks=0)
    counts = mask.sum(dim=1).tolist()
    assert counts[0] == 30
    assert counts[1] in (17, 18)


def test_min_masks_applies_to_short_items():
    mask = _mask(2, [30], 30, prob=0.0, span=10, min_masks=2)
    assert mask.sum() >= 10


@pytest.mark.parametrize("bad", [0, -1])
def test_rejects_bad_span_length(bad):
    with pytest.raises(ValueError):
        _mask(0, [10], 10, span=bad)
