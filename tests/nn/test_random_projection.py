"""The random-projection quantizer: seeded, frozen, cosine-nearest ids in fp32."""
from __future__ import annotations

import math

import pytest
import torch

from audiossl.nn.random_projection import RandomProjectionQuantizer


def quantizer(seed=0, num_codebooks=2):
    return RandomProjectionQuantizer(input_dim=24, codebook_dim=8, codebook_size=50, num_codebooks=num_codebooks,
                                     seed=seed)


def test_the_seed_determines_projection_codebooks_and_ids():
    a, b, other = quantizer(3), quantizer(3), quantizer(4)
    x = torch.randn(40, 24)
    torch.testing.assert_close(a.projection, b.projection, rtol=0, atol=0)
    torch.testing.assert_close(a.codebooks, b.codebooks, rtol=0, atol=0)
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a.projection, other.projection) and not torch.equal(a(x), other(x))
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(quantizer(3).projection, a.projection)


def test_projection_is_xavier_uniform_and_codebooks_unit_normal_directions():
    big = RandomProjectionQuantizer(input_dim=320, codebook_dim=16, codebook_size=8192, num_codebooks=1, seed=0)
    bound = math.sqrt(6 / (320 + 16))
    assert big.projection.shape == (1, 320, 16) and big.codebooks.shape == (1, 8192, 16)
    assert big.projection.abs().max() <= bound and big.projection.abs().max() > 0.99 * bound
    assert big.projection.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    torch.testing.assert_close(big.codebooks.norm(dim=-1), torch.ones(1, 8192))
    assert big.codebooks.mean().abs() < 0.01  # standard normal draws, normalised: no preferred direction


def test_ids_are_the_cosine_nearest_entries_of_each_codebook():
    q = quantizer(1)
    x = torch.randn(30, 24)
    ids = q(x)
    assert ids.shape == (30, 2) and ids.dtype == torch.long
    for n in range(30):
        for g in range(2):
            projected = x[n] @ q.projection[g]
            cosines = [torch.nn.functional.cosine_similarity(projected, entry, dim=0) for entry in q.codebooks[g]]
            assert int(torch.stack(cosines).argmax()) == int(ids[n, g])
    assert torch.equal(q(3.0 * x), ids)  # cosine: the input scale does not matter


def test_buffers_are_persistent_and_never_parameters():
    q = quantizer()
    assert list(q.parameters()) == []
    assert set(q.state_dict()) == {"projection", "codebooks"}
    assert not q.projection.requires_grad and not q.codebooks.requires_grad
    x = torch.randn(5, 24, requires_grad=True)
    assert not q(x).requires_grad
    restored = quantizer(seed=9)
    restored.load_state_dict(q.state_dict())  # a checkpoint's buffers win over the rebuilt ones
    assert torch.equal(restored(x.detach()), q(x.detach()))


def test_autocast_computes_in_fp32():
    q = quantizer()
    x = torch.randn(200, 24)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        ids = q(x)
    assert torch.equal(ids, q(x))


def test_wrong_input_size_is_named():
    with pytest.raises(ValueError, match=r"expected inputs \(N, 24\), got shape \(3, 23\)"):
        quantizer()(torch.randn(3, 23))
