"""The light downstream heads of SUPERB and MARBLE, over a learned weighted sum of frozen hidden states.

Each :class:`Probe` is s3prl's ``Featurizer`` (:class:`~audiossl.nn.pooling.LayerWeightedSum`)
followed by one head:

* :class:`FrameLinear`: a linear layer per frame (SUPERB PR), CTC;
* :class:`FrameBlstm`: a small BLSTM then a linear layer per frame (SUPERB ASR's 2-layer BLSTM), CTC;
* :class:`PooledLinear`: projector → mean pooling → linear (SUPERB KS, IC, SID). On mean-pooled
  states (the ``mean`` cache), which is exact: the projector and the weighted sum are linear;
* :class:`PooledMlp`: one hidden layer with ReLU and dropout on mean-pooled states (MARBLE's probe);
* the x-vector head with AAM-softmax of :mod:`audiossl.models.utterance` (SUPERB ASV).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiossl.nn.frontends import reverse_valid
from audiossl.nn.pooling import LayerWeightedSum


class FrameLinear(nn.Module):
    """``(B, T, D)`` → ``(B, T, V)`` logits."""

    def __init__(self, input_dim: int, num_outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim, num_outputs)

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        return self.linear(frames)


class FrameBlstm(nn.Module):
    """``(B, T, D)`` → bidirectional LSTM layers → ``(B, T, V)`` logits.

    Each direction is a one-way LSTM over padded frames; the backward one reads each item reversed
    within its length, so no valid frame's output depends on padding. That equals a packed
    bidirectional LSTM and runs several times faster on a CPU.
    """

    def __init__(self, input_dim: int, num_outputs: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        sizes = [input_dim] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(2 * hidden_size, num_outputs)

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        x = frames
        for i, (ahead, behind) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if i:
                x = self.dropout(x)
            backward, _ = behind(reverse_valid(x, lengths))
            x = torch.cat([ahead(x)[0], reverse_valid(backward, lengths)], dim=-1)
        return self.linear(self.dropout(x))


class PooledLinear(nn.Module):
    """``(B, D)`` mean-pooled states → projector ``D → P`` → linear ``P → C`` logits (SUPERB's
    ``projector`` + ``UtteranceLevel`` with mean pooling)."""

    def __init__(self, input_dim: int, num_outputs: int, projector_dim: int) -> None:
        super().__init__()
        self.projector = nn.Linear(input_dim, projector_dim)
        self.linear = nn.Linear(projector_dim, num_outputs)

    def forward(self, pooled: Tensor, lengths: Tensor) -> Tensor:
        return self.linear(self.projector(pooled))


class PooledMlp(nn.Module):
    """``(B, D)`` mean-pooled states → linear → ReLU → dropout → linear ``C`` logits (MARBLE's probe)."""

    def __init__(self, input_dim: int, num_outputs: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_dim, hidden_size), nn.ReLU(), nn.Dropout(dropout),
                                    nn.Linear(hidden_size, num_outputs))

    def forward(self, pooled: Tensor, lengths: Tensor) -> Tensor:
        return self.layers(pooled)


class Probe(nn.Module):
    """Learned weighted sum of the hidden states, then ``head``.

    Args:
        featurizer: over every hidden state of the upstream.
        head: takes the featurized ``(B, T, D)`` frames (or ``(B, D)`` pooled states) and ``(B,)``
            valid frames.
    """

    def __init__(self, featurizer: LayerWeightedSum, head: nn.Module) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.head = head

    def features(self, states: Tensor) -> Tensor:
        """``(B, T, L, D)`` stacked hidden states (``(B, L, D)`` pooled) → ``(B, T, D)`` (``(B, D)``)."""
        return self.featurizer.stacked(states)

    def forward(self, states: Tensor, lengths: Tensor) -> Tensor:
        """Stacked hidden states and ``(B,)`` frames → the head's output."""
        return self.head(self.features(states), lengths)


def ctc_loss(logits: Tensor, lengths: Tensor, targets: list[list[int]]) -> Tensor:
    """Mean over items of the CTC loss per target token (blank 0), ``(B, T, V)`` logits."""
    log_probs = logits.float().log_softmax(-1).transpose(0, 1)
    flat = torch.tensor([t for target in targets for t in target], dtype=torch.long)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    return nn.functional.ctc_loss(log_probs, flat, lengths, target_lengths, zero_infinity=True)
