"""From frame sequences to one vector per utterance: layer featurizers and poolings over valid frames.

:class:`LayerWeightedSum` is s3prl's ``Featurizer`` (the SUPERB learned weighted sum of an
encoder's hidden states). :class:`MeanPooling` and :class:`AttentiveStatisticsPooling` reduce
``(B, T, D)`` frames and ``(B,)`` valid lengths to ``(B, D')``; what lies beyond an item's length
(padding, even NaN) never changes its result, so an item alone and the same item padded in a
batch give the same vector.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from audiossl.errors import ConfigError
from audiossl.nn.frontends import valid_mask


class LayerWeightedSum(nn.Module):
    """Softmax-weighted sum of selected hidden states, as s3prl's ``Featurizer``.

    The weights start at zero, so the sum starts as the mean of the selected states. A single
    selected state is returned as it is (no weights), which is how "last layer" is expressed
    (:meth:`last_layer`).

    Args:
        num_layers: hidden states the encoder gives (``len(encoder.hidden_sizes)``, the input included).
        layers: indices of the states to use, negative ones counted from the end; None: all.
        normalize: layer-normalise each state over its features (no learned scale) before
            summing, as s3prl's ``normalize=True``.
    """

    def __init__(self, num_layers: int, layers: Sequence[int] | None = None, normalize: bool = False) -> None:
        super().__init__()
        chosen = list(range(num_layers)) if layers is None else list(layers)
        wrong = [i for i in chosen if not -num_layers <= i < num_layers]
        if wrong or not chosen:
            raise ConfigError(f"layers {chosen} must be a non-empty list of indices into {num_layers} hidden states "
                              f"(-{num_layers}..{num_layers - 1})")
        resolved = sorted(i % num_layers for i in chosen)
        if len(set(resolved)) != len(resolved):
            raise ConfigError(f"layers {chosen} name a hidden state twice")
        self.num_layers = num_layers
        self.layers = tuple(resolved)
        self.normalize = normalize
        self.weights = nn.Parameter(torch.zeros(len(resolved))) if len(resolved) > 1 else None

    @classmethod
    def last_layer(cls, num_layers: int, normalize: bool = False) -> LayerWeightedSum:
        """The last hidden state alone."""
        return cls(num_layers, [num_layers - 1], normalize)

    @property
    def states_needed(self) -> int:
        """How many leading hidden states the selection reads (the highest selected index + 1)."""
        return self.layers[-1] + 1

    def layer_weights(self) -> Tensor:
        """``(len(layers),)`` the current softmax weights, in the order of :attr:`layers`."""
        if self.weights is None:
            return torch.ones(1)
        return self.weights.detach().softmax(-1)

    def forward(self, hidden_states: Sequence[Tensor]) -> Tensor:
        """``hidden_states``: the encoder's ``(B, T, D)`` states, all of them or a leading part
        holding every selected one (an encoder run for fewer layers) → ``(B, T, D)``."""
        if not self.states_needed <= len(hidden_states) <= self.num_layers:
            raise ValueError(f"got {len(hidden_states)} hidden states; the selection {list(self.layers)} of "
                             f"{self.num_layers} needs {self.states_needed} to {self.num_layers}")
        return self.stacked(torch.stack([hidden_states[i] for i in self.layers], dim=-2))

    def stacked(self, states: Tensor) -> Tensor:
        """``(..., len(layers), D)`` the selected states stacked on the second-last axis → ``(..., D)``.

        The same sum as :meth:`forward`, for states already stored side by side (cached hidden states).
        """
        if states.shape[-2] != len(self.layers):
            raise ValueError(f"got {states.shape[-2]} stacked states, the selection has {len(self.layers)}")
        if self.normalize:
            states = nn.functional.layer_norm(states, states.shape[-1:])
        if self.weights is None:
            return states[..., 0, :]
        weights = self.weights.softmax(-1).to(states.dtype)
        return torch.einsum("...ld,l->...d", states, weights)


class ValidFrameBatchNorm(nn.BatchNorm1d):
    """Batch norm over the valid frames of ``(B, T, C)`` sequences; padded frames come out zero.

    Training statistics are those of the valid frames only, so padding never shifts them.
    """

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``x``: ``(B, T, C)``; ``mask``: ``(B, T)`` bool, True at valid frames."""
        normed = super().forward(x[mask])
        out = normed.new_zeros(x.shape)
        out[mask] = normed
        return out


class MeanPooling(nn.Module):
    """Mean over each item's valid frames: ``(B, T, D)``, ``(B,)`` → ``(B, D)`` (fp32)."""

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        mask = valid_mask(lengths.to(x.device), x.shape[1])[..., None]
        return x.float().masked_fill(~mask, 0.0).sum(1) / mask.sum(1).clamp(min=1)


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and standard deviation of each channel over valid frames (Okabe et
    al., 2018), as ECAPA-TDNN and SpeechBrain's ``AttentiveStatisticsPooling``.

    A frame's attention logits (one per channel) come from ``Linear → ReLU → BatchNorm → tanh →
    Linear`` of the frame, with the utterance's plain mean and standard deviation appended when
    ``global_context``; a softmax over the valid frames of each channel weights them.

    Args:
        channels: ``D``, the frame size; the output has ``2 D`` (mean, then standard deviation).
        attention_channels: hidden size of the attention network.
        global_context: append the utterance's mean and standard deviation to each frame's input.
    """

    eps = 1e-12  # variance floor, as SpeechBrain

    def __init__(self, channels: int, attention_channels: int = 128, global_context: bool = True) -> None:
        super().__init__()
        self.global_context = global_context
        self.attention_in = nn.Linear(channels * (3 if global_context else 1), attention_channels)
        self.attention_norm = ValidFrameBatchNorm(attention_channels)
        self.attention_out = nn.Linear(attention_channels, channels)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """``(B, T, D)`` frames, ``(B,)`` valid frames → ``(B, 2 D)`` (fp32)."""
        mask = valid_mask(lengths.to(x.device), x.shape[1])
        x = x.masked_fill(~mask[..., None], 0.0)
        context = x
        if self.global_context:
            uniform = mask[..., None] / mask.sum(1).clamp(min=1)[:, None, None]
            mean, std = self._statistics(x, uniform)
            time = x.shape[1]
            # in x's dtype, which a half model's linear layers take (autocast rounds them alike)
            statistics = [value[:, None].expand(-1, time, -1).to(x.dtype) for value in (mean, std)]
            context = torch.cat([x, *statistics], dim=-1)
        hidden = self.attention_norm(torch.relu(self.attention_in(context)), mask)
        scores = self.attention_out(torch.tanh(hidden)).masked_fill(~mask[..., None], float("-inf"))
        mean, std = self._statistics(x, scores.softmax(dim=1))
        return torch.cat([mean, std], dim=-1)

    def _statistics(self, x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        """Weighted mean and standard deviation (fp32) over time; ``weights`` ``(B, T, D or 1)`` sum to 1 over T."""
        x, weights = x.float(), weights.float()
        mean = (weights * x).sum(1)
        variance = (weights * (x - mean[:, None]).pow(2)).sum(1)
        return mean, variance.clamp(min=self.eps).sqrt()
