"""Hugging Face directories of HuBERT, wav2vec 2.0, WavLM and UniSpeech-SAT, checked against transformers' own classes
built offline from small configs with random weights: layer by layer, both ways, and through the CLI."""
from __future__ import annotations

import argparse
import json
import logging

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from audiossl import load_model
from audiossl.bin import convert
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.errors import InteropError, UserError
from audiossl.interop.huggingface import load_hf, save_hf
from audiossl.models.best_rq import BestRqConfig
from audiossl.models.ctc.factory import ctc_over_encoder
from audiossl.models.hubert import HubertConfig, build_hubert
from audiossl.models.hubert.interop import config_from_hf, config_to_hf, state_dict_from_hf
from audiossl.models.unispeech_sat import UniSpeechSatConfig
from audiossl.models.wav2vec2 import Wav2Vec2Config
from audiossl.models.wavlm import WavLMConfig
from audiossl.text.tokenizer import CharTokenizer, SentencePieceTokenizer

LAYOUTS = {"base-layout": False, "large-layout": True}
HF_CLASSES = ("HubertModel", "HubertForCTC", "Wav2Vec2Model", "Wav2Vec2ForPreTraining", "Wav2Vec2ForCTC",
              "WavLMModel", "WavLMForCTC", "UniSpeechSatModel", "UniSpeechSatForCTC")
FAMILY_SETTINGS = {
    "hubert": {},
    "wav2vec2": {"num_codevectors_per_group": 12, "codevector_dim": 32, "proj_codevector_dim": 24},
    "wavlm": {"num_buckets": 8, "max_bucket_distance": 20},  # 24 frames reach the logarithmic buckets
    "unispeech-sat": {"num_codevectors_per_group": 12, "codevector_dim": 32},
}
CTC_CLASSES = {"hubert": "HubertForCTC", "wav2vec2": "Wav2Vec2ForCTC", "wavlm": "WavLMForCTC",
               "unispeech_sat": "UniSpeechSatForCTC"}
BASE_CLASSES = {"hubert": "HubertModel", "wav2vec2": "Wav2Vec2ForPreTraining", "wavlm": "WavLMModel",
                "unispeech_sat": "UniSpeechSatModel"}
CONFIGS = {"hubert": HubertConfig, "wav2vec2": Wav2Vec2Config, "wavlm": WavLMConfig, "unispeech_sat": UniSpeechSatConfig}


def hf_model(name: str, pre_norm: bool, **settings) -> transformers.PreTrainedModel:
    """A 2-layer transformers model of class ``name``; ``pre_norm``: the large layout (stable layer
    norm, layer-norm CNN). WavLM's relative position weights are random (HF makes the gates constant)."""
    torch.manual_seed(0)
    model_class = getattr(transformers, name)
    model_type = model_class.config_class.model_type
    config = model_class.config_class(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=pre_norm,
        feat_extract_norm="layer" if pre_norm else "group", conv_bias=pre_norm, vocab_size=12,
        **FAMILY_SETTINGS[model_type], **settings)
    model = model_class(config).eval()
    with torch.no_grad():
        for parameter_name, parameter in model.named_parameters():
            if "rel_attn_embed" in parameter_name or "gru_rel_pos" in parameter_name:
                parameter.normal_()
    return model


