"""Batch transforms: on-the-fly Kaldi fbank, composition, training-only selection, determinism."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torchaudio

from audiossl.data.dataset import Batch, collate
from audiossl.data.transforms import BatchTransform, Compose, FbankFromWaveform


@dataclasses.dataclass
class AddNoise(BatchTransform):
    """Adds generator-drawn Gaussian noise to the valid samples; training only."""

    scale: float = 0.01
    training_only = True

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        noise = torch.randn(batch.inputs.shape, generator=generator) * self.scale
        valid = torch.arange(batch.inputs.shape[1])[None, :] < batch.lengths[:, None]
        return dataclasses.replace(batch, inputs=batch.inputs + noise.to(batch.inputs.device) * valid)


def sine_batch() -> Batch:
    """Three sines of 0.5 s, 1.2 s and 0.8 s at 16 kHz, with integer targets, padded."""
    items = []
    for i, (seconds, hz) in enumerate([(0.5, 220.0), (1.2, 440.0), (0.8, 330.0)]):
        t = torch.arange(int(seconds * 16000)) / 16000
        items.append((f"utt{i}", 0.3 * torch.sin(2 * torch.pi * hz * t), torch.arange(i + 2)))
    return collate(items)


def test_fbank_from_waveform_equals_kaldi_fbank_of_each_item_alone():
    batch = sine_batch()
    out = FbankFromWaveform(num_mel_bins=80)(batch, torch.Generator().manual_seed(0))
    frames = [1 + (n - 400) // 160 for n in batch.lengths.tolist()]
    assert out.lengths.tolist() == frames == [48, 118, 78]
    assert out.inputs.shape == (3, 118, 80)
    for i, n in enumerate(batch.lengths.tolist()):
        alone = torchaudio.compliance.kaldi.fbank(batch.inputs[i, :n][None] * 32768, num_mel_bins=80, dither=0.0,
                                                  sample_frequency=16000)
        torch.testing.assert_close(out.inputs[i, :frames[i]], alone)
        assert not out.inputs[i, frames[i]:].any()
    assert torch.equal(out.targets, batch.targets) and torch.equal(out.target_lengths, batch.target_lengths)
    assert out.utterances == batch.utterances
    assert not FbankFromWaveform.training_only


def test_fbank_from_waveform_rejects_features():
    batch = sine_batch()
    with pytest.raises(ValueError, match="expects waveforms"):
        FbankFromWaveform()(dataclasses.replace(batch, inputs=batch.inputs[..., None]), torch.Generator())


def test_random_transforms_are_deterministic_given_the_generator_seed():
    batch = sine_batch()
    transform = Compose([AddNoise(), FbankFromWaveform()])
    first = transform(batch, torch.Generator().manual_seed(3))
    again = transform(batch, torch.Generator().manual_seed(3))
    other = transform(batch, torch.Generator().manual_seed(4))
    assert torch.equal(first.inputs, again.inputs) and not torch.equal(first.inputs, other.inputs)
    assert torch.equal(first.lengths, again.lengths)
    global_state = torch.get_rng_state()
    transform(batch, torch.Generator().manual_seed(3))
    assert torch.equal(global_state, torch.get_rng_state())  # the global RNG is never drawn from


def test_compose_selects_the_always_applied_transforms_outside_training():
    noise, fbank = AddNoise(), FbankFromWaveform()
    transform = Compose([noise, Compose([fbank, AddNoise(0.1)])])
    assert transform.active(training=True).transforms == [noise, fbank, AddNoise(0.1)]
    assert transform.active(training=False).transforms == [fbank]
    assert not transform.training_only and Compose([noise]).training_only and not Compose([]).training_only
