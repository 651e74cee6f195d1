"""Span masking of encoder frames (wav2vec 2.0 / HuBERT), driven by an explicit generator."""
from __future__ import annotations

import torch
from torch import Tensor


def compute_span_mask(
    shape: tuple[int, int],
    lengths: Tensor,
    mask_prob: float,
    span_length: int,
    min_masks: int,
    generator: torch.Generator,
) -> Tensor:
    """Sample overlapping spans of masked frames, as fairseq ``compute_mask_indices``.

    For an item with ``n`` valid frames the number of span starts is
    ``max(min_masks, int(mask_prob * n / span_length + u))`` with ``u ~ U[0, 1)``. Starts
    are drawn without replacement from ``[0, n - span_length)`` (fairseq's range, widened
    to ``num_starts + 1`` candidates when the item is too short), each start masks
    ``span_length`` frames, spans may overlap, and frames at or beyond ``n`` are never
    masked. With overlaps the expected masked fraction is about
    ``1 - (1 - mask_prob / span_length) ** span_length``: 0.57 for HuBERT's 0.8 / 10.

    Unlike fairseq (``require_same_masks``), items may end with different mask counts.

    Args:
        shape: ``(B, T)``, the padded frame grid.
        lengths: ``(B,)`` long, valid frames per item.
        mask_prob: fairseq ``mask_prob`` (HuBERT: 0.8).
        span_length: fairseq ``mask_length`` (HuBERT: 10).
        min_masks: fairseq ``min_masks`` (HuBERT: 2).
        generator: the only source of randomness; a fixed seed gives a fixed mask.

    Returns:
        ``(B, T)`` bool on the generator's device, True where a frame is masked.
    """
    batch, time = shape
    if span_length < 1:
        raise ValueError(f"span_length must be >= 1, got {span_length}")
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    device = generator.device
    lengths = lengths.to(device=device, dtype=torch.long)

    draw = torch.rand(batch, generator=generator, device=device)
    num_starts = torch.floor(mask_prob * lengths / span_length + draw).long().clamp(min=min_masks)
    num_candidates = torch.where(lengths - span_length > num_starts, lengths - span_length, num_starts + 1)
    num_candidates = torch.minimum(num_candidates, lengths)

    # Sampling without replacement: rank random scores among the candidate starts.
    positions = torch.arange(time, device=device)
    is_candidate = positions[None, :] < num_candidates[:, None]
    scores = torch.rand(batch, time, generator=generator, device=device).masked_fill(~is_candidate, -1.0)
    order = scores.argsort(dim=1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, positions.expand(batch, time).contiguous())
    starts = (rank < num_starts[:, None]) & is_candidate

    # Frame t is masked if a start lies in (t - span_length, t].
    covered = starts.long().cumsum(dim=1)
    shifted = torch.nn.functional.pad(covered, (span_length, 0))[:, :time]
    mask = (covered - shifted) > 0
    return mask & (positions[None, :] < lengths[:, None])