def batch(pre_norm: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(2, 8000)`` waveforms and ``(2,)`` lengths: padded for the large layout, full length for the base."""
    lengths = torch.tensor([8000, 5000] if pre_norm else [8000, 8000])
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    return wavs * (torch.arange(8000) < lengths[:, None]), lengths


def assert_same_hidden_states(reference: transformers.PreTrainedModel, ours, pre_norm: bool) -> None:
    """HF's ``hidden_states`` (with ``attention_mask`` for the large layout) equal ``extract_features``
    on every item's valid frames."""
    wavs, lengths = batch(pre_norm)
    attention_mask = (torch.arange(8000) < lengths[:, None]).long() if pre_norm else None
    with torch.no_grad():
        expected = reference(wavs, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        hidden, frames = ours.extract_features(wavs, lengths)
    assert frames.tolist() == ([24, 15] if pre_norm else [24, 24])
    assert len(hidden) == len(expected) == 3
    for index, (a, b) in enumerate(zip(expected, hidden)):
        assert a.shape == b.shape, f"hidden state {index}"
        for item, valid in enumerate(frames.tolist()):
            torch.testing.assert_close(b[item, :valid], a[item, :valid], atol=1e-4, rtol=1e-4,
                                       msg=f"hidden state {index}, item {item}")


def load_in_transformers(directory, name: str) -> transformers.PreTrainedModel:
    """``name`` from ``directory``; every weight but a CTC head comes from the directory, and all of
    the directory's weights are used when it was written for ``name``."""
    model, info = getattr(transformers, name).from_pretrained(directory, output_loading_info=True)
    assert set(info["missing_keys"]) <= {"lm_head.weight", "lm_head.bias"} and not info["mismatched_keys"]
    if json.loads((directory / "config.json").read_text())["architectures"] == [name]:
        assert not info["unexpected_keys"]
    return model.eval()


@pytest.mark.parametrize("pre_norm", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("name", HF_CLASSES)
def test_hf_directory_loads_with_the_same_hidden_states(tmp_path, name, pre_norm):
    """Each class and layout: ``load_model(dir)`` gives HF's hidden states (``*ForCTC``: its encoder),
    and the weights written back load whole into the same class (the quantizer of Wav2Vec2ForPreTraining too)."""
    reference = hf_model(name, pre_norm)
    reference.save_pretrained(tmp_path / "hf", safe_serialization=name != "HubertForCTC")  # one pytorch_model.bin
    ours = load_model(tmp_path / "hf")
    assert ours.config.family == reference.config.model_type.replace("-", "_") and not ours.training
    assert_same_hidden_states(reference, ours, pre_norm)
    back = load_in_transformers(save_hf(ours, tmp_path / "back"), name)
    expected = reference.state_dict()
    for weight, tensor in back.state_dict().items():
        if not weight.startswith("lm_head."):
            torch.testing.assert_close(tensor, expected[weight], rtol=0, atol=0, msg=weight)


@pytest.mark.parametrize("pre_norm", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("family", CONFIGS)
def test_to_hf_loads_in_transformers(tmp_path, family, pre_norm):
    """``convert to-hf`` writes a directory that the family's classes load with the same hidden states."""
    config = CONFIGS[family].tiny()
    config.encoder.layer_norm_first = pre_norm
    config.frontend.conv_mode = "layer_norm" if pre_norm else "default"
    torch.manual_seed(0)
    ours = build_model(family, config.to_dict()).eval()
    with torch.no_grad():
        for name, parameter in ours.named_parameters():
            if "position_bias" in name or ".gate." in name:
                parameter.normal_()
    save_checkpoint(tmp_path / "model.pt", family, config.to_dict(), ours.state_dict())
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "hf")]) == 0
    written = json.loads((tmp_path / "hf/config.json").read_text())["architectures"]
    assert written == [BASE_CLASSES[family]]
    for name in (written[0], CTC_CLASSES[family]):
        reference = load_in_transformers(tmp_path / "hf", name)
        assert_same_hidden_states(reference, ours, pre_norm)
    torch.testing.assert_close(reference.base_model.masked_spec_embed.detach(), ours.mask_embedding.detach())
    if family == "wav2vec2":  # without its pretraining parts, a wav2vec 2.0 model is a Wav2Vec2Model
        save_hf(ours.encoder_only(), tmp_path / "encoder")
        assert json.loads((tmp_path / "encoder/config.json").read_text())["architectures"] == ["Wav2Vec2Model"]
        assert_same_hidden_states(load_in_transformers(tmp_path / "encoder", "Wav2Vec2Model"), ours, pre_norm)


@pytest.mark.parametrize("name", ["HubertModel", "Wav2Vec2ForPreTraining"])
def test_a_config_without_architectures_loads_by_its_model_type(tmp_path, name):
    """config.json may leave ``architectures`` out (hand-made or old files): model_type picks the family."""
    reference = hf_model(name, pre_norm=False)
    reference.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["architectures"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert_same_hidden_states(reference, load_model(tmp_path), pre_norm=False)


@pytest.mark.parametrize("name", ["Wav2Vec2ForSequenceClassification", "Data2VecAudioModel"])
def test_unsupported_class_is_refused_by_name(tmp_path, name):
    config = getattr(transformers, name).config_class()
    config.architectures = [name]
    config.save_pretrained(tmp_path)
    with pytest.raises(InteropError, match=f"class {name} is not supported; supported: HubertModel, HubertForCTC"):
        load_model(tmp_path)


def test_weights_that_do_not_fit_are_named(tmp_path):
    hf_model("WavLMForCTC", pre_norm=False).save_pretrained(tmp_path / "ctc")
    state = load_file(tmp_path / "ctc/model.safetensors")
    del state["wavlm.encoder.layers.1.feed_forward.output_dense.weight"]
    state["wavlm.encoder.layers.2.final_layer_norm.weight"] = torch.ones(64)  # a layer the config lacks
    state["wavlm.adapter.proj.weight"] = torch.zeros(1)  # no audiossl equivalent
    state["wavlm.encoder.layer_norm.bias"] = torch.zeros(32)
    save_file(state, tmp_path / "ctc/model.safetensors")
    with pytest.raises(InteropError) as error:
        load_model(tmp_path / "ctc")
    assert ("weights do not fit config.json: missing ['encoder.layers.1.feed_forward.output_dense.weight'], "
            "unexpected ['wavlm.adapter.proj.weight', 'wavlm.encoder.layers.2.final_layer_norm.weight'], "
            "wrong shape ['wavlm.encoder.layer_norm.bias (32,) (config: (64,))']") in str(error.value)
    hf_model("Wav2Vec2ForPreTraining", pre_norm=False).save_pretrained(tmp_path / "pretraining")
    state = load_file(tmp_path / "pretraining/model.safetensors")
    del state["quantizer.codevectors"]  # the class stores its quantizer: it must be there
    save_file(state, tmp_path / "pretraining/model.safetensors")
    with pytest.raises(InteropError, match=r"missing \['quantizer.codevectors'\], unexpected \[\]"):
        load_model(tmp_path / "pretraining")


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
    with pytest.raises(InteropError, match="position bias 'none', the model has 'alibi'"):
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


def test_base_layout_padded_items_equal_hf_on_each_item_alone(tmp_path):
    """HF's group norm would let padding in; audiossl's valid frames equal HF on the item alone."""
    reference = hf_model("HubertModel", pre_norm=False)
    reference.save_pretrained(tmp_path)
    wavs, lengths = batch(pre_norm=True)
    with torch.no_grad():
        alone = reference(wavs[1:, :5000], output_hidden_states=True).hidden_states
        hidden, frames = load_model(tmp_path).extract_features(wavs, lengths)
    assert frames.tolist() == [24, 15]
    for a, b in zip(alone, hidden):
        torch.testing.assert_close(b[1:, :15], a, atol=1e-4, rtol=1e-4)


def test_hf_model_without_mask_embedding_loads(tmp_path):
    hf_model("HubertModel", pre_norm=False, mask_time_prob=0.0).save_pretrained(tmp_path)
    model = load_hf(tmp_path, num_classes=50)
    assert model.mask_embedding.shape == (64,) and model.config.num_classes == 50


def test_a_model_of_standardised_waveforms_is_loaded_with_a_warning(tmp_path, caplog):
    """A feature extractor with do_normalize (the large models'): audiossl does not standardise, so it says so."""
    hf_model("HubertModel", pre_norm=True).save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))
    with caplog.at_level(logging.WARNING):
        load_hf(tmp_path)
    assert not caplog.records
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING):
        load_hf(tmp_path)
    assert f"{tmp_path}: its preprocessor_config.json standardises waveforms" in caplog.text
    (tmp_path / "preprocessor_config.json").write_text("{")
    with pytest.raises(InteropError, match="preprocessor_config.json: not JSON"):
        load_hf(tmp_path)



