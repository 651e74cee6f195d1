"""Input perturbations applied while training."""
from __future__ import annotations

import torch
from torch import Tensor


def random_warp_factors(batch_size: int, spread: float, generator: torch.Generator) -> Tensor:
    """``(batch_size,)`` factors drawn uniformly from ``[1 - spread, 1 + spread]``, on the generator's device."""
    uniform = torch.rand(batch_size, generator=generator, device=generator.device)
    return 1.0 - spread + 2.0 * spread * uniform


def warp_frequency_axis(features: Tensor, factors: Tensor) -> Tensor:
    """Scale the bin index of each item's frequency axis: ``(B, T, F)``, ``(B,)`` → ``(B, T, F)``.

    Output bin ``f`` of item ``b`` reads input bin ``f · factors[b]`` (linear interpolation in
    fp32, clamped to the top bin; the result has ``features``' dtype and device). A factor
    below 1 moves spectral peaks up, above 1 moves them down; above 1 the top bins repeat the
    last one, below 1 the top input bins are dropped. On log-mel features this is a cheap
    stand-in for vocal tract length perturbation, anchored at the lowest bin rather than at
    0 Hz, and so stronger in Hz at high frequencies than at low ones.
    """
    if features.ndim != 3 or factors.shape != features.shape[:1]:
        raise ValueError(f"expected features (B, T, F) and factors (B,), got {tuple(features.shape)}, "
                         f"{tuple(factors.shape)}")
    num_bins = features.shape[-1]
    bins = torch.arange(num_bins, device=features.device, dtype=torch.float32)
    source = (bins[None, :] * factors.to(features.device, torch.float32)[:, None]).clamp(0, num_bins - 1)
    low = source.floor().long()
    high = (low + 1).clamp(max=num_bins - 1)
    weight = (source - low)[:, None, :]
    expand = (-1, features.shape[1], -1)
    below = features.gather(2, low[:, None, :].expand(expand)).float()
    above = features.gather(2, high[:, None, :].expand(expand)).float()
    return (below + weight * (above - below)).to(features.dtype)
