"""Input perturbations applied while training."""
from __future__ import annotations

import torch
from torch import Tensor


def warp_frequency_axis(features: Tensor, factors: Tensor) -> Tensor:
    """Stretch or squeeze the frequency axis of each item: ``(B, T, F)``, ``(B,)`` → ``(B, T, F)``.

    Output bin ``f`` of item ``b`` reads input bin ``f · factors[b]`` (linear interpolation,
    clamped to the top bin). A factor below 1 moves spectral peaks up, above 1 moves them
    down: on log-mel features, a cheap stand-in for vocal tract length perturbation.
    """
    if features.ndim != 3 or factors.shape != features.shape[:1]:
        raise ValueError(f"expected features (B, T, F) and factors (B,), got {tuple(features.shape)}, "
                         f"{tuple(factors.shape)}")
    num_bins = features.shape[-1]
    bins = torch.arange(num_bins, device=features.device, dtype=torch.float32)
    source = (bins[None, :] * factors.to(features.device, torch.float32)[:, None]).clamp(0, num_bins - 1)
    low = source.floor().long()
    high = (low + 1).clamp(max=num_bins - 1)
    weight = (source - low).to(features.dtype)[:, None, :]
    expand = (-1, features.shape[1], -1)
    below = features.gather(2, low[:, None, :].expand(expand))
    above = features.gather(2, high[:, None, :].expand(expand))
    return below + weight * (above - below)