def test_a_model_of_another_sample_rate_takes_the_rate_of_its_feature_extractor(tmp_path):
    """config.json holds no sample rate; preprocessor_config.json does: an 8 kHz model was loaded as a 16 kHz
    one (frame_rate 50, and 16 kHz audio fed to it), silently."""
    hf_model("Wav2Vec2Model", pre_norm=False).save_pretrained(tmp_path)
    assert (load_hf(tmp_path).sample_rate, load_hf(tmp_path).frame_rate) == (16000, 50)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=8000).save_pretrained(tmp_path)
    model = load_model(tmp_path)
    assert (model.sample_rate, model.frame_rate, model.config.frontend.sample_rate) == (8000, 25, 8000)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": "8k"}))
    with pytest.raises(InteropError, match=r"preprocessor_config.json: sampling_rate must be a whole number of Hz, "
                                           r"got '8k'"):
        load_hf(tmp_path)


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_the_weights_file_of_a_directory_is_told_to_load_the_directory(tmp_path, weights):
    """The weights file given for its directory was refused as "not a torch.save file ..., or a damaged one"
    (safetensors) or "not an audiossl checkpoint" (pytorch_model.bin), as if the download were at fault."""
    hf_model("HubertModel", pre_norm=False).save_pretrained(tmp_path / "hf", safe_serialization=weights.endswith("s"))
    with pytest.raises(UserError, match=f"hf/{weights}: the weights of a Hugging Face model alone: load_model reads "
                                        f"the model directory, here {tmp_path / 'hf'}$"):
        load_model(tmp_path / "hf" / weights)
    (tmp_path / "hf" / weights).rename(tmp_path / weights)
    if weights.endswith(".safetensors"):
        with pytest.raises(UserError, match="their config.json beside them$"):
            load_model(tmp_path / weights)

