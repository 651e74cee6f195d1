"""WavLM against transformers' WavLMModel built offline from a small config with random weights (the
relative position bias and its gates randomised too): the same hidden states layer by layer, both
layouts, a padded batch for the layer-norm layout; weights and configs both ways."""
from __future__ import annotations

import pytest
import torch
import transformers

from audiossl.errors import InteropError
from audiossl.models.hubert import HubertConfig
from audiossl.models.hubert.interop import config_to_hf as hubert_config_to_hf
from audiossl.models.wavlm import WavLMConfig, build_wavlm
from audiossl.models.wavlm.interop import config_from_hf, config_to_hf, state_dict_from_hf, state_dict_to_hf
from audiossl.nn.transformer import relative_position_buckets

LAYOUTS = {"base-layout": False, "large-layout": True}


def hf_wavlm(pre_norm: bool) -> transformers.WavLMModel:
    torch.manual_seed(0)
    config = transformers.WavLMConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=pre_norm,
        feat_extract_norm="layer" if pre_norm else "group", num_buckets=32, max_bucket_distance=100)
    model = transformers.WavLMModel(config).eval()
    with torch.no_grad():  # HF initialises the gates to a constant scale; make them matter
        for name, parameter in model.named_parameters():
            if "rel_pos" in name or "rel_attn" in name:
                parameter.normal_()
    return model


@pytest.mark.parametrize("pre_norm", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_same_hidden_states(pre_norm):
    reference = hf_wavlm(pre_norm)
    ours = build_wavlm(config_from_hf(reference.config.to_dict())).eval()
    missing, unexpected = ours.load_state_dict(state_dict_from_hf(reference.state_dict()), strict=False)
    assert not unexpected and all(name.startswith("head.") for name in missing)
    wavs = torch.randn(2, 40000)  # 124 frames: distances beyond max_exact use the logarithmic buckets
    lengths = torch.tensor([40000, 30000]) if pre_norm else torch.tensor([40000, 40000])
    attention_mask = (torch.arange(40000)[None] < lengths[:, None]).long()
    with torch.no_grad():
        expected = reference(wavs, attention_mask=attention_mask if pre_norm else None,
                             output_hidden_states=True).hidden_states
        hidden, frames = ours.extract_features(wavs, lengths)
    assert len(hidden) == len(expected) == 3
    for index, (a, b) in enumerate(zip(expected, hidden)):
        for item, valid in enumerate(frames.tolist()):
            torch.testing.assert_close(b[item, :valid], a[item, :valid], atol=1e-4, rtol=1e-4,
                                       msg=f"hidden state {index}, item {item}")


def test_buckets_are_wavlm_s():
    attention = hf_wavlm(False).encoder.layers[0].attention
    relative = torch.arange(-300, 301)
    expected = attention._relative_positions_bucket(relative)
    torch.testing.assert_close(relative_position_buckets(relative, 32, 100), expected)


def test_audiossl_weights_load_into_transformers():
    torch.manual_seed(0)
    ours = build_wavlm(WavLMConfig.tiny()).eval()
    hf_config = transformers.WavLMConfig(**config_to_hf(ours.config))
    reference = transformers.WavLMModel(hf_config).eval()
    reference.load_state_dict(state_dict_to_hf(ours.state_dict()))  # strict: every weight
    wavs = torch.randn(1, 8000)
    with torch.no_grad():
        expected = reference(wavs, output_hidden_states=True).hidden_states
        hidden, _ = ours.extract_features(wavs, torch.tensor([8000]))
    for a, b in zip(expected, hidden):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    back = config_from_hf(config_to_hf(ours.config))
    assert back.encoder == ours.config.encoder and back.frontend.conv_layers == ours.config.frontend.conv_layers


def test_position_bias_mismatches_are_named():
    with pytest.raises(InteropError, match="not a wavlm config"):
        config_from_hf({"model_type": "hubert"})
    with pytest.raises(InteropError, match="position bias 'none', the model has 'gated_relative'"):
        hubert_config_to_hf(WavLMConfig.tiny())  # a WavLM is not a HubertModel
    plain = WavLMConfig.tiny()
    plain.encoder.position_bias = "none"
    with pytest.raises(InteropError, match="position bias 'gated_relative', the model has 'none'"):
        config_to_hf(plain)
    assert HubertConfig.tiny().encoder.position_bias == "none"
