"""MERT: sizes, K-codebook masked prediction with CQT reconstruction, in-batch mixing, 24 kHz at 75 frames/s."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from audiossl.checkpoint import build_model
from audiossl.errors import ConfigError
from audiossl.features.music import cqt_magnitude
from audiossl.models.mert import NAMED_CONFIGS, MertConfig


def tiny(seed=0, **changes):
    config = MertConfig.tiny()
    for name, value in changes.items():
        setattr(config, name, value)
    torch.manual_seed(seed)
    return build_model("mert", config.to_dict())


def batch(model, lengths, codebooks=None, seed=0):
    """Tonal 24 kHz clips (zero padded) and random codes for each frame, -100 past the frames."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    t = torch.arange(int(lengths.max())) / 24000
    wavs = torch.stack([0.2 * torch.sin(2 * torch.pi * (220 + 110 * i) * t) for i in range(len(lengths))])
    wavs = wavs * (torch.arange(wavs.shape[1]) < lengths[:, None])
    frames = model.num_frames(lengths)
    k = codebooks or model.config.num_codebooks
    targets = torch.full((len(lengths), int(frames.max()), k), -100)
    for b, n in enumerate(frames.tolist()):
        targets[b, :n] = torch.randint(0, model.config.codebook_size, (n, k), generator=generator)
    return wavs, lengths, targets


def test_named_sizes_and_settings_are_the_papers():
    sizes = {name: (make().encoder.num_layers, make().encoder.dim) for name, make in NAMED_CONFIGS.items()}
    assert sizes == {"base": (12, 768), "large": (24, 1024), "small": (6, 256), "tiny": (2, 64)}
    base = MertConfig.base()
    assert (base.frontend.sample_rate, base.num_codebooks, base.codebook_size, base.cqt_bins) == (24000, 8, 1024, 336)
    assert (base.mask.prob, base.mask.length, base.final_dim, base.mix_prob) == (0.8, 5, 64, 0.5)
    assert base.mix_seconds == (1 / 3, 1.0) and base.mix_count == (1, 3)
    assert MertConfig.from_dict(base.to_dict()) == base
    with pytest.raises(ConfigError, match="MERT takes waveforms through the CNN"):
        MertConfig.from_dict({**base.to_dict(), "frontend": {"kind": "fbank", "sample_rate": 16000}})
    with pytest.raises(ConfigError, match="cqt_bins must be a positive multiple of 7"):
        MertConfig.from_dict({**base.to_dict(), "cqt_bins": 80})
    with pytest.raises(ConfigError, match="frontend.sample_rate must be >= 1, and 16000 for fbank"):
        MertConfig.from_dict({**base.to_dict(), "frontend": {"kind": "fbank"}})


def test_features_are_at_75_frames_a_second_of_24khz_audio():
    model = tiny().eval()
    assert (model.sample_rate, model.frame_rate, model.target_codebooks) == (24000, 75.0, 2)
    with torch.no_grad():
        hidden, frames = model.extract_features(torch.randn(2, 24000) * 0.1, torch.tensor([24000, 12000]))
    assert frames.tolist() == [74, 37] and len(hidden) == 3 and hidden[0].shape == (2, 74, 64)


def test_cqt_targets_are_each_clips_cqt_on_the_frame_grid():
    model = tiny()
    wavs, lengths, _ = batch(model, [24000, 15000])
    time = int(model.num_frames(lengths).max())
    targets = model.cqt_targets(wavs, lengths, time)
    assert targets.shape == (2, time, 84)
    short = cqt_magnitude(wavs[1, :15000].numpy(), 24000, 84)
    assert len(short) == int(model.num_frames(lengths)[1])
    np.testing.assert_allclose(targets[1, :len(short)].numpy(), short)
    assert float(targets[1, len(short):].abs().max()) == 0.0
    # the 330 Hz clip's strongest bin is E4: 3 octaves and 4 semitones above C1
    assert int(targets[1, 10].argmax()) == 3 * 12 + 4


def test_loss_sums_codebooks_and_adds_the_cqt_error_at_masked_frames():
    model = tiny()
    wavs, lengths, targets = batch(model, [24000, 18000])
    out = model(wavs, lengths, targets, torch.Generator().manual_seed(1))
    sums = out.sums
    masked = sums["masked_frames"] / 2  # counted once per codebook
    assert sums["cqt_values"] == masked * 84
    expected = sums["loss_masked"] / masked + sums["cqt_squared_error"] / sums["cqt_values"]
    assert float(out.loss) == pytest.approx(expected, rel=1e-5)
    out.loss.backward()
    assert model.cqt_head.weight.grad.abs().sum() > 0
    assert all(head.label_embeddings.grad.abs().sum() > 0 for head in model.heads)


def test_one_codebook_takes_plain_labels_and_a_wrong_count_is_an_error():
    model = tiny(num_codebooks=1)
    wavs, lengths, targets = batch(model, [12000, 9000])
    out = model(wavs, lengths, targets[..., 0], torch.Generator().manual_seed(0))
    assert torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="targets have 3 codebook\\(s\\) per frame, the model predicts 1"):
        model(wavs, lengths, batch(model, [12000, 9000], codebooks=3)[2], torch.Generator().manual_seed(0))


def test_in_batch_mixing_adds_segments_of_other_clips_within_the_valid_samples():
    model = tiny(mix_prob=1.0, mix_count=(2, 2))
    lengths = torch.tensor([24000, 20000])
    wavs = torch.zeros(2, 24000)
    wavs[1, :20000] = 1.0            # clip 1 is constant: clip 0's added segments show where they went
    mixed = model.mix_in_batch(wavs, lengths, torch.Generator().manual_seed(3))
    added = mixed[0] - wavs[0]
    assert set(added.unique().tolist()) <= {0.0, 1.0, 2.0} and 8000 <= int((added > 0).sum()) <= 2 * 20000
    assert float(mixed[1, 20000:].abs().max()) == 0.0   # padding stays silent
    again = model.mix_in_batch(wavs, lengths, torch.Generator().manual_seed(3))
    assert torch.equal(mixed, again)
    assert torch.equal(tiny(mix_prob=0.0).mix_in_batch(wavs, lengths, torch.Generator()), wavs)


def test_mixing_is_for_training_only_and_targets_stay_the_clean_clips():
    model = tiny(mix_prob=1.0)
    wavs, lengths, targets = batch(model, [24000, 24000])
    calls = []
    original = model.mix_in_batch
    model.mix_in_batch = lambda *args: calls.append(1) or original(*args)
    model.eval()
    model(wavs, lengths, targets, torch.Generator().manual_seed(0))
    model.train()
    model(wavs, lengths, targets, torch.Generator().manual_seed(0))
    assert calls == [1]


def test_encoder_only_drops_the_heads():
    model = tiny().encoder_only()
    assert model.heads is None and model.cqt_head is None
    assert not any(name.startswith(("heads", "cqt_head")) for name in model.state_dict())


def test_reset_targets_gives_every_head_a_new_table_and_keeps_the_encoder():
    model = tiny()
    encoder = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("encoder.")}
    model.reset_targets(24)
    assert model.config.codebook_size == 24 and all(head.num_classes == 24 for head in model.heads)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in encoder.items())