def test_ctc_checkpoint_and_legacy_weight_norm_names(tmp_path):
    """HubertForCTC's ``hubert.`` prefix and the old weight_g/weight_v names load too."""
    reference = hf_model("HubertModel", pre_norm=False)
    state = {f"hubert.{name}": tensor for name, tensor in reference.state_dict().items()}
    for new, old in (("original0", "weight_g"), ("original1", "weight_v")):
        state[f"hubert.encoder.pos_conv_embed.conv.{old}"] = state.pop(
            f"hubert.encoder.pos_conv_embed.conv.parametrizations.weight.{new}")
    state["lm_head.weight"] = torch.zeros(32, 64)
    converted = state_dict_from_hf(state)
    assert "encoder.pos_embedding.conv.parametrizations.weight.original0" in converted
    assert not any(name.startswith("lm_head") for name in converted)


@pytest.mark.parametrize("name", ["HubertModel", "Wav2Vec2ForPreTraining", "WavLMForCTC"])
def test_convert_cli_both_ways(tmp_path, name):
    reference = hf_model(name, pre_norm=False)
    reference.save_pretrained(tmp_path / "hf")
    assert convert.main(["from-hf", "--num-classes", "20", str(tmp_path / "hf"), str(tmp_path / "model.pt")]) == 0
    model = load_model(tmp_path / "model.pt")
    assert_same_hidden_states(reference, model, pre_norm=False)
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "back")]) == 0
    written = json.loads((tmp_path / "back/config.json").read_text())["architectures"][0]
    assert_same_hidden_states(load_in_transformers(tmp_path / "back", written), model, pre_norm=False)


def test_convert_cli_errors_are_named(tmp_path, capsys):
    assert convert.main(["from-hf", str(tmp_path / "nothing"), str(tmp_path / "x.pt")]) == 1
    assert "no config.json" in capsys.readouterr().err
    config = transformers.Wav2Vec2Config(architectures=["Wav2Vec2ForSequenceClassification"])
    config.save_pretrained(tmp_path / "classifier")
    assert convert.main(["from-hf", str(tmp_path / "classifier"), str(tmp_path / "x.pt")]) == 1
    assert "class Wav2Vec2ForSequenceClassification is not supported" in capsys.readouterr().err
    hf_model("HubertModel", pre_norm=False).save_pretrained(tmp_path / "truncated")
    (tmp_path / "truncated/model.safetensors").write_bytes(b"\0" * 8)
    assert convert.main(["from-hf", str(tmp_path / "truncated"), str(tmp_path / "x.pt")]) == 1
    assert "model.safetensors: cannot read weights" in capsys.readouterr().err
    (tmp_path / "truncated/config.json").write_text("{")
    assert convert.main(["from-hf", str(tmp_path / "truncated"), str(tmp_path / "x.pt")]) == 1
    assert "config.json: not JSON" in capsys.readouterr().err
    fbank = HubertConfig.tiny("fbank")
    save_checkpoint(tmp_path / "fbank.pt", "hubert", fbank.to_dict(), build_hubert(fbank).state_dict())
    assert convert.main(["to-hf", str(tmp_path / "fbank.pt"), str(tmp_path / "no")]) == 1
    assert "only the waveform front end" in capsys.readouterr().err and not (tmp_path / "no").exists()
    encoder = build_model("best_rq", BestRqConfig.tiny().to_dict()).encoder_only()
    ctc = ctc_over_encoder(encoder, CharTokenizer.train(["AB"]), {}, False)
    save_checkpoint(tmp_path / "ctc.pt", "ctc", ctc.config.to_dict(), ctc.state_dict())
    assert convert.main(["to-hf", str(tmp_path / "ctc.pt"), str(tmp_path / "no")]) == 1
    assert "a 'best_rq' encoder has no Hugging Face class here; converts: hubert, wav2vec2, wavlm, unispeech_sat" \
        in capsys.readouterr().err


