"""TERA: the alterations, the L1 objective on altered values, 100 frames/s features, named sizes."""
from __future__ import annotations

import pytest
import torch

import audiossl
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.errors import ConfigError
from audiossl.models.tera import NAMED_CONFIGS, TeraConfig
from audiossl.nn.frontends import utterance_cmvn, valid_mask, waveform_to_fbank


def tiny(seed=0, **changes):
    config = TeraConfig.tiny()
    for name, value in changes.items():
        setattr(config, name, value)
    torch.manual_seed(seed)
    return build_model("tera", config.to_dict())


def test_named_sizes_and_settings_are_the_papers():
    sizes = {name: (make().encoder.num_layers, make().encoder.dim) for name, make in NAMED_CONFIGS.items()}
    assert sizes == {"base": (3, 768), "small": (3, 256), "tiny": (2, 64)}
    base = TeraConfig.base()
    assert (base.mask.prob, base.mask.length, base.max_frequency_mask, base.noise_prob) == (0.15, 7, 0.2, 0.1)
    assert base.frontend.kind == "frames" and base.encoder.num_heads == 12 and base.encoder.ffn_dim == 3072
    with pytest.raises(ConfigError, match="frontend.kind must be 'frames'"):
        TeraConfig.from_dict({**base.to_dict(), "frontend": {"kind": "fbank"}})
    with pytest.raises(ConfigError, match="replace_prob and keep_prob must be >= 0 with a sum <= 1"):
        TeraConfig.from_dict({**base.to_dict(), "replace_prob": 0.6, "keep_prob": 0.5})


def test_features_are_at_100_frames_a_second_without_subsampling():
    model = tiny().eval()
    with torch.no_grad():
        hidden, frames = model.extract_features(torch.randn(2, 16000) * 0.1, torch.tensor([16000, 8000]))
    assert model.frame_rate == 100 and frames.tolist() == [98, 48] and hidden[0].shape == (2, 98, 64)


@pytest.mark.parametrize("replace_prob, keep_prob, expect", [(0.0, 0.0, "zeroed"), (1.0, 0.0, "replaced"),
                                                            (0.0, 1.0, "kept")])
def test_time_spans_are_zeroed_replaced_or_kept(replace_prob, keep_prob, expect):
    model = tiny(max_frequency_mask=0.0, noise_prob=0.0, replace_prob=replace_prob, keep_prob=keep_prob)
    frames = utterance_cmvn(torch.randn(1, 80, 80), torch.tensor([80]))
    altered, scored, spans = model.alter(frames, torch.tensor([80]), torch.Generator().manual_seed(0))
    assert spans.any() and torch.equal(scored[..., 0], spans) and torch.equal(scored.all(-1), spans)
    assert torch.equal(altered[0, ~spans[0]], frames[0, ~spans[0]])
    inside, original = altered[0, spans[0]], frames[0, spans[0]]
    if expect == "zeroed":
        assert (inside == 0).all()
    elif expect == "kept":
        assert torch.equal(inside, original)
    else:  # frames from elsewhere in the utterance
        assert not torch.equal(inside, original) and all((frames[0] == row).all(-1).any() for row in inside)


def test_a_band_of_bins_is_zeroed_in_every_valid_frame_and_noise_spares_padding():
    lengths = torch.tensor([60, 35])
    frames = utterance_cmvn(torch.randn(2, 60, 80), lengths)
    model = tiny(max_frequency_mask=0.5, noise_prob=0.0)
    altered, scored, spans = model.alter(frames, lengths, torch.Generator().manual_seed(1))
    band = scored[0].all(dim=0)  # the bins scored in every frame of item 0 (no padding)
    assert 0 < band.sum() <= 40 and (altered[0][:, band] == 0).all()
    assert torch.equal(band.nonzero().flatten(), torch.arange(band.nonzero().min(), band.nonzero().max() + 1))
    noisy = tiny(max_frequency_mask=0.5, noise_prob=0.99, noise_std=1.0)
    altered, scored, _ = noisy.alter(frames, lengths, torch.Generator().manual_seed(1))
    padding = ~valid_mask(lengths, 60)
    assert (altered[padding] == 0).all() and not scored[padding].any() and (altered[0][:, band] != 0).all()


def test_the_loss_is_the_mean_l1_over_the_altered_values():
    model = tiny().eval()  # no dropout: the two passes below see the same network
    fbank, lengths = torch.randn(2, 90, 80), torch.tensor([90, 70])
    out = model(fbank, lengths, None, torch.Generator().manual_seed(5))
    frames, _ = model.frontend_features(fbank, lengths)
    altered, scored, spans = model.alter(frames, lengths, torch.Generator().manual_seed(5))
    hidden, _ = model.encode_features(model.feature_projection(altered), lengths, None)
    expected = (model.head(hidden[-1]) - frames).abs()[scored].mean()
    assert torch.allclose(out.loss, expected, atol=1e-5)
    assert out.sums["time_altered_frames"] == spans.sum() and out.sums["valid_frames"] == 160
    out.loss.backward()  # every part learns but the mask embedding, which only fine-tuning's masking uses
    assert all(p.grad is not None for n, p in model.named_parameters() if n != "mask_embedding")
    with pytest.raises(ValueError, match="pass targets=None"):
        model(fbank, lengths, torch.zeros(2, 90, dtype=torch.long), torch.Generator())


def test_a_few_updates_lower_the_reconstruction_error_and_the_checkpoint_round_trips(tmp_path):
    model = tiny()
    fbank, lengths = torch.randn(4, 80, 80), torch.tensor([80, 70, 60, 50])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model(fbank, lengths, None, torch.Generator().manual_seed(0)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    model.eval()
    save_checkpoint(tmp_path / "tera.pt", "tera", model.config.to_dict(), model.state_dict())
    loaded = audiossl.load_model(tmp_path / "tera.pt").eval()
    wavs, wav_lengths = torch.randn(1, 8000) * 0.1, torch.tensor([8000])
    with torch.no_grad():
        ours, _ = loaded.extract_features(wavs, wav_lengths)
        expected, _ = model.encode(*waveform_to_fbank(wavs, wav_lengths, 80))
    assert all(torch.allclose(a, b) for a, b in zip(ours, expected))
