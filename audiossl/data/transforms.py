"""Batch transforms between the sampler and the model: augmentation and on-the-fly features.

A transform is called as ``transform(batch, generator) -> batch``. Its ``training_only``
attribute says whether it applies only while training (augmentations such as utterance or
noise mixing) or always (feature computation, e.g. :class:`FbankFromWaveform`). All its
randomness comes from ``generator``, a CPU ``torch.Generator``: random tensors are drawn on
the CPU and moved to ``batch.inputs.device``, so a run that resumes the generator resumes
the transforms too.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from audiossl.data.dataset import Batch
from audiossl.nn.frontends import waveform_to_fbank


class BatchTransform:
    """Base of batch transforms: ``__call__(batch, generator) -> batch``, never modifying ``batch`` in place."""

    training_only: bool = False

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        raise NotImplementedError


class Compose(BatchTransform):
    """Transforms applied in order; training-only when all of them are."""

    def __init__(self, transforms: Sequence[BatchTransform]):
        self.transforms = list(transforms)

    @property
    def training_only(self) -> bool:
        return bool(self.transforms) and all(t.training_only for t in self.transforms)

    def active(self, training: bool) -> Compose:
        """The transforms that apply in training (all) or outside it (the always-applied ones), flattened."""
        selected: list[BatchTransform] = []
        for transform in self.transforms:
            if isinstance(transform, Compose):
                selected += transform.active(training).transforms
            elif training or not transform.training_only:
                selected.append(transform)
        return Compose(selected)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        for transform in self.transforms:
            batch = transform(batch, generator)
        return batch

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


@dataclasses.dataclass
class FbankFromWaveform(BatchTransform):
    """Waveforms ``(B, S)`` at 16 kHz with sample lengths → Kaldi fbank ``(B, T, num_mel_bins)`` with frame lengths.

    Each item is computed alone (:func:`audiossl.nn.frontends.waveform_to_fbank`), so its
    features do not depend on its batch; targets are untouched. Applied always.
    """

    num_mel_bins: int = 80

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        if batch.inputs.ndim != 2:
            raise ValueError(f"FbankFromWaveform expects waveforms (B, S), got shape {tuple(batch.inputs.shape)}")
        feats, frames = waveform_to_fbank(batch.inputs, batch.lengths, self.num_mel_bins)
        return dataclasses.replace(batch, inputs=feats, lengths=frames)