def test_converted_checkpoint_continues_pretraining(tmp_path):
    """``pretrain --init`` takes a Hugging Face directory or its converted checkpoint: new head, and a
    masked-prediction step trains."""
    from audiossl.tasks.pretrain import pretraining_model

    hf_model("HubertModel", pre_norm=False).save_pretrained(tmp_path / "hf")
    assert convert.main(["from-hf", str(tmp_path / "hf"), str(tmp_path / "model.pt")]) == 0
    direct = pretraining_model({"set": {"num_classes": 7}}, str(tmp_path / "hf"))  # the directory itself
    model = pretraining_model({"set": {"num_classes": 7}}, str(tmp_path / "model.pt")).train()
    assert direct.config.to_dict() == model.config.to_dict()
    for name, value in model.encoder.state_dict().items():
        assert torch.equal(value, direct.encoder.state_dict()[name]), name
    frames = int(model.num_frames(torch.tensor([8000])))
    targets = torch.randint(0, 7, (2, frames))
    out = model(torch.randn(2, 8000), torch.tensor([8000, 8000]), targets, torch.Generator().manual_seed(0))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.encoder.layers[0].feed_forward.fc1.weight.grad is not None


def test_to_hf_over_a_model_directory_replaces_its_model_whole_or_keeps_it(tmp_path, monkeypatch, capsys):
    """A failed write keeps the directory's model as it was; a written one leaves no weights of the old model."""
    reference = hf_model("WavLMModel", pre_norm=False)
    reference.save_pretrained(tmp_path / "hf", safe_serialization=False)
    (tmp_path / "hf/preprocessor_config.json").write_text("{}")
    before = {path.name: path.read_bytes() for path in (tmp_path / "hf").iterdir()}
    config = HubertConfig.tiny()
    save_checkpoint(tmp_path / "model.pt", "hubert", config.to_dict(), build_hubert(config).state_dict())

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\0" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("audiossl.interop.huggingface.save_file", full_disk)
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "hf")]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in (tmp_path / "hf").iterdir()} == before
    assert_same_hidden_states(reference, load_model(tmp_path / "hf"), pre_norm=False)
    monkeypatch.undo()
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "hf")]) == 0
    assert sorted(path.name for path in (tmp_path / "hf").iterdir()) == [
        "config.json", "model.safetensors", "preprocessor_config.json"]
    assert load_model(tmp_path / "hf").config.family == "hubert"


