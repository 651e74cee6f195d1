"""Helpers of the training entry points: encoder truncation, continuing from a checkpoint, run configs."""
from __future__ import annotations

import pytest
import torch

from audiossl.bin.finetune_ctc import fine_tuning_encoder
from audiossl.bin.pretrain import ignored_model_settings, initialized_from
from audiossl.checkpoint import build_model, load_checkpoint, save_checkpoint
from audiossl.models.hubert import HubertConfig
from audiossl.models.named import model_config_from_section
from audiossl.train.config import ConfigError, load_run_config, trainer_config


def tiny_checkpoint(path):
    config = HubertConfig.tiny(frontend="fbank")
    model = build_model("hubert", config.to_dict())
    save_checkpoint(path, "hubert", config.to_dict(), model.state_dict())
    return model


def test_fine_tuning_encoder_cuts_layers_and_sets_layer_drop(tmp_path):
    tiny_checkpoint(tmp_path / "m.pt")
    payload = load_checkpoint(tmp_path / "m.pt")
    cut = fine_tuning_encoder(payload, 1, layer_drop=0.1)
    assert cut["config"]["encoder"]["num_layers"] == 1 and payload["config"]["encoder"]["num_layers"] == 2
    assert cut["config"]["encoder"]["layer_drop"] == 0.1 and payload["config"]["encoder"]["layer_drop"] == 0.05
    model = build_model("hubert", cut["config"])
    model.load_state_dict(cut["model"])  # strict: exactly the kept layers
    whole = fine_tuning_encoder(payload)
    assert whole["model"] is payload["model"] and whole["config"]["encoder"]["layer_drop"] == 0.0
    with pytest.raises(ValueError, match="encoder_layers 3 not in 1..2"):
        fine_tuning_encoder(payload, 3)


def test_initialized_from_keeps_encoder_and_replaces_targets(tmp_path):
    original = tiny_checkpoint(tmp_path / "m.pt")
    model = initialized_from(str(tmp_path / "m.pt"), num_classes=7)
    assert model.head.label_embeddings.shape[0] == 7 and model.config.num_classes == 7
    for name, value in original.encoder.state_dict().items():
        assert torch.equal(value, model.encoder.state_dict()[name]), name


def test_ignored_model_settings_names_what_init_overrides(tmp_path):
    tiny_checkpoint(tmp_path / "m.pt")
    model = initialized_from(str(tmp_path / "m.pt"), num_classes=7)
    same = HubertConfig.tiny(frontend="fbank")
    same.num_classes = 7
    assert ignored_model_settings(model, same) == []
    different = HubertConfig.tiny(frontend="fbank")
    different.num_classes, different.unmasked_weight = 7, 0.5
    different.encoder.num_layers = 4
    assert ignored_model_settings(model, different) == ["encoder", "unmasked_weight"]


def test_run_config_overrides_and_types(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: {family: hubert, size: tiny, args: {frontend: fbank}}\ntrainer: {lr: 1e-3}\n")
    run = load_run_config(path, ["trainer.max_updates=7", "model.set.num_classes=9", "trainer.schedule.name=tri_stage"])
    config = trainer_config(run["trainer"])
    assert config.lr == 1e-3 and config.max_updates == 7 and config.schedule.total_updates == 7
    assert config.schedule.name == "tri_stage"
    family, model_config = model_config_from_section(run["model"])
    assert family == "hubert" and model_config.num_classes == 9 and model_config.frontend.kind == "fbank"
    with pytest.raises(ConfigError, match=r"trainer: unknown keys \['nope'\]"):
        trainer_config({"nope": 1})
    with pytest.raises(ConfigError, match="trainer.lr: expected a number"):
        trainer_config({"lr": "fast"})
    with pytest.raises(KeyError, match="model.set: unknown key 'wat'"):
        model_config_from_section({"family": "hubert", "size": "tiny", "set": {"wat": 1}})
