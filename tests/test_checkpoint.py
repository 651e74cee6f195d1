"""Checkpoints refuse what they cannot trust: a damaged file, a newer format, a foreign file; each by name."""
from __future__ import annotations

import argparse

import pytest
import torch

from audiossl.checkpoint import (FORMAT, CheckpointError, checksum, content_digest, load_checkpoint, load_model,
                                 save_checkpoint)


def write(path, **tensors) -> None:
    save_checkpoint(path, "hubert", {"num_classes": 3}, tensors, train_state={"update": 7, "rng": [torch.arange(4)]})


def test_a_checkpoint_reads_back_with_its_checksum(tmp_path):
    write(tmp_path / "a.pt", weight=torch.randn(4, 3), step=torch.tensor(2))
    payload = load_checkpoint(tmp_path / "a.pt")
    assert payload["checksum"] == checksum(payload) and payload["train_state"]["update"] == 7
    changed = {**payload, "model": {**payload["model"], "step": torch.tensor(3)}}
    assert checksum(changed) != payload["checksum"]   # every value counts, not only the floating-point ones


def test_a_damaged_file_is_refused_by_name(tmp_path):
    path = tmp_path / "update_100.pt"
    write(path, weight=torch.zeros(256, 1024))    # 1 MiB of zero bytes, stored as they are
    data = bytearray(path.read_bytes())
    middle = data.index(bytes(4096)) + 2048
    data[middle] = 1                               # one flipped bit in the weights: torch.load does not notice
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True)["model"]["weight"].count_nonzero() == 1
    with pytest.raises(CheckpointError, match="update_100.pt: checksum mismatch: the file was damaged"):
        load_checkpoint(path)
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(CheckpointError, match="update_100.pt: cannot read checkpoint"):
        load_checkpoint(path)


