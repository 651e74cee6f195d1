"""Hugging Face HuBERT interop, checked against transformers' own HubertModel built offline
from a small config with random weights: layer by layer, both ways, and through the CLI."""
from __future__ import annotations

import json

import pytest
import torch
import transformers

from audiossl import load_model
from audiossl.bin import convert
from audiossl.checkpoint import save_checkpoint
from audiossl.interop.huggingface import load_hubert, save_hubert
from audiossl.models.hubert import HubertConfig, build_hubert
from audiossl.errors import InteropError
from audiossl.models.hubert.interop import config_from_hf, config_to_hf, state_dict_from_hf

LENGTHS = torch.tensor([8000, 8000])


def hf_hubert(pre_norm: bool) -> transformers.HubertModel:
    """A 2-layer HF HuBERT; ``pre_norm``: the LARGE layout (stable layer norm, layer-norm CNN)."""
    torch.manual_seed(0)
    config = transformers.HubertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=pre_norm, feat_extract_norm="layer" if pre_norm else "group", conv_bias=pre_norm,
    )
    return transformers.HubertModel(config).eval()


def hf_hidden_states(model: transformers.HubertModel, wavs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(wavs, output_hidden_states=True).hidden_states


def assert_same_layers(reference, ours) -> None:
    assert len(reference) == len(ours)
    for index, (a, b) in enumerate(zip(reference, ours)):
        assert a.shape == b.shape, f"hidden state {index}"
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=f"hidden state {index} differs")


@pytest.mark.parametrize("pre_norm", [False, True], ids=["base-layout", "large-layout"])
def test_hf_directory_loads_with_the_same_hidden_states(tmp_path, pre_norm):
    reference = hf_hubert(pre_norm)
    reference.save_pretrained(tmp_path / "hf")
    ours = load_hubert(tmp_path / "hf", num_classes=50)
    assert not ours.training and ours.config.num_classes == 50
    assert ours.config.encoder.layer_norm_first == pre_norm
    wavs = torch.randn(2, 8000)
    with torch.no_grad():
        hidden, frames = ours.extract_features(wavs, LENGTHS)
    assert frames.tolist() == [24, 24]
    assert_same_layers(hf_hidden_states(reference, wavs), hidden)


@pytest.mark.parametrize("pre_norm", [False, True], ids=["base-layout", "large-layout"])
def test_audiossl_model_saved_for_hf_gives_the_same_hidden_states(tmp_path, pre_norm):
    config = HubertConfig.tiny()
    config.encoder.layer_norm_first = pre_norm
    config.frontend.conv_mode = "layer_norm" if pre_norm else "default"
    ours = build_hubert(config).eval()
    save_hubert(ours, tmp_path / "hf")
    reference = transformers.HubertModel.from_pretrained(tmp_path / "hf").eval()
    wavs = torch.randn(2, 8000)
    with torch.no_grad():
        hidden, _ = ours.extract_features(wavs, LENGTHS)
    assert_same_layers(hf_hidden_states(reference, wavs), hidden)
    torch.testing.assert_close(reference.masked_spec_embed.detach(), ours.mask_embedding.detach())


def test_config_round_trip():
    """What HF stores comes back; fbank-only and training-only settings keep their defaults."""
    config = HubertConfig.small()
    back = config_from_hf(config_to_hf(config), num_classes=config.num_classes)
    assert back.encoder == config.encoder
    fe, back_fe = config.frontend, back.frontend
    assert (back_fe.kind, back_fe.conv_layers, back_fe.conv_mode, back_fe.conv_bias) == (
        fe.kind, fe.conv_layers, fe.conv_mode, fe.conv_bias)
    assert back.dropout_input == config.dropout_input


def test_unsupported_inputs_are_named():
    with pytest.raises(InteropError, match="only the waveform front end"):
        config_to_hf(HubertConfig.tiny("fbank"))
    alibi = HubertConfig.tiny()
    alibi.encoder.position_bias = "alibi"
    with pytest.raises(InteropError, match="has no 'alibi' attention position bias"):
        config_to_hf(alibi)
    hf = config_to_hf(HubertConfig.tiny())
    with pytest.raises(InteropError, match="hidden_act='relu'"):
        config_from_hf({**hf, "hidden_act": "relu"})
    with pytest.raises(InteropError, match="model_type 'wav2vec2'"):
        config_from_hf({**hf, "model_type": "wav2vec2"})
    with pytest.raises(InteropError, match="encoder.extra.weight"):
        state_dict_from_hf({"encoder.extra.weight": torch.zeros(1)})
    with pytest.raises(InteropError, match="lacks 'hidden_size'"):
        config_from_hf({k: v for k, v in hf.items() if k != "hidden_size"})
    with pytest.raises(InteropError, match="divisible"):
        config_from_hf({**hf, "num_attention_heads": 5})


