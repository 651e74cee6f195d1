"""wav2vec 2.0: sizes, the contrastive step, temperature annealing, encoder-only use, CTC on top."""
from __future__ import annotations

import pytest
import torch

from audiossl.checkpoint import build_model
from audiossl.errors import ConfigError
from audiossl.models.ctc.factory import ctc_over_encoder
from audiossl.models.wav2vec2 import NAMED_CONFIGS, Wav2Vec2Config, Wav2Vec2Model, build_wav2vec2
from audiossl.tasks.pretrain import PretrainingTask
from audiossl.text.tokenizer import build_tokenizer

FRONTENDS = ("waveform", "fbank")


def inputs_for(model, frontend):
    gen = torch.Generator().manual_seed(0)
    if frontend == "waveform":
        return torch.randn(3, 16000, generator=gen) * 0.1, torch.tensor([16000, 12000, 8000])
    return torch.randn(3, 98, 80, generator=gen), torch.tensor([98, 73, 48])


def tiny(frontend="waveform", **changes):
    torch.manual_seed(0)
    config = Wav2Vec2Config.tiny(frontend)
    return build_wav2vec2(Wav2Vec2Config.from_dict({**config.to_dict(), **changes}))


def test_named_sizes():
    base, large = Wav2Vec2Config.base(), Wav2Vec2Config.large()
    assert (base.encoder.num_layers, base.encoder.dim, base.final_dim, base.mask.prob) == (12, 768, 256, 0.65)
    assert (base.codebook_groups, base.codebook_entries, base.num_distractors) == (2, 320, 100)
    assert (large.encoder.num_layers, large.encoder.dim, large.encoder.num_heads, large.final_dim) == (24, 1024, 16, 768)
    assert large.encoder.layer_norm_first and large.frontend.conv_mode == "layer_norm" and large.frontend.conv_bias
    torch.manual_seed(0)
    params = sum(p.numel() for p in build_wav2vec2(base).parameters())
    assert 94e6 < params < 96e6  # the paper's BASE: 95M
    assert sorted(NAMED_CONFIGS) == ["base", "large", "small", "tiny"]
    with pytest.raises(ConfigError, match="codebook_dim 30 must be divisible by codebook_groups 4"):
        Wav2Vec2Config.from_dict({**Wav2Vec2Config.tiny().to_dict(), "codebook_dim": 30, "codebook_groups": 4})


@pytest.mark.parametrize("size", ["tiny", "small"])
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_contrastive_step_trains_every_part(size, frontend):
    torch.manual_seed(0)
    model = build_wav2vec2(NAMED_CONFIGS[size](frontend)).with_layer_drop(0.0).train()
    inputs, lengths = inputs_for(model, frontend)
    out = model(inputs, lengths, None, torch.Generator().manual_seed(0))
    sums = out.sums
    assert {numerator for numerator, _ in model.metrics.values()} <= sums.keys()
    assert sums["scored_frames"] > 0 and 0 <= sums["contrastive_correct"] <= sums["scored_frames"]
    config = model.config
    expected = (sums["contrastive_loss"] / sums["scored_frames"] + config.diversity_weight * sums["diversity_loss"]
                + config.feature_penalty_weight * sums["feature_penalty"])
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert 1.0 <= sums["code_perplexity"] <= config.codebook_groups * config.codebook_entries
    out.loss.backward()
    for name in ("quantizer.weight_proj.weight", "quantizer.codevectors", "project_q.weight", "final_proj.weight",
                 "mask_embedding", "encoder.layers.0.attention.q_proj.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in model.frontend.parameters())


def test_the_step_is_seeded_and_refuses_targets():
    model = tiny()
    inputs, lengths = inputs_for(model, "waveform")
    a, b = (model(inputs, lengths, None, torch.Generator().manual_seed(5)) for _ in range(2))
    torch.manual_seed(1)  # dropout draws from torch's generator; masks, noise and distractors from ours
    c = model.eval()(inputs, lengths, None, torch.Generator().manual_seed(5))
    torch.manual_seed(2)
    d = model(inputs, lengths, None, torch.Generator().manual_seed(5))
    assert a.sums["scored_frames"] == b.sums["scored_frames"] and c.sums == d.sums and c.loss.item() == d.loss.item()
    with pytest.raises(ValueError, match="makes its own targets"):
        model(inputs, lengths, torch.zeros(3, 49, dtype=torch.long), torch.Generator())


def test_temperature_anneals_with_the_update_count():
    model = tiny(collapse_fraction=0.1)
    task = PretrainingTask(model)
    assert task.valid_metric == "contrastive_loss"
    task.before_update(model, 0)
    assert model.temperature == 2.0
    task.before_update(model, 100_000)
    assert model.temperature == pytest.approx(2.0 * 0.999995 ** 100_000)
    task.before_update(model, 10_000_000)
    assert model.temperature == 0.5
    figures = task.summarize({"loss": 3.0, "utterances": 3.0, "contrastive_correct": 5.0, "scored_frames": 10.0,
                              "code_perplexity": 4.0, "batches": 2.0})
    assert figures["acc"] == 0.5 and figures["code_perplexity"] == 2.0
    collapsed = {"code_perplexity": 1.0, "acc": 0.5}
    warnings = [task.health_warnings(collapsed) for _ in range(model.config.collapse_patience)]
    assert warnings[-2] == [] and "codebook collapse" in warnings[-1][0]


def test_a_few_updates_on_one_batch_raise_the_accuracy():
    model = tiny(mask={"prob": 0.65, "length": 5, "min_masks": 2})
    inputs, lengths = inputs_for(model, "waveform")
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    accuracies = []
    for step in range(40):
        out = model(inputs, lengths, None, torch.Generator().manual_seed(step))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        accuracies.append(out.sums["contrastive_correct"] / out.sums["scored_frames"])
    assert sum(accuracies[-5:]) / 5 > sum(accuracies[:5]) / 5 + 0.2


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_encoder_only_features_and_ctc_fine_tuning(frontend):
    model = tiny(frontend).eval()
    wavs, lengths = torch.randn(2, 16000) * 0.1, torch.tensor([16000, 12000])
    before, frames = model.extract_features(wavs, lengths)
    encoder = model.encoder_only()
    assert not any(name.startswith(("quantizer", "project_q", "final_proj")) for name in encoder.state_dict())
    after, _ = encoder.extract_features(wavs, lengths)
    assert len(after) == 3 and frames.tolist() == [49, 37]
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b)
    rebuilt = build_model("wav2vec2", encoder.config.to_dict()).encoder_only()
    rebuilt.load_state_dict(encoder.state_dict())  # strict
    tokenizer = build_tokenizer("char", ["AB C"], None)
    ctc = ctc_over_encoder(encoder.truncated(1), tokenizer, {"mask_prob": 0.1}, copy_weights=True).eval()
    assert ctc.config.encoder_family == "wav2vec2" and isinstance(ctc.encoder, Wav2Vec2Model)
    log_probs, out_frames = ctc(*ctc.inputs_from_waveforms(wavs, lengths))
    assert log_probs.shape == (2, 49, tokenizer.vocab_size) and out_frames.tolist() == [49, 37]
    again = build_model("ctc", ctc.config.to_dict())
    again.load_state_dict(ctc.state_dict())
