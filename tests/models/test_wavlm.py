"""WavLM: HuBERT's objective through the gated relative position bias; sizes, padding, fine-tuning."""
from __future__ import annotations

import pytest
import torch

from audiossl.checkpoint import build_model
from audiossl.models.ctc.factory import ctc_over_encoder
from audiossl.models.wavlm import NAMED_CONFIGS, WavLMConfig, WavLMModel, build_wavlm
from audiossl.nn.transformer import PositionBiasGate, RelativePositionBias
from audiossl.text.tokenizer import build_tokenizer

from tests.models.test_hubert import batch, model_inputs, random_targets


def test_named_sizes_are_the_papers():
    assert sorted(NAMED_CONFIGS) == ["base", "base_plus", "large", "small", "tiny"]
    base, large = WavLMConfig.base(), WavLMConfig.large()
    assert WavLMConfig.base_plus() == base
    assert (base.encoder.position_bias, base.encoder.position_buckets, base.encoder.max_distance) == (
        "gated_relative", 320, 800)
    assert (base.encoder.num_layers, base.encoder.dim, base.encoder.layer_norm_first) == (12, 768, False)
    assert (large.encoder.num_layers, large.encoder.dim, large.encoder.num_heads, large.encoder.ffn_dim) == (
        24, 1024, 16, 4096)
    assert large.encoder.layer_norm_first and large.frontend.conv_mode == "layer_norm" and not large.frontend.conv_bias
    assert WavLMConfig.small("fbank").encoder.position_bias == "gated_relative"
    assert WavLMConfig.from_dict(WavLMConfig.tiny().to_dict()) == WavLMConfig.tiny()


def test_one_bias_table_and_a_gate_per_layer():
    model = build_wavlm(WavLMConfig.tiny())
    assert isinstance(model.encoder.position_bias, RelativePositionBias)
    gates = [layer.attention.gate for layer in model.encoder.layers]
    assert all(isinstance(gate, PositionBiasGate) for gate in gates) and len({id(g) for g in gates}) == len(gates)
    assert model.encoder.position_bias.embedding.weight.std() < 0.05  # BERT init, as fairseq


@pytest.mark.parametrize("frontend", ["waveform", "fbank"])
def test_step_trains_the_bias_and_padding_does_not_leak(frontend):
    torch.manual_seed(0)
    config = WavLMConfig.tiny(frontend)
    config.encoder.position_buckets, config.encoder.max_distance = 16, 40
    model = build_wavlm(config)
    inputs, lengths = model_inputs(model, *batch(lengths=(16000, 9000)))
    out = model(inputs, lengths, random_targets(model, lengths, config.num_classes), torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert model.encoder.position_bias.embedding.weight.grad.abs().sum() > 0
    assert all(layer.attention.gate.linear.weight.grad.abs().sum() > 0 for layer in model.encoder.layers)
    model.eval()
    wavs, wav_lengths = batch(seed=1, lengths=(7000, 20000))
    with torch.no_grad():
        batched, frames = model.extract_features(wavs, wav_lengths)
        alone, _ = model.extract_features(wavs[:1, :7000], wav_lengths[:1])
    for a, b in zip(batched, alone):
        torch.testing.assert_close(a[0, : frames[0]], b[0], atol=1e-4, rtol=1e-4)


def test_encoder_only_rebuilds_and_fine_tunes():
    torch.manual_seed(0)
    model = build_wavlm(WavLMConfig.tiny()).eval()
    encoder = model.encoder_only()
    rebuilt = build_model("wavlm", encoder.config.to_dict()).encoder_only()
    rebuilt.load_state_dict(encoder.state_dict())  # strict: the bias table and the gates included
    ctc = ctc_over_encoder(encoder.truncated(1), build_tokenizer("char", ["AB C"], None), {}, copy_weights=True)
    assert ctc.config.encoder_family == "wavlm" and isinstance(ctc.encoder, WavLMModel)
    again = build_model("ctc", ctc.config.to_dict())
    again.load_state_dict(ctc.state_dict())
