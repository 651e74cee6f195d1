"""Additive angular margin softmax (AAM-softmax, ArcFace; Deng et al., 2019) for speaker embeddings.

Logits are scaled cosines between L2-normalised embeddings and class weights; in training the
target class's angle is widened by the margin ``m`` (``s cos(θ + m)`` instead of ``s cos θ``),
so that an embedding must lie closer to its class than the others to win. As SpeechBrain's
``AdditiveAngularMargin``, wespeaker's and voxceleb_trainer's ``ArcMarginProduct``, where
``θ + m`` would pass π (``cos θ <= cos(π - m)``) the target gets ``cos θ - m sin m`` instead,
keeping the logit decreasing in θ; with ``easy_margin`` the margin applies only where
``cos θ > 0`` and the target keeps ``cos θ`` elsewhere.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

COSINE_BOUND = 1 - 1e-7  # keeps sin θ = sqrt(1 - cos² θ) differentiable


def additive_angular_margin(cosine: Tensor, labels: Tensor, margin: float, scale: float,
                            easy_margin: bool = False) -> Tensor:
    """Margin logits (fp32) of ``(N, C)`` cosine similarities and ``(N,)`` target ids: ``scale`` times
    each cosine, the target's angle widened by ``margin`` radians (see the module docstring)."""
    cosine = cosine.float()
    labels = labels[:, None]
    target = cosine.gather(1, labels).clamp(-COSINE_BOUND, COSINE_BOUND)
    widened = target * math.cos(margin) - (1.0 - target.pow(2)).sqrt() * math.sin(margin)
    if easy_margin:
        widened = torch.where(target > 0, widened, target)
    else:
        widened = torch.where(target > math.cos(math.pi - margin), widened, target - math.sin(margin) * margin)
    return scale * cosine.scatter(1, labels, widened)


class AAMSoftmax(nn.Module):
    """Cosine classifier trained with the additive angular margin.

    Args:
        embedding_dim: ``E``, the embedding size.
        num_classes: ``C``, e.g. training speakers.
        margin: ``m`` in radians (0.2 in ECAPA-TDNN and wespeaker's recipes).
        scale: ``s``, the logit scale (30 in ECAPA-TDNN, 32 in wespeaker).
        easy_margin: the margin only where the target cosine is positive.
    """

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.2, scale: float = 30.0,
                 easy_margin: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.margin = margin
        self.scale = scale
        self.easy_margin = easy_margin

    def cosine(self, embeddings: Tensor) -> Tensor:
        """``(N, E)`` → ``(N, C)`` cosine similarity to each class weight (fp32)."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return nn.functional.linear(nn.functional.normalize(embeddings.float(), dim=-1),
                                        nn.functional.normalize(self.weight.float(), dim=-1))

    def logits(self, embeddings: Tensor) -> Tensor:
        """``(N, C)`` margin-free logits ``scale · cos θ``: what a prediction uses."""
        return self.scale * self.cosine(embeddings)

    def forward(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Mean cross entropy of the margin logits of ``(N, E)`` embeddings with ``(N,)`` labels,
        and the ``(N, C)`` margin-free logits."""
        cosine = self.cosine(embeddings)
        margin_logits = additive_angular_margin(cosine, labels, self.margin, self.scale, self.easy_margin)
        return nn.functional.cross_entropy(margin_logits, labels), self.scale * cosine
