"""What a training task gives the trainer: a model description and batch → loss.

Metrics travel as sums (e.g. ``{"loss": 12.3, "frames": 400.0, "correct": 180.0}``) so they
add up over batches and ranks; :meth:`Task.summarize` turns sums into the figures logged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from audiossl.data.dataset import Batch


@dataclass
class StepOutput:
    """``loss``: the scalar to back-propagate (a mean); ``sums``: additive metrics of the batch."""

    loss: torch.Tensor
    sums: dict[str, float] = field(default_factory=dict)


class Task:
    """Base class of training tasks (self-supervised pretraining, CTC ASR, ...).

    The trained model's ``config`` (its ``family`` and ``to_dict()``) is what checkpoints store.

    Attributes:
        find_unused_parameters: whether some parameters get no gradient in some updates (DDP).
        higher_is_better: whether ``best.pt`` has the highest :meth:`valid_score` (else the lowest).
    """

    find_unused_parameters: bool = False
    higher_is_better: bool = False

    def before_update(self, model: nn.Module, update: int) -> None:
        """Called before each update (e.g. to unfreeze an encoder)."""

    def train_step(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> StepOutput:
        raise NotImplementedError

    def valid_step(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> dict[str, float]:
        """Additive metrics of one validation batch (the model is in eval mode, no grad)."""
        return self.train_step(model, batch, generator).sums

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        """Figures to log from summed metrics."""
        raise NotImplementedError

    def health_warnings(self, figures: dict[str, float]) -> list[str]:
        """Warnings about a log interval's training ``figures`` (e.g. a collapsing objective); none by default."""
        return []

    def valid_score(self, summary: dict[str, float]) -> float:
        """Chooses ``best.pt`` (see :attr:`higher_is_better`)."""
        return summary["loss"]
