"""fairseq checkpoints synthesized here (no download): written and read back with the same hidden states,
fairseq's weight names checked against torchaudio's own fairseq key map, files as old fairseq (``args``)
and HuBERT's trainer (label dictionary, omegaconf config) write them, hostile pickles refused unrun."""
from __future__ import annotations

import argparse
import builtins
import os
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict

from audiossl import load_model
from audiossl.bin import convert
from audiossl.checkpoint import CheckpointError, build_model, save_checkpoint
from audiossl.errors import InteropError
from audiossl.interop.fairseq import (DEFAULT_CONV_LAYERS, UnsafeCheckpointError, load_fairseq, parse_conv_layers,
                                      read_fairseq, save_fairseq, state_dict_to_fairseq)
from audiossl.interop.torchaudio import to_torchaudio
from audiossl.models.components import DEFAULT_CONV_LAYERS as AUDIOSSL_CONV_LAYERS
from audiossl.models.ctc.factory import ctc_over_encoder
from audiossl.models.hubert import HubertConfig
from audiossl.models.utterance.factory import utterance_over_encoder
from audiossl.models.wav2vec2 import Wav2Vec2Config
from audiossl.models.wavlm import WavLMConfig
from audiossl.text.tokenizer import CharTokenizer

LAYOUTS = {"base-layout": False, "large-layout": True}
CONFIGS = {"hubert": HubertConfig, "wav2vec2": Wav2Vec2Config, "wavlm": WavLMConfig}
FBANK_ONLY = ("num_mel_bins", "subsampler_channels", "subsampler_extra_layers")


def tiny(family: str, pre_norm: bool = False):
    """A 2 x 64 model (eval mode); ``pre_norm``: the large layout. Every weight is random (norms and WavLM's
    gates too, which start constant), so that no two weights of the same shape can be swapped unseen."""
    config = CONFIGS[family].tiny()
    config.encoder.layer_norm_first = pre_norm
    config.frontend.conv_mode = "layer_norm" if pre_norm else "default"
    config.frontend.conv_bias = pre_norm
    torch.manual_seed(0)
    model = build_model(family, config.to_dict()).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "position_bias" in name or ".gate." in name:
                parameter.normal_()
            else:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def comparable(config) -> dict:
    """The config as a dict without the fbank-only fields (a waveform model's fairseq config has none)."""
    data = config.to_dict()
    data["frontend"] = {key: value for key, value in data["frontend"].items() if key not in FBANK_ONLY}
    return data


def assert_same_hidden_states(expected, model) -> None:
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([8000, 5000])
    with torch.no_grad():
        a, frames_a = expected.extract_features(wavs, lengths)
        b, frames_b = model.extract_features(wavs, lengths)
    assert frames_a.tolist() == frames_b.tolist() and len(a) == len(b) == 3
    for index, (x, y) in enumerate(zip(a, b)):
        torch.testing.assert_close(y, x, rtol=0, atol=0, msg=f"hidden state {index}")