def test_a_file_of_other_objects_is_refused_without_advice_to_unpickle_it(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read checkpoint: not a torch.save file of tensors and plain data")
    assert "argparse.Namespace" in message and "weights_only" not in message and "allowlist" not in message


def test_a_newer_format_is_refused_by_name(tmp_path):
    path = tmp_path / "future.pt"
    torch.save({"format": "audiossl/2", "family": "hubert", "config": {}, "model": {}}, path)
    with pytest.raises(CheckpointError, match=f"future.pt: written by a newer audiossl \\(format audiossl/2\\); "
                                              f"this one reads {FORMAT}: upgrade audiossl"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="written by a newer audiossl"):
        load_model(path)


def test_files_written_before_checksums_still_load(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": FORMAT, "family": "hubert", "config": {}, "model": {"w": torch.ones(2)}}, path)
    assert load_checkpoint(path)["model"]["w"].sum() == 2


def test_a_checkpoint_whose_model_does_not_build_or_fit_is_refused_by_name(tmp_path, capsys):
    """A hand-made file or one of an older audiossl: load_model and convert name the file and what is at fault."""
    from audiossl.bin import convert
    from audiossl.models.hubert import HubertConfig, build_hubert

    config = HubertConfig.tiny()
    state = build_hubert(config).state_dict()
    cases = {
        "no_weights.pt": ({"format": FORMAT, "family": "hubert", "config": config.to_dict()},
                          "not a whole audiossl checkpoint: model missing"),
        "family.pt": ({"format": FORMAT, "family": "hubret", "config": config.to_dict(), "model": state},
                      "its model config does not build: unknown model family 'hubret'"),
        "config.pt": ({"format": FORMAT, "family": "hubert", "config": {"encoder": {"num_layers": "two"}},
                       "model": state}, "its model config does not build: HubertConfig.encoder.num_layers"),
        "weights.pt": ({"format": FORMAT, "family": "hubert", "config": config.to_dict(),
                        "model": {**{k: v for k, v in state.items() if k != "mask_embedding"},
                                  "encoder.layer_norm.bias": torch.zeros(3), "old.weight": torch.zeros(1)}},
                       "its weights do not fit its hubert config: missing ['mask_embedding'], unexpected "
                       "['old.weight'], wrong shape ['encoder.layer_norm.bias (3,) (config: (64,))']"),
    }
    for name, (payload, message) in cases.items():
        torch.save(payload, tmp_path / name)
        with pytest.raises(CheckpointError) as err:
            load_model(tmp_path / name)
        assert str(err.value).startswith(f"{tmp_path / name}: ") and message in str(err.value)
        assert convert.main(["to-hf", str(tmp_path / name), str(tmp_path / "hf")]) == 1
        assert message in capsys.readouterr().err



def test_a_model_saved_from_encoder_only_loads_with_new_heads(tmp_path, caplog):
    """encoder_only() drops the quantizer and heads but keeps the config: such a file was refused as missing
    them; it loads as the whole model with those parts new (as a Hugging Face encoder does), so --init can
    continue pretraining it. Any other weight missing is still refused."""
    from audiossl.models.wav2vec2 import Wav2Vec2Config, build_wav2vec2

    torch.manual_seed(0)
    config = Wav2Vec2Config.tiny()
    encoder = build_wav2vec2(config).encoder_only().eval()
    save_checkpoint(tmp_path / "encoder.pt", "wav2vec2", config.to_dict(), encoder.state_dict())
    with caplog.at_level("INFO"):
        loaded = load_model(tmp_path / "encoder.pt")
    assert "no prediction heads in the file (saved from encoder_only()): they start new" in caplog.text
    assert loaded.quantizer is not None and set(encoder.state_dict()) < set(loaded.state_dict())
    wavs = torch.randn(1, 4000)
    assert torch.equal(loaded.extract_features(wavs)[0][-1], encoder.extract_features(wavs)[0][-1])
    state = {k: v for k, v in encoder.state_dict().items() if k != "mask_embedding"}
    save_checkpoint(tmp_path / "less.pt", "wav2vec2", config.to_dict(), state)
    with pytest.raises(CheckpointError, match=r"missing \['mask_embedding', "):
        load_model(tmp_path / "less.pt")


def test_weights_of_a_model_of_another_size_are_named_ten_of_each_kind_at_most(tmp_path):
    """A checkpoint of another size misses hundreds of weights: the message names ten and counts the others."""
    from audiossl.models.hubert import HubertConfig, build_hubert

    small = build_hubert(HubertConfig.small()).state_dict()
    torch.save({"format": FORMAT, "family": "hubert", "config": HubertConfig.tiny().to_dict(), "model": small},
               tmp_path / "other_size.pt")
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "other_size.pt")
    message = str(err.value)
    unexpected = sorted(set(small) - set(build_hubert(HubertConfig.tiny()).state_dict()))
    assert len(unexpected) > 10 and f", ... ({len(unexpected) - 10} more)], wrong shape [" in message
    assert len(message) < 3000


def test_a_path_that_is_not_there_is_named_and_a_hub_name_gets_a_hint():
    with pytest.raises(CheckpointError, match=r"^facebook/hubert-base-ls960: no such file or directory \(a hub name\? "
                                              r"nothing is downloaded: save_pretrained the model to a local directory\)$"):
        load_model("facebook/hubert-base-ls960")
    with pytest.raises(CheckpointError, match=r"^an empty path: no such file or directory$"):
        load_model("")
    with pytest.raises(CheckpointError, match=r"^exp/x/best.pt: no such file or directory$"):
        load_model("exp/x/best.pt")



def test_a_directory_of_no_model_names_what_load_model_reads_and_an_exp_dirs_checkpoint(tmp_path):
    """An experiment dir was refused as "no config.json: not a Hugging Face model directory", as if load_model
    read nothing else."""
    (tmp_path / "exp" / "checkpoints").mkdir(parents=True)
    (tmp_path / "exp" / "checkpoints" / "best.pt").write_bytes(b"")
    kept = r"; an experiment dir\? its model is .*exp/checkpoints/best.pt$"
    with pytest.raises(CheckpointError, match=r"exp: a directory of no model load_model reads: neither a Hugging Face "
                                              r"model directory \(config.json\) nor a fairseq2 checkpoint dir "
                                              r"\(model.yaml\)" + kept):
        load_model(tmp_path / "exp")
    with pytest.raises(CheckpointError, match=r"checkpoints: .*" + kept):
        load_model(tmp_path / "exp" / "checkpoints")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: a directory of no model load_model reads: .*\(model.yaml\)$"):
        load_model(tmp_path / "empty")

def test_a_model_directory_digest_covers_its_files_and_the_weights_below_it(tmp_path):
    """A Hugging Face directory by its files, a fairseq2 checkpoint dir by its weights in step_<N>/model/ too;
    what a directory holds, wherever it lies."""
    weights = tmp_path / "ckpt" / "step_3" / "model" / "pp_00" / "tp_00" / "sdp_00.pt"
    weights.parent.mkdir(parents=True)
    (tmp_path / "ckpt" / "model.yaml").write_text("model_family: wav2vec2\n")
    weights.write_bytes(b"weights 1")
    (tmp_path / "ckpt" / "step_3" / "notes.txt").write_text("not a model file\n")
    before = content_digest(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "step_3" / "notes.txt").write_text("other notes\n")
    assert content_digest(tmp_path / "ckpt") == before
    weights.write_bytes(b"weights 2")
    changed = content_digest(tmp_path / "ckpt")
    assert changed != before
    (tmp_path / "ckpt").rename(tmp_path / "moved")
    assert content_digest(tmp_path / "moved") == changed