def test_missing_keys_take_hugging_face_defaults():
    hf = config_to_hf(HubertConfig.tiny())
    for key in ("activation_dropout", "layerdrop", "feat_proj_dropout"):
        del hf[key]
    config = config_from_hf(hf)
    defaults = transformers.HubertConfig()
    assert config.encoder.activation_dropout == defaults.activation_dropout
    assert config.encoder.layer_drop == defaults.layerdrop
    assert config.dropout_input == defaults.feat_proj_dropout


def test_padded_batches(tmp_path):
    """LARGE layout: equal to HF's padded batch with its attention mask. BASE layout: each item's
    valid frames equal HF on that item alone (HF's group norm would let padding in)."""
    wavs, lengths = torch.randn(2, 8000), torch.tensor([8000, 5000])
    wavs[1, 5000:] = 0.0
    large = hf_hubert(pre_norm=True)
    large.save_pretrained(tmp_path / "large")
    with torch.no_grad():
        reference = large(wavs, attention_mask=(torch.arange(8000) < lengths[:, None]).long(),
                          output_hidden_states=True).hidden_states
        hidden, frames = load_hubert(tmp_path / "large").extract_features(wavs, lengths)
    assert frames.tolist() == [24, 15]
    for a, b in zip(reference, hidden):
        torch.testing.assert_close(b[1, :15], a[1, :15], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(b[0], a[0], atol=1e-4, rtol=1e-4)
    base = hf_hubert(pre_norm=False)
    base.save_pretrained(tmp_path / "base")
    with torch.no_grad():
        alone = hf_hidden_states(base, wavs[1:, :5000])
        hidden, _ = load_hubert(tmp_path / "base").extract_features(wavs, lengths)
    for a, b in zip(alone, hidden):
        torch.testing.assert_close(b[1:, :15], a, atol=1e-4, rtol=1e-4)


def test_hf_model_without_mask_embedding_loads(tmp_path):
    config = hf_hubert(pre_norm=False).config
    config.mask_time_prob = 0.0
    transformers.HubertModel(config).save_pretrained(tmp_path / "hf")
    model = load_hubert(tmp_path / "hf")
    assert model.mask_embedding.shape == (64,)


def test_ctc_checkpoint_and_legacy_weight_norm_names(tmp_path):
    """HubertForCTC's ``hubert.`` prefix and the old weight_g/weight_v names load too."""
    reference = hf_hubert(pre_norm=False)
    state = {f"hubert.{name}": tensor for name, tensor in reference.state_dict().items()}
    for new, old in (("original0", "weight_g"), ("original1", "weight_v")):
        state[f"hubert.encoder.pos_conv_embed.conv.{old}"] = state.pop(
            f"hubert.encoder.pos_conv_embed.conv.parametrizations.weight.{new}")
    state["lm_head.weight"] = torch.zeros(32, 64)
    converted = state_dict_from_hf(state)
    assert "encoder.pos_embedding.conv.parametrizations.weight.original0" in converted
    assert not any(name.startswith("lm_head") for name in converted)


def test_convert_cli_both_ways(tmp_path, capsys):
    reference = hf_hubert(pre_norm=False)
    reference.save_pretrained(tmp_path / "hf")
    assert convert.main(["from-hf", "--num-classes", "20", str(tmp_path / "hf"), str(tmp_path / "model.pt")]) == 0
    model = load_model(tmp_path / "model.pt")
    wavs = torch.randn(2, 8000)
    with torch.no_grad():
        hidden, _ = model.extract_features(wavs, LENGTHS)
    assert_same_layers(hf_hidden_states(reference, wavs), hidden)
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "back")]) == 0
    assert json.loads((tmp_path / "back/config.json").read_text())["hidden_size"] == 64
    assert_same_layers(hf_hidden_states(transformers.HubertModel.from_pretrained(tmp_path / "back"), wavs), hidden)
    assert convert.main(["from-hf", str(tmp_path / "nothing"), str(tmp_path / "x.pt")]) == 1
    assert "no config.json" in capsys.readouterr().err
    fbank = HubertConfig.tiny("fbank")
    save_checkpoint(tmp_path / "fbank.pt", "hubert", fbank.to_dict(), build_hubert(fbank).state_dict())
    assert convert.main(["to-hf", str(tmp_path / "fbank.pt"), str(tmp_path / "no")]) == 1
    assert "only the waveform front end" in capsys.readouterr().err and not (tmp_path / "no").exists()


def test_converted_checkpoint_continues_pretraining(tmp_path):
    """``pretrain --init`` takes a converted checkpoint: new head, and a masked-prediction step trains."""
    from audiossl.tasks.pretrain import pretraining_model

    hf_hubert(pre_norm=False).save_pretrained(tmp_path / "hf")
    assert convert.main(["from-hf", str(tmp_path / "hf"), str(tmp_path / "model.pt")]) == 0
    config = HubertConfig.tiny()
    config.num_classes = 7
    model = pretraining_model(config, str(tmp_path / "model.pt")).train()
    frames = int(model.num_frames(torch.tensor([8000])))
    targets = torch.randint(0, 7, (2, frames))
    out = model(torch.randn(2, 8000), LENGTHS, targets, torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.encoder.layers[0].feed_forward.fc1.weight.grad is not None