@pytest.mark.parametrize("edit, message", [
    ({"num_hidden_layers": 2.5}, "config.json: num_hidden_layers: expected a whole number, got 2.5"),
    ({"hidden_dropout": "none"}, "config.json: hidden_dropout: expected a number, got 'none'"),
    ({"conv_dim": 32}, "config.json: conv_dim: expected a list of a whole number, got 32"),
    ({"architectures": "HubertModel"}, "config.json: architectures: expected a list of text, got 'HubertModel'"),
    ({"num_attention_heads": None}, "config lacks 'num_attention_heads'"),
    ({"conv_stride": [5, 2]}, "conv_dim, conv_kernel and conv_stride differ in length"),
])
def test_config_json_values_of_the_wrong_type_are_named(tmp_path, capsys, edit, message):
    hf_model("HubertModel", pre_norm=False).save_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf/config.json").read_text())
    (tmp_path / "hf/config.json").write_text(json.dumps({**config, **edit}))
    assert convert.main(["from-hf", str(tmp_path / "hf"), str(tmp_path / "x.pt")]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("content, message", [
    (b"[1, 2]", "config.json: holds a list, not a mapping of settings"),
    (b"\xff\xfe{}", "config.json: not JSON: 'utf-8' codec can't decode"),
])
def test_a_config_json_that_is_no_mapping_is_named(tmp_path, capsys, content, message):
    hf_model("HubertModel", pre_norm=False).save_pretrained(tmp_path / "hf")
    (tmp_path / "hf/config.json").write_bytes(content)
    assert convert.main(["from-hf", str(tmp_path / "hf"), str(tmp_path / "x.pt")]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("content", [[torch.zeros(1)], {"weight": 1}], ids=["list", "not-tensors"])
def test_a_pytorch_model_bin_that_is_no_state_dict_is_named(tmp_path, capsys, content):
    hf_model("HubertModel", pre_norm=False).save_pretrained(tmp_path / "hf", safe_serialization=False)
    torch.save(content, tmp_path / "hf/pytorch_model.bin")
    assert convert.main(["from-hf", str(tmp_path / "hf"), str(tmp_path / "x.pt")]) == 1
    assert "pytorch_model.bin: not a state dict (names to tensors)" in capsys.readouterr().err


def test_a_pytorch_model_bin_of_other_objects_is_refused_without_advice_to_unpickle_it(tmp_path, capsys):
    hf_model("HubertModel", pre_norm=False).save_pretrained(tmp_path / "hf", safe_serialization=False)
    torch.save({"args": argparse.Namespace(lr=1.0)}, tmp_path / "hf/pytorch_model.bin")
    assert convert.main(["from-hf", str(tmp_path / "hf"), str(tmp_path / "x.pt")]) == 1
    message = capsys.readouterr().err
    assert "pytorch_model.bin: cannot read weights: not a torch.save file of tensors and plain data" in message
    assert "argparse.Namespace" in message and "weights_only" not in message and "allowlist" not in message


def test_fine_tuning_starts_from_a_hugging_face_directory_as_from_its_converted_checkpoint(tmp_path):
    """``finetune_ctc --init`` and ``finetune_utterance --pretrained`` read what ``load_model`` reads."""
    from audiossl.tasks.asr import FineTuningOptions, fine_tuning_encoder

    hf_model("WavLMForCTC", pre_norm=False).save_pretrained(tmp_path / "hf")
    assert convert.main(["from-hf", str(tmp_path / "hf"), str(tmp_path / "model.pt")]) == 0
    options = FineTuningOptions(encoder_layers=1, encoder_layer_drop=0.1)
    direct, converted = (fine_tuning_encoder(str(path), options) for path in (tmp_path / "hf", tmp_path / "model.pt"))
    assert direct.training and direct.config.to_dict() == converted.config.to_dict()
    assert direct.config.encoder.num_layers == 1 and direct.config.encoder.layer_drop == 0.1
    for name, value in converted.state_dict().items():
        assert torch.equal(direct.state_dict()[name], value), name


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_model.bin"])
def test_a_sharded_directory_loads_as_its_unsharded_one(tmp_path, safe):
    """``save_pretrained(max_shard_size=...)``'s shards and index load (``load_model``, ``convert from-hf``) with
    the hidden states of the one-file directory; ``to-hf`` over it leaves none of its shards."""
    reference = hf_model("WavLMModel", pre_norm=False)
    reference.save_pretrained(tmp_path / "whole", safe_serialization=safe)
    reference.save_pretrained(tmp_path / "sharded", safe_serialization=safe, max_shard_size="100KB")
    index = json.loads((tmp_path / f"sharded/{'model.safetensors' if safe else 'pytorch_model.bin'}.index.json")
                       .read_text())
    assert len(set(index["weight_map"].values())) > 1
    whole, sharded = load_model(tmp_path / "whole"), load_model(tmp_path / "sharded")
    assert_same_hidden_states(reference, sharded, pre_norm=False)
    for name, value in whole.state_dict().items():
        if name != "mask_embedding" and not name.startswith("head."):  # fresh: not stored by WavLMModel
            assert torch.equal(sharded.state_dict()[name], value), name
    assert convert.main(["from-hf", str(tmp_path / "sharded"), str(tmp_path / "model.pt")]) == 0
    assert_same_hidden_states(reference, load_model(tmp_path / "model.pt"), pre_norm=False)
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "sharded")]) == 0
    assert sorted(path.name for path in (tmp_path / "sharded").iterdir()) == ["config.json", "model.safetensors"]
    assert_same_hidden_states(reference, load_model(tmp_path / "sharded"), pre_norm=False)