@pytest.mark.parametrize("pre_norm", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("family", CONFIGS)
def test_fairseq_checkpoint_round_trips(tmp_path, family, pre_norm):
    """save_fairseq writes fairseq's (unilm's) names and config; load_model reads it back whole."""
    ours = tiny(family, pre_norm)
    payload = read_fairseq(save_fairseq(ours, tmp_path / "model.pt"))
    state = payload["model"]
    norm = "feature_extractor.conv_layers.6.2.1.weight" if pre_norm else "feature_extractor.conv_layers.0.2.weight"
    for name in (norm, "feature_extractor.conv_layers.6.0.weight", "layer_norm.weight", "post_extract_proj.weight",
                 "mask_emb", "encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v", "encoder.layer_norm.bias",
                 "encoder.layers.1.self_attn.k_proj.weight", "encoder.layers.1.self_attn_layer_norm.weight",
                 "encoder.layers.1.fc1.weight", "encoder.layers.1.final_layer_norm.bias"):
        assert name in state, name
    if family == "hubert":
        assert payload["cfg"]["model"]["_name"] == "hubert"
        labels = state["label_embs_concat"]  # fairseq's four special symbols first
        assert labels.shape == (100 + 4, 32) and not labels[:4].any()
    elif family == "wav2vec2":
        assert payload["cfg"]["model"]["_name"] == "wav2vec2"
        assert state["quantizer.vars"].shape == (1, 2 * 16, 16) and "project_q.weight" in state
    else:  # unilm's layout: flat cfg, relative bias in layer 0, gates in every layer, no head
        assert payload["cfg"]["relative_position_embedding"] and set(payload) == {"cfg", "model"}
        assert state["encoder.layers.0.self_attn.relative_attention_bias.weight"].shape == (320, 4)
        assert state["encoder.layers.1.self_attn.grep_linear.weight"].shape == (8, 16)
        assert state["encoder.layers.1.self_attn.grep_a"].shape == (1, 4, 1, 1)
        assert not any("final_proj" in name or "label_embs" in name for name in state)
    back = load_model(tmp_path / "model.pt")
    assert back.config.family == family and not back.training
    assert comparable(back.config) == comparable(ours.config)
    assert_same_hidden_states(ours, back)
    expected = ours.state_dict()
    for name, tensor in back.state_dict().items():
        if not (family == "wavlm" and name.startswith("head.")):  # unilm stores no head: a new one
            torch.testing.assert_close(tensor, expected[name], rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("pre_norm", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("family", ["hubert", "wav2vec2"])
def test_torchaudio_fairseq_key_map_reads_the_written_names(tmp_path, family, pre_norm):
    """An independent reading of fairseq's names: torchaudio's fairseq importer maps the written state dict
    onto its model, which then gives audiossl's hidden states."""
    ours = tiny(family, pre_norm)
    state = read_fairseq(save_fairseq(ours, tmp_path / "model.pt"))["model"]
    reference = to_torchaudio(ours)
    converted = {name: tensor for name, tensor in _convert_state_dict(state).items() if name != "label_embs_concat"}
    reference.load_state_dict(converted)  # strict: every torchaudio weight comes from the fairseq names
    wavs = torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([8000, 8000])
    with torch.no_grad():
        expected, _ = reference.extract_features(wavs, lengths)
        final, _ = reference(wavs, lengths)
        hidden, _ = ours.extract_features(wavs, lengths)
    for a, b in zip(expected[:-1] + [final], hidden[1:]):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


def old_wav2vec2_args() -> argparse.Namespace:
    """``args`` as fairseq wrote them before its hydra configs (tuples and lists kept as strings)."""
    return argparse.Namespace(
        arch="wav2vec2", task="audio_pretraining", criterion="wav2vec", extractor_mode="default",
        conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2", conv_bias=False,
        encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=256, encoder_attention_heads=4,
        activation_fn="gelu", dropout=0.1, attention_dropout=0.1, activation_dropout=0.0, encoder_layerdrop=0.05,
        dropout_input=0.1, dropout_features=0.1, final_dim=32, layer_norm_first=False, conv_pos=16, conv_pos_groups=4,
        quantize_targets=True, latent_vars=16, latent_groups=2, latent_dim=0, latent_temp="(2,0.5,0.999995)",
        num_negatives=10, loss_weights="[0.1, 10]", logit_temp=0.1, feature_grad_mult=0.1, mask_prob=0.65,
        mask_length=10, normalize=False, lr=[0.0005], optimizer="adam")


def test_old_fairseq_args_checkpoint_loads(tmp_path):
    """A file as fairseq wrote them before hydra: ``args`` a Namespace, numpy values and optimizer state beside
    the weights; torch's plain weights-only load refuses it, load_model reads it."""
    ours = tiny("wav2vec2")
    torch.save({
        "args": old_wav2vec2_args(), "model": OrderedDict(state_dict_to_fairseq(ours.state_dict(), ours.config)),
        "optimizer_history": [{"criterion_name": "Wav2vecCriterion", "optimizer_name": "FairseqAdam",
                               "lr_scheduler_state": {"best": np.float64(3.25)}, "num_updates": 400000}],
        "extra_state": {"epoch": 57, "val_loss": np.float64(3.25), "best": np.array([3.25, 3.5]),
                        "train_iterator": {"epoch": 57, "iterations_in_epoch": 0, "shuffle": True}},
        "last_optimizer_state": {"state": {0: {"exp_avg": torch.zeros(3)}},
                                 "param_groups": [{"lr": 5e-4, "betas": (0.9, 0.98), "params": [0]}]},
    }, tmp_path / "wav2vec_small.pt")
    with pytest.raises(Exception, match="argparse.Namespace"):
        torch.load(tmp_path / "wav2vec_small.pt", weights_only=True)
    back = load_model(tmp_path / "wav2vec_small.pt")
    assert comparable(back.config) == comparable(ours.config)
    assert_same_hidden_states(ours, back)


def test_load_model_unpickles_a_file_once(tmp_path, monkeypatch):
    """A fairseq file was unpickled twice, first as an audiossl checkpoint: twice the time of a 1 GB file."""
    ours = tiny("hubert")
    save_fairseq(ours, tmp_path / "fairseq.pt")
    save_checkpoint(tmp_path / "audiossl.pt", "hubert", ours.config.to_dict(), ours.state_dict())
    loads, load = [], torch.load

    def counted(*args, **kwargs):
        loads.append(args[0])
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", counted)
    for name in ("fairseq.pt", "audiossl.pt"):
        assert_same_hidden_states(ours, load_model(tmp_path / name))
    assert loads == [tmp_path / "fairseq.pt", tmp_path / "audiossl.pt"]


@pytest.fixture
def fake_fairseq_dictionary(monkeypatch):
    """A class that pickles as ``fairseq.data.dictionary.Dictionary`` (fairseq itself is not installed)."""
    class Dictionary:
        def __init__(self, labels: list[str]) -> None:
            self.symbols = ["<s>", "<pad>", "</s>", "<unk>"] + labels
            self.count = [1] * len(self.symbols)
            self.indices = {symbol: index for index, symbol in enumerate(self.symbols)}
            self.nspecial = 4

    Dictionary.__module__, Dictionary.__qualname__ = "fairseq.data.dictionary", "Dictionary"
    for name in ("fairseq", "fairseq.data", "fairseq.data.dictionary"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["fairseq.data.dictionary"].Dictionary = Dictionary
    return Dictionary


def test_hubert_checkpoint_with_label_dictionary_and_omegaconf_config(tmp_path, fake_fairseq_dictionary, monkeypatch):
    """HuBERT as fairseq's trainer leaves it: a label dictionary in ``task_state`` (its symbols out of order
    here) and an omegaconf ``cfg``; the head's rows follow the symbols, and no fairseq code is needed."""
    ours = tiny("hubert")
    payload = read_fairseq(save_fairseq(ours, tmp_path / "written.pt"))
    order = [str(cluster) for cluster in np.random.default_rng(0).permutation(100)]
    labels = payload["model"]["label_embs_concat"]
    payload["model"]["label_embs_concat"] = torch.cat([labels[:4], labels[4:][[int(s) for s in order]]])
    payload["task_state"] = {"dictionaries": [fake_fairseq_dictionary(order)]}
    payload["cfg"] = OmegaConf.create(payload["cfg"])
    payload["cfg"].model.label_rate = "${task.label_rate}"  # an interpolation, as fairseq's HubertConfig has
    torch.save(payload, tmp_path / "hubert.pt")
    for name in ("fairseq", "fairseq.data", "fairseq.data.dictionary"):
        monkeypatch.delitem(sys.modules, name)
    back = load_model(tmp_path / "hubert.pt")
    torch.testing.assert_close(back.head.label_embeddings, ours.head.label_embeddings, rtol=0, atol=0)
    assert comparable(back.config) == comparable(ours.config)
    assert_same_hidden_states(ours, back)


class Gadget:
    """A class no fairseq checkpoint holds; unpickling it would run ``__setstate__``."""

    marker = None

    def __setstate__(self, state):
        open(state["marker"], "w").close()


class ShellCommand:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class PythonCode(ShellCommand):
    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")
@pytest.mark.parametrize("hostile, protocol", [("gadget", 2), ("os.system", 2), ("exec", 4), ("os.system", "legacy")])
def test_hostile_checkpoint_is_refused_by_type_and_nothing_runs(tmp_path, capsys, hostile, protocol):
    marker = tmp_path / "ran"
    if hostile == "gadget":
        bomb, name = Gadget(), f"{Gadget.__module__}.Gadget"
        bomb.marker = str(marker)
    else:
        bomb = ShellCommand(marker) if hostile == "os.system" else PythonCode(marker)
        name = f"{os.system.__module__}.system" if hostile == "os.system" else "builtins.exec"
    payload = {"cfg": {"model": {"_name": "hubert"}}, "model": {"mask_emb": torch.zeros(4)}, "extra_state": bomb}
    if protocol == "legacy":
        torch.save(payload, tmp_path / "evil.pt", _use_new_zipfile_serialization=False)
    else:
        torch.save(payload, tmp_path / "evil.pt", pickle_protocol=protocol)
    refusal = f"evil.pt: refused to unpickle {name}: .*nothing in the file was run"
    with pytest.raises(UnsafeCheckpointError, match=refusal):
        read_fairseq(tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match=f"refused to unpickle {name}"):
        load_model(tmp_path / "evil.pt")
    assert convert.main(["from-fairseq", str(tmp_path / "evil.pt"), str(tmp_path / "out.pt")]) == 1
    assert f"refused to unpickle {name}" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_foreign_settings_and_weights_are_named(tmp_path):
    ours = tiny("hubert")
    payload = read_fairseq(save_fairseq(ours, tmp_path / "model.pt"))

    def load_with(cfg_model=None, **state_changes):
        changed = {"cfg": {**payload["cfg"], "model": {**payload["cfg"]["model"], **(cfg_model or {})}},
                   "model": {**payload["model"], **state_changes}}
        torch.save(changed, tmp_path / "changed.pt")
        return load_fairseq(tmp_path / "changed.pt")

    with pytest.raises(InteropError, match=r"unsupported fairseq hubert settings: activation_fn='relu' \(need"):
        load_with({"activation_fn": "relu"})
    with pytest.raises(InteropError, match="extractor_mode='conv2d'"):
        load_with({"extractor_mode": "conv2d"})
    with pytest.raises(InteropError, match="fairseq model 'transformer_lm' is not supported"):
        load_with({"_name": "transformer_lm"})
    with pytest.raises(InteropError, match="cannot read conv_feature_layers"):
        load_with({"conv_feature_layers": "[(32, 10, 5)] + __import__('os').system('true')"})
    with pytest.raises(InteropError, match="fairseq setting encoder_layers: expected a whole number, got 'two'"):
        load_with({"encoder_layers": "two"})
    with pytest.raises(InteropError, match="fairseq setting dropout: expected a number, got 'none'"):
        load_with({"dropout": "none"})
    state = dict(payload["model"])
    del state["encoder.layers.1.fc2.weight"]
    state["encoder.layers.2.fc1.bias"] = torch.zeros(256)
    state["encoder.layer_norm.bias"] = torch.zeros(32)
    torch.save({**payload, "model": state}, tmp_path / "changed.pt")
    with pytest.raises(InteropError) as error:
        load_fairseq(tmp_path / "changed.pt")
    assert ("weights do not fit its config: missing ['encoder.layers.1.fc2.weight'], unexpected "
            "['encoder.layers.2.fc1.bias'], wrong shape ['encoder.layer_norm.bias (32,) (config: (64,))']"
            in str(error.value))
    with pytest.raises(InteropError, match="fairseq weights with no equivalent: \\['encoder.adapter.weight'\\]"):
        load_with(**{"encoder.adapter.weight": torch.zeros(1)})
    (tmp_path / "empty.pt").write_bytes(b"")  # torch's reason is an EOFError without words
    with pytest.raises(InteropError, match=r"empty.pt: cannot read checkpoint: not a torch.save file .*\(EOFError: \)"):
        load_fairseq(tmp_path / "empty.pt")
    torch.save({"weight": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(InteropError, match="not a fairseq checkpoint"):
        load_fairseq(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an audiossl checkpoint"):  # neither kind: audiossl's error
        load_model(tmp_path / "plain.pt")


@pytest.mark.parametrize("change, message", [
    (lambda p: p["cfg"].update(model=[1]), "its cfg's model section is not a mapping of settings"),
    (lambda p: p["cfg"].update(task="audio_pretraining"), "its cfg's task section is not a mapping of settings"),
    (lambda p: p["model"].update({"encoder.layer_norm.bias": 3}),
     "model weights hold values that are not tensors: ['encoder.layer_norm.bias']"),
    (lambda p: p.update(task_state=[1]), "its task_state is a list, not a mapping"),
    (lambda p: p["cfg"]["model"].update(latent_temp="(2.0, 0.5)"),
     "fairseq setting latent_temp: expected a list of 3 numbers, got (2.0, 0.5)"),
    (lambda p: p["cfg"]["criterion"].update(loss_weights=0.1),
     "fairseq setting loss_weights: expected a list of 1 or 2 numbers, got 0.1"),
    (lambda p: p["cfg"].update(model={"_name": "wav2vec2"}),
     "its config lacks ['conv_feature_layers', 'encoder_layers', 'encoder_embed_dim', 'encoder_ffn_embed_dim', "
     "'encoder_attention_heads', 'conv_pos', 'conv_pos_groups'], which took fairseq's defaults"),
], ids=["model-section", "task-section", "weights", "task-state", "latent-temp", "loss-weights", "sizes-left-out"])
def test_a_fairseq_file_of_another_layout_is_named(tmp_path, capsys, change, message):
    """A damaged or hand-made file: the part at fault is named, not a TypeError or AttributeError from inside."""
    payload = read_fairseq(save_fairseq(tiny("wav2vec2"), tmp_path / "model.pt"))
    change(payload)
    torch.save(payload, tmp_path / "changed.pt")
    assert convert.main(["from-fairseq", str(tmp_path / "changed.pt"), str(tmp_path / "out.pt")]) == 1
    assert message in capsys.readouterr().err and not (tmp_path / "out.pt").exists()


def test_unconvertible_models_are_named(tmp_path):
    with pytest.raises(InteropError, match="only the waveform front end"):
        save_fairseq(build_model("hubert", HubertConfig.tiny("fbank").to_dict()), tmp_path / "x.pt")
    alibi = HubertConfig.tiny()
    alibi.encoder.position_bias = "alibi"
    with pytest.raises(InteropError, match="fairseq's hubert has attention position bias 'none', the model has 'alibi"):
        save_fairseq(build_model("hubert", alibi.to_dict()), tmp_path / "x.pt")
    with pytest.raises(InteropError, match="checkpoints hold quantizer.vars; the model has no pretraining parts"):
        save_fairseq(tiny("wav2vec2").encoder_only(), tmp_path / "x.pt")
    ctc = ctc_over_encoder(tiny("hubert").encoder_only(), CharTokenizer.train(["AB"]), {}, False)
    utterance = utterance_over_encoder(tiny("hubert"), {"head": {"num_classes": 3}})
    for model in (ctc, utterance):  # fine-tuned models: refused by family
        with pytest.raises(InteropError, match=f"a {model.config.family!r} model has no fairseq checkpoint format"):
            save_fairseq(model, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_conv_feature_layers_are_parsed_without_eval():
    assert parse_conv_layers(DEFAULT_CONV_LAYERS) == AUDIOSSL_CONV_LAYERS
    assert parse_conv_layers("[(512,10,5)]+[(512,3,2)]*4+[(512,2,2)]*2") == AUDIOSSL_CONV_LAYERS
    with pytest.raises(InteropError, match="repeats more than 1000 times"):
        parse_conv_layers("[(1, 1, 1)] * 10000000000")


@pytest.mark.parametrize("family", CONFIGS)
def test_convert_cli_both_ways(tmp_path, family):
    ours = tiny(family)
    save_fairseq(ours, tmp_path / "fairseq.pt")
    assert convert.main(["from-fairseq", "--num-classes", "20", str(tmp_path / "fairseq.pt"),
                         str(tmp_path / "model.pt")]) == 0
    model = load_model(tmp_path / "model.pt")
    if family != "wav2vec2":  # the head's size: the file's for HuBERT, --num-classes for WavLM (unilm stores none)
        assert model.config.num_classes == {"hubert": 100, "wavlm": 20}[family]
    assert_same_hidden_states(ours, model)
    save_checkpoint(tmp_path / "ours.pt", family, ours.config.to_dict(), ours.state_dict())
    assert convert.main(["to-fairseq", str(tmp_path / "ours.pt"), str(tmp_path / "back.pt")]) == 0
    assert_same_hidden_states(ours, load_fairseq(tmp_path / "back.pt"))


@pytest.mark.parametrize("family", CONFIGS)
def test_the_sample_rate_goes_both_ways(tmp_path, capsys, family):
    """A 24 kHz model stays one through fairseq (its task's sample_rate); Hugging Face and torchaudio, which record
    no sample rate, refuse it rather than make it a 16 kHz one."""
    model = tiny(family)
    model.config.frontend.sample_rate = 24000
    model = build_model(family, model.config.to_dict())
    save_checkpoint(tmp_path / "model.pt", family, model.config.to_dict(), model.state_dict())
    assert convert.main(["to-fairseq", str(tmp_path / "model.pt"), str(tmp_path / "fairseq.pt")]) == 0
    back = load_model(tmp_path / "fairseq.pt")
    assert back.sample_rate == 24000 and comparable(back.config) == comparable(model.config)
    if family == "hubert":  # labels at the model's frame rate: 24000 / 320
        assert read_fairseq(tmp_path / "fairseq.pt")["cfg"]["task"]["label_rate"] == 75.0
    assert convert.main(["to-hf", str(tmp_path / "model.pt"), str(tmp_path / "hf")]) == 1
    assert "only 16000 Hz models have a Hugging Face or torchaudio equivalent" in capsys.readouterr().err
    with pytest.raises(InteropError, match="this model takes 24000 Hz"):
        to_torchaudio(model)


@pytest.mark.parametrize("old_args", [False, True], ids=["cfg", "args"])
def test_a_model_trained_on_standardised_waveforms_is_loaded_with_a_warning(tmp_path, caplog, old_args):
    """fairseq's large models standardise each waveform in the data (normalize); audiossl models do not."""
    payload = read_fairseq(save_fairseq(tiny("wav2vec2", pre_norm=True), tmp_path / "model.pt"))
    assert caplog.records == [] and load_model(tmp_path / "model.pt") is not None and caplog.records == []
    if old_args:
        settings = {**payload["cfg"]["task"], **payload["cfg"]["criterion"], **payload["cfg"]["model"]}
        payload = {**payload, "cfg": None, "args": argparse.Namespace(**{**settings, "arch": "wav2vec2",
                                                                          "normalize": True})}
    else:
        payload["cfg"]["task"]["normalize"] = True
    torch.save(payload, tmp_path / "large.pt")
    load_model(tmp_path / "large.pt")
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "large.pt: trained on waveforms standardised to zero mean and unit variance" in caplog.text


@pytest.mark.parametrize("command", ["to-fairseq", "from-fairseq"])
def test_convert_refuses_to_write_over_its_source(tmp_path, capsys, command):
    """``convert to-fairseq best.pt best.pt`` would replace the only copy of the model with another format."""
    source = tmp_path / "model.pt"
    model = tiny("hubert")
    if command == "to-fairseq":
        save_checkpoint(source, "hubert", model.config.to_dict(), model.state_dict())
    else:
        save_fairseq(model, source)
    before = source.read_bytes()
    assert convert.main([command, str(source), str(tmp_path / "." / "model.pt")]) == 1
    assert "model.pt is the source: converting onto it would replace it" in capsys.readouterr().err
    assert source.read_bytes() == before


@pytest.mark.parametrize("family", ["hubert", "wavlm"])
def test_a_fairseq_checkpoint_continues_pretraining(tmp_path, family):
    """``pretrain --init`` reads a fairseq file: the encoder's weights, a new label table of the run's classes."""
    from audiossl.tasks.pretrain import pretraining_model

    ours = tiny(family)
    save_fairseq(ours, tmp_path / "model.pt")
    model = pretraining_model({"set": {"num_classes": 7}}, str(tmp_path / "model.pt"))
    assert model.training and model.config.num_classes == 7 and model.head.label_embeddings.shape[0] == 7
    for name, value in ours.encoder.state_dict().items():
        assert torch.equal(value, model.encoder.state_dict()[name]), name
