"""SSAMBA: fbank patches, the joint InfoNCE + MSE objective, per-time-step states, named sizes, checkpoints."""
from __future__ import annotations

import kaldiio
import numpy as np
import pytest
import soundfile
import torch

import audiossl
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.data.dataset import UtteranceDataset
from audiossl.data.kaldi_dir import DataDir, DataDirError
from audiossl.errors import ConfigError
from audiossl.models.ssamba import NAMED_CONFIGS, SsambaConfig
from audiossl.nn.frontends import FbankPatches, utterance_cmvn, waveform_to_fbank


def tiny(patches="patch", seed=0, **changes):
    config = SsambaConfig.test(patches)
    for name, value in changes.items():
        setattr(config, name, value)
    torch.manual_seed(seed)
    return build_model("ssamba", config.to_dict())


def test_named_sizes_are_the_papers_and_the_cpu_ones():
    sizes = {name: (make().encoder.num_layers, make().encoder.dim, make().encoder.kind) for name, make in NAMED_CONFIGS.items()}
    assert sizes == {"base": (24, 768, "bimamba"), "small": (24, 384, "bimamba"), "tiny": (24, 192, "bimamba"),
                     "cpu": (6, 256, "bimamba"), "test": (2, 64, "bimamba")}
    base = SsambaConfig.base()
    assert (base.num_mel_bins, base.patch_frequency, base.patch_time, base.generative_weight) == (128, 16, 16, 10.0)
    assert (SsambaConfig.base("frame").patch_frequency, SsambaConfig.base("frame").patch_time) == (128, 2)
    with pytest.raises(ConfigError, match="patch_frequency 24 must divide num_mel_bins 128"):
        SsambaConfig.from_dict({**base.to_dict(), "patch_frequency": 24})


def test_patches_are_time_major_blocks_of_the_normalised_fbank():
    fbank, lengths = torch.randn(2, 37, 8), torch.tensor([37, 20])
    patches, patch_lengths = FbankPatches(8, 4, 3)(fbank, lengths)
    assert patches.shape == (2, 2 * 12, 12) and patch_lengths.tolist() == [24, 12]
    normalised = utterance_cmvn(fbank, lengths)
    step, row = 5, 1  # patch 2 * 5 + 1: frames 15..17, bins 4..7, flattened bin-major
    assert torch.allclose(patches[0, 2 * step + row], normalised[0, 15:18, 4:8].t().reshape(-1))


def test_encode_gives_each_time_step_the_mean_of_its_patch_states():
    model = tiny().eval()
    fbank, lengths = torch.randn(2, 70, 128), torch.tensor([70, 40])
    with torch.no_grad():
        steps, frames = model.encode(fbank, lengths)
        patches, patch_lengths = model.frontend_features(fbank, lengths)
        tokens, _ = model.encode_features(model.feature_projection(patches), patch_lengths)
    assert frames.tolist() == [4, 2] and model.frame_rate == 6.25 and model.num_mel_bins == 128
    assert torch.allclose(steps[-1], tokens[-1].view(2, 4, 8, -1).mean(2), atol=1e-6)
    with pytest.raises(ValueError, match="too short for one frame"):
        model.encode(fbank[:, :15], torch.tensor([15, 15]))


def test_the_loss_is_infonce_over_the_batchs_masked_patches_plus_ten_times_their_mse():
    model = tiny("frame")
    fbank, lengths = torch.randn(2, 50, 128), torch.tensor([50, 31])
    out = model(fbank, lengths, None, torch.Generator().manual_seed(3))
    patches, patch_lengths = model.frontend_features(fbank, lengths)
    mask = model.span_mask(tuple(patches.shape[:2]), patch_lengths, torch.Generator().manual_seed(3))
    hidden, _ = model.encode_features(model.feature_projection(patches), patch_lengths, mask)
    states, truth = hidden[-1][mask], patches[mask]
    scores = model.discriminative_head(states) @ truth.t()
    nce = torch.nn.functional.cross_entropy(scores, torch.arange(len(truth)))
    mse = (model.generative_head(states) - truth).square().mean()
    assert torch.allclose(out.loss, nce + 10 * mse, atol=1e-4)
    assert out.sums["masked_patches"] == mask.sum() and not mask[1, 15:].any()
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="pass targets=None"):
        model(fbank, lengths, torch.zeros(2, 25, dtype=torch.long), torch.Generator())


def test_a_few_updates_on_one_batch_lower_the_loss():
    model = tiny("frame")
    fbank, lengths = torch.randn(4, 60, 128), torch.tensor([60, 55, 50, 45])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for update in range(12):
        loss = model(fbank, lengths, None, torch.Generator().manual_seed(0)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_checkpoint_round_trip_and_features_from_waveforms(tmp_path):
    model = tiny("frame").eval()
    path = tmp_path / "ssamba.pt"
    save_checkpoint(path, "ssamba", model.config.to_dict(), model.state_dict())
    loaded = audiossl.load_model(path).eval()
    wavs, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 9000])
    with torch.no_grad():
        hidden, frames = loaded.extract_features(wavs, lengths)
        expected, _ = model.encode(*waveform_to_fbank(wavs, lengths, 128))
    assert frames.tolist() == [49, 27] and len(hidden) == 3
    assert all(torch.allclose(h, e) for h, e in zip(hidden, expected))


def test_a_dataset_computes_the_fbank_a_model_takes_when_feats_scp_holds_other_bins(tmp_path):
    data = tmp_path / "data"
    audio = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32) * 0.1
    wav_scp = {}
    for i, samples in enumerate(audio):
        soundfile.write(tmp_path / f"u{i}.wav", samples, 16000, subtype="FLOAT")
        wav_scp[f"u{i}"] = str(tmp_path / f"u{i}.wav")
    DataDir({"wav.scp": wav_scp, "utt2spk": {u: "s" for u in wav_scp}}).write(data)
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path}/feats.ark,{data}/feats.scp") as writer:
        for utt, samples in zip(wav_scp, audio):
            writer(utt, waveform_to_fbank(torch.from_numpy(samples)[None], torch.tensor([8000]), 80)[0][0].numpy())
    stored = UtteranceDataset(data, "fbank", num_mel_bins=80)
    computed = UtteranceDataset(data, "fbank", num_mel_bins=128)
    assert stored[0][1].shape == (48, 80) and computed[0][1].shape == (48, 128) and computed.lengths == [48, 48]
    expected = waveform_to_fbank(torch.from_numpy(audio[0])[None], torch.tensor([8000]), 128)[0][0]
    assert torch.allclose(computed[0][1], expected)
    (data / "wav.scp").unlink()
    with pytest.raises(DataDirError, match="takes 128-bin fbank, feats.scp holds 80 and there is no wav.scp"):
        UtteranceDataset(data, "fbank", num_mel_bins=128)