@pytest.mark.parametrize("damage, message", [
    (lambda d, index: (d / sorted(set(index["weight_map"].values()))[0]).unlink(),
     "model-00001-of-00005.safetensors: no such shard file (model.safetensors.index.json names it)"),
    (lambda d, index: (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {**index["weight_map"], "encoder.layer_norm.bias": "../model.safetensors"}})),
     "model.safetensors.index.json: shard '../model.safetensors' is not a file of"),
    (lambda d, index: (d / "model.safetensors.index.json").write_text("{"),
     "model.safetensors.index.json: not JSON"),
    (lambda d, index: (d / "model.safetensors.index.json").write_text("[]"),
     "model.safetensors.index.json: no weight_map (weight names to shard file names)"),
    (lambda d, index: (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {**index["weight_map"], "encoder.extra": "model-00001-of-00005.safetensors"}})),
     "model-00001-of-00005.safetensors: lacks 1 weight(s) that model.safetensors.index.json places there, "
     "encoder.extra first"),
], ids=["missing-shard", "outside", "not-json", "no-weight-map", "lacking-weight"])
def test_a_damaged_sharded_directory_is_named(tmp_path, capsys, damage, message):
    hf_model("HubertModel", pre_norm=False).save_pretrained(tmp_path / "hf", max_shard_size="100KB")
    (tmp_path / "model.safetensors").write_bytes((tmp_path / "hf/model-00001-of-00005.safetensors").read_bytes())
    damage(tmp_path / "hf", json.loads((tmp_path / "hf/model.safetensors.index.json").read_text()))
    assert convert.main(["from-hf", str(tmp_path / "hf"), str(tmp_path / "x.pt")]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_unispeech_sat_codevector_settings_size_the_new_quantizer(tmp_path):
    """HF's UniSpeech-SAT base classes store no quantizer: its settings still size audiossl's, both ways."""
    hf_model("UniSpeechSatModel", pre_norm=False, num_codevector_groups=4).save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    assert (ours.config.codebook_groups, ours.config.codebook_entries, ours.config.codebook_dim) == (4, 12, 32)
    written = json.loads((save_hf(ours, tmp_path / "back") / "config.json").read_text())
    assert (written["num_codevector_groups"], written["num_codevectors_per_group"], written["codevector_dim"]) == (4, 12, 32)


def test_to_hf_killed_between_its_renames_loses_nothing(tmp_path, monkeypatch, capsys):
    """The directory is swapped whole; a kill between the swap's renames leaves the earlier one aside, which
    load_model names and the next conversion puts back (kept whole if that one fails too)."""
    reference = hf_model("HubertModel", pre_norm=False)
    reference.save_pretrained(tmp_path / "hf")
    (tmp_path / "hf/tokenizer").mkdir()
    (tmp_path / "hf/tokenizer/vocab.json").write_text("{}")
    config = WavLMConfig.tiny()
    save_checkpoint(tmp_path / "model.pt", "wavlm", config.to_dict(), build_model("wavlm", config.to_dict()).state_dict())
    rename = type(tmp_path).rename

    def killed_at_second_rename(self, target):
        if self.name == ".hf.tmp":
            raise KeyboardInterrupt
        return rename(self, target)

    monkeypatch.setattr(type(tmp_path), "rename", killed_at_second_rename)
    with pytest.raises(KeyboardInterrupt):
        convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "hf")])
    monkeypatch.undo()
    with pytest.raises(UserError, match=r"hf: no such directory, but its earlier content is in .*\.hf\.old"):
        load_model(tmp_path / "hf")
    monkeypatch.setattr("audiossl.interop.huggingface.save_file", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "hf")])
    monkeypatch.undo()
    assert_same_hidden_states(reference, load_model(tmp_path / "hf"), pre_norm=False)
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "hf")]) == 0
    assert load_model(tmp_path / "hf").config.family == "wavlm"
    assert (tmp_path / "hf/tokenizer/vocab.json").read_text() == "{}"
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []


