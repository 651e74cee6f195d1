"""The Gumbel product quantizer: straight-through hard codes, seeded noise, perplexities."""
from __future__ import annotations

import math

import pytest
import torch

from audiossl.nn.quantizer import GumbelProductQuantizer, perplexity


def quantizer(groups=2, entries=5, dim=8):
    torch.manual_seed(0)
    return GumbelProductQuantizer(input_dim=6, num_groups=groups, num_entries=entries, codebook_dim=dim)


def test_eval_mode_picks_the_argmax_entry_of_each_group():
    q = quantizer().eval()
    x = torch.randn(7, 6)
    out = q(x, temperature=2.0)
    logits = q.weight_proj(x).view(7, 2, 5)
    assert torch.equal(out.codes, logits.argmax(-1))
    entries = q.codevectors.view(2, 5, 4)
    expected = torch.cat([entries[0, out.codes[:, 0]], entries[1, out.codes[:, 1]]], dim=1)
    torch.testing.assert_close(out.vectors, expected)


def test_training_is_hard_forward_soft_backward_and_seeded():
    q = quantizer().train()
    x = torch.randn(50, 6, requires_grad=True)
    state = torch.get_rng_state()
    a = q(x, 0.5, torch.Generator().manual_seed(3))
    b = q(x, 0.5, torch.Generator().manual_seed(3))
    c = q(x, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is never drawn from
    assert torch.equal(a.vectors, b.vectors) and not torch.equal(a.codes, c.codes)
    entries = q.codevectors.view(2, 5, 4)
    hard = torch.cat([entries[0, a.codes[:, 0]], entries[1, a.codes[:, 1]]], dim=1)
    torch.testing.assert_close(a.vectors, hard)  # forward: exactly the chosen entries
    a.vectors.sum().backward()
    assert x.grad.abs().sum() > 0 and q.weight_proj.weight.grad.abs().sum() > 0  # through the soft choice
    with pytest.raises(ValueError, match="pass a generator"):
        q(x, 0.5)


def test_hard_codes_are_samples_of_the_softmax():
    """Gumbel-max: in training the chosen entries are drawn from softmax(logits), whatever the temperature."""
    q = quantizer(groups=1, entries=4, dim=4).train()
    with torch.no_grad():
        q.weight_proj.weight.mul_(0.3)
    x = torch.randn(1, 6).expand(20000, 6)
    probs = q.weight_proj(x[:1]).softmax(-1)[0]
    for temperature in (0.5, 2.0):
        codes = q(x, temperature, torch.Generator().manual_seed(0)).codes.flatten()
        torch.testing.assert_close(torch.bincount(codes, minlength=4) / 20000.0, probs.detach(), atol=0.015, rtol=0)


def test_perplexity_counts_the_entries_in_use():
    assert perplexity(torch.full((2, 8), 1 / 8)).item() == pytest.approx(16.0, rel=1e-5)
    one_hot = torch.zeros(2, 8)
    one_hot[:, 3] = 1.0
    assert perplexity(one_hot).item() == pytest.approx(2.0, rel=1e-5)
    q = quantizer(groups=2, entries=5).eval()
    out = q(torch.randn(300, 6), 2.0)
    assert 2.0 <= out.code_perplexity.item() <= 10.0 + 1e-4
    assert out.prob_perplexity.item() <= 10.0 + 1e-4 and not math.isnan(out.prob_perplexity.item())
