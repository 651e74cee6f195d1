"""What every pretraining objective returns, so that one pretraining task serves every family."""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

# figure name -> (numerator sum, denominator sum): e.g. {"acc_masked": ("correct_masked", "masked_frames")}
MetricRatios = dict[str, tuple[str, str]]


@dataclass
class ObjectiveOutput:
    """A pretraining step's result.

    Attributes:
        loss: scalar tensor to back-propagate.
        sums: additive metrics of the batch as plain floats (e.g. ``{"correct_masked": 180.0,
            "masked_frames": 400.0}``): they add up over batches and ranks, and the model's
            ``metrics`` (a :data:`MetricRatios`) turn them into the logged figures.
    """

    loss: Tensor
    sums: dict[str, float] = field(default_factory=dict)