def test_a_unispeech_sat_pretraining_directory_loads_as_its_encoder(tmp_path):
    """UniSpeechSatForPreTraining (the class of the released pretrained models): its base model's hidden
    states; its own quantizer and projections (HF's contrastive objective) are dropped."""
    reference = hf_model("UniSpeechSatForPreTraining", pre_norm=False, proj_codevector_dim=24)
    reference.save_pretrained(tmp_path / "hf")
    ours = load_model(tmp_path / "hf")
    assert ours.config.family == "unispeech_sat"
    assert_same_hidden_states(reference.unispeech_sat, ours, pre_norm=False)
    back = load_in_transformers(save_hf(ours, tmp_path / "back"), "UniSpeechSatModel")
    for weight, tensor in back.state_dict().items():
        torch.testing.assert_close(tensor, reference.unispeech_sat.state_dict()[weight], rtol=0, atol=0, msg=weight)


def test_to_hf_onto_a_file_or_through_a_link(tmp_path, capsys):
    """A file as the target directory is refused, kept; a link to a directory writes the directory it links to."""
    config = HubertConfig.tiny()
    model = build_hubert(config)
    save_checkpoint(tmp_path / "model.pt", "hubert", config.to_dict(), model.state_dict())
    (tmp_path / "other.pt").write_bytes(b"a file")
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "other.pt")]) == 1
    assert "other.pt: a file, not a directory" in capsys.readouterr().err
    assert (tmp_path / "other.pt").read_bytes() == b"a file" and not (tmp_path / ".other.pt.old").exists()
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "link")]) == 0
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "config.json").is_file()


@pytest.mark.parametrize("pre_norm", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("family", CONFIGS)
def test_a_ctc_model_goes_to_hf_with_its_tokenizer(tmp_path, family, pre_norm):
    """``to-hf`` of a CTC model: the family's ``*ForCTC`` gives the same log-probabilities, and
    ``Wav2Vec2Processor`` (its tokenizer and feature extractor read from the directory) decodes them as
    audiossl's greedy decoding; the directory loads back as the encoder."""
    config = CONFIGS[family].tiny()
    config.encoder.layer_norm_first = pre_norm
    config.frontend.conv_mode = "layer_norm" if pre_norm else "default"
    torch.manual_seed(0)
    encoder = build_model(family, config.to_dict()).encoder_only()
    ours = ctc_over_encoder(encoder, CharTokenizer.train(["HELLO WORLD", "IT'S OK"]), {}, True).eval()
    with torch.no_grad():
        ours.head.weight.mul_(20.0)  # confident enough that the greedy path spells words
    save_checkpoint(tmp_path / "ctc.pt", "ctc", ours.config.to_dict(), ours.state_dict())
    assert convert.main(["to-hf", str(tmp_path / "ctc.pt"), str(tmp_path / "hf")]) == 0
    reference = load_in_transformers(tmp_path / "hf", CTC_CLASSES[family])
    processor = transformers.Wav2Vec2Processor.from_pretrained(tmp_path / "hf")
    wavs, lengths = batch(pre_norm)
    inputs = processor([wav[:length].numpy() for wav, length in zip(wavs, lengths)], sampling_rate=16000,
                       return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = reference(**inputs).logits
        log_probs, frames = ours(wavs, lengths)
    for item, valid in enumerate(frames.tolist()):
        torch.testing.assert_close(logits[item, :valid].log_softmax(-1), log_probs[item, :valid], atol=1e-4, rtol=1e-4)
    texts = ours.transcribe(wavs, lengths)
    valid = [logits[item, :count].argmax(-1) for item, count in enumerate(frames.tolist())]
    assert any(texts) and processor.batch_decode(valid) == texts
    assert load_model(tmp_path / "hf").config.family == family


def test_a_ctc_model_of_word_pieces_is_refused_by_to_hf(tmp_path, capsys):
    """HF's CTC tokenizer holds characters: a model of SentencePiece pieces is refused, nothing written."""
    texts = ["THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG", "HELLO WORLD", "SHE SELLS SEA SHELLS BY THE SEA SHORE"]
    pieces = SentencePieceTokenizer.train(texts, vocab_size=30, model_type="bpe")
    ctc = ctc_over_encoder(build_hubert(HubertConfig.tiny()).encoder_only(), pieces, {}, False)
    save_checkpoint(tmp_path / "ctc.pt", "ctc", ctc.config.to_dict(), ctc.state_dict())
    assert convert.main(["to-hf", str(tmp_path / "ctc.pt"), str(tmp_path / "hf")]) == 1
    assert "only a CTC model of a char tokenizer has a Hugging Face tokenizer" in capsys.readouterr().err
    assert not (tmp_path / "hf").exists()
