import pytest
import torch

from audiossl.nn.augment import random_warp_factors, warp_frequency_axis


def test_factor_one_is_identity_and_factors_apply_per_item():
    features = torch.randn(2, 7, 80, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(warp_frequency_axis(features, torch.ones(2)), features)
    warped = warp_frequency_axis(features, torch.tensor([0.5, 1.25]))
    assert torch.allclose(warped[0, :, 10], features[0, :, 5])
    assert torch.allclose(warped[0, :, 11], 0.5 * (features[0, :, 5] + features[0, :, 6]))
    assert torch.allclose(warped[1, :, 8], features[1, :, 10])
    assert torch.allclose(warped[1, :, 79], features[1, :, 79])  # read past the top: clamped


def test_a_spectral_peak_moves_the_other_way_to_the_factor():
    features = torch.zeros(1, 3, 80)
    features[..., 40] = 1.0
    for factor, expected in ((0.8, 50), (1.25, 32)):
        peak = warp_frequency_axis(features, torch.tensor([factor]))[0, 0].argmax()
        assert int(peak) == expected


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="factors"):
        warp_frequency_axis(torch.zeros(2, 3, 80), torch.ones(3))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_keep_their_dtype_and_interpolate_in_fp32(dtype):
    features = torch.randn(1, 4, 80, generator=torch.Generator().manual_seed(1))
    factors = torch.tensor([0.93])
    warped = warp_frequency_axis(features.to(dtype), factors)
    assert warped.dtype == dtype
    expected = warp_frequency_axis(features.to(dtype).float(), factors).to(dtype)
    assert torch.equal(warped, expected)


def test_random_factors_are_seeded_and_within_the_spread():
    first = random_warp_factors(1000, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(first, random_warp_factors(1000, 0.1, torch.Generator().manual_seed(0)))
    assert 0.9 <= float(first.min()) < 0.91 and 1.09 < float(first.max()) <= 1.1
