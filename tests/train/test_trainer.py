"""The trainer: exact resume after interruption, non-finite losses, checkpoints, schedules."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from audiossl.checkpoint import build_model, load_checkpoint, load_model
from audiossl.data.dataset import BucketBatchSampler, UtteranceDataset
from audiossl.data.kaldi_dir import DataDir, merge_tables, write_table
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.features.store import compute_features
from audiossl.models.hubert import HubertConfig
from audiossl.tasks.ssl import MaskedPredictionTask
from audiossl.train import precision
from audiossl.train.config import trainer_config
from audiossl.train.schedules import ScheduleConfig, lr_multiplier
from audiossl.train.trainer import Trainer, TrainingError


@pytest.fixture
def fbank_dir(data_dir: Path) -> Path:
    """The shared data dir with 80-dim fbank in feats.scp (and utt2num_frames)."""
    data = DataDir.read(data_dir)
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--num-mel-bins=80"]))
    frames = compute_features(data, extractor, data_dir / "fbank" / "raw.ark")
    write_table(data_dir / "feats.scp", merge_tables([data_dir / "fbank" / "raw.scp"]))
    write_table(data_dir / "utt2num_frames", {k: str(v) for k, v in frames.items()})
    return data_dir


def make_run(fbank_dir: Path, exp: Path, **trainer):
    config = HubertConfig.tiny(frontend="fbank")
    config.num_classes = 5
    config.frequency_warp = 0.1  # resuming must also restore the warp factors' random stream
    torch.manual_seed(0)  # the bins seed model initialisation the same way
    model = build_model("hubert", config.to_dict())
    rng = np.random.default_rng(0)
    lengths = UtteranceDataset(fbank_dir, "fbank").lengths
    utts = DataDir.read(fbank_dir).utterances
    labels = {u: rng.integers(0, 5, int(model.num_frames(torch.tensor([n]))[0])) for u, n in zip(utts, lengths)}
    frames_of = lambda n: int(model.num_frames(torch.tensor([n]))[0])  # noqa: E731
    train = UtteranceDataset(fbank_dir, "fbank", labels, frames_of)
    settings = {"max_updates": 6, "batch_seconds": 4.0, "lr": 1e-3, "precision": "fp32", "log_interval": 1,
                "valid_interval": 3, "save_interval": 2, "num_workers": 0, "keep_last": 10,
                "schedule": {"warmup_updates": 2}, **trainer}
    return Trainer(MaskedPredictionTask(), model, train, train, trainer_config(settings), exp)


def losses(exp: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (exp / "updates.jsonl").read_text().splitlines()]


def test_resume_after_interruption_gives_same_losses(fbank_dir, tmp_path, monkeypatch):
    make_run(fbank_dir, tmp_path / "straight").fit()
    reference = losses(tmp_path / "straight")
    assert len(reference) == 6

    interrupted = make_run(fbank_dir, tmp_path / "resumed")
    original = Trainer._update
    calls = {"n": 0}

    def crash_at_fifth(self, micro):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("killed")
        return original(self, micro)

    monkeypatch.setattr(Trainer, "_update", crash_at_fifth)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    monkeypatch.setattr(Trainer, "_update", original)
    assert len(losses(tmp_path / "resumed")) == 4  # updates 1-4 logged, checkpoint at 4
    seconds_at_4 = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["train_state"]["train_seconds"]
    make_run(fbank_dir, tmp_path / "resumed").fit()  # a new process would do the same
    assert losses(tmp_path / "resumed") == reference
    last = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    for key, value in straight["model"].items():
        assert torch.equal(value, last["model"][key]), key
    assert 0.0 < seconds_at_4 < last["train_state"]["train_seconds"]  # training time adds up over the runs


@pytest.mark.parametrize("resumed_in", ["bf16", "fp16"])
def test_checkpoints_record_the_precision_and_a_changed_one_is_warned_about(fbank_dir, tmp_path, caplog,
                                                                            resumed_in):
    make_run(fbank_dir, tmp_path / "exp", max_updates=2).fit()
    last = tmp_path / "exp" / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["train_state"]["precision"] == "fp32"
    with caplog.at_level(logging.WARNING, logger="audiossl.train"):
        make_run(fbank_dir, tmp_path / "exp", max_updates=3, precision=resumed_in).fit()
    assert f"trained in fp32 and continues in {resumed_in}" in caplog.text
    assert load_checkpoint(last)["train_state"]["update"] == 3  # fp16's scaler starts afresh


def test_emulated_bf16_is_warned_about_in_the_train_log(fbank_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    make_run(fbank_dir, tmp_path / "exp", max_updates=1, precision="bf16").fit()
    assert "torch emulates it" in (tmp_path / "exp" / "train.log").read_text()


def test_checkpoints_describe_themselves(fbank_dir, tmp_path):
    make_run(fbank_dir, tmp_path / "exp", max_updates=4).fit()
    ckpts = tmp_path / "exp" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("update_*.pt")) == ["update_2.pt", "update_3.pt", "update_4.pt"]  # 3: best on valid
    assert (ckpts / "best.pt").exists() and (ckpts / "last.pt").samefile(ckpts / "update_4.pt")
    payload = torch.load(ckpts / "last.pt", weights_only=True)  # no arbitrary unpickling needed
    assert payload["family"] == "hubert" and payload["train_state"]["update"] == 4
    model = load_model(ckpts / "last.pt")
    assert not model.training
    wavs = torch.randn(2, 16000) * 0.1
    hidden, frames = model.extract_features(wavs, torch.tensor([16000, 12000]))
    assert len(hidden) == model.config.encoder.num_layers + 1
    assert frames.tolist() == [49, 37] and hidden[-1].shape == (2, 49, model.config.encoder.dim)


def test_non_finite_loss_stops_and_keeps_checkpoints(fbank_dir, tmp_path, monkeypatch):
    run = make_run(fbank_dir, tmp_path / "exp", max_updates=8, max_bad_updates=2)
    step = MaskedPredictionTask.train_step

    def poisoned(self, model, batch, generator):
        out = step(self, model, batch, generator)
        if run.state["update"] >= 2:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(MaskedPredictionTask, "train_step", poisoned)
    with pytest.raises(TrainingError, match="2 consecutive updates with non-finite loss"):
        run.fit()
    kept = load_checkpoint(tmp_path / "exp" / "checkpoints" / "last.pt")
    assert kept["train_state"]["update"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert "non-finite loss nan on utterances" in (tmp_path / "exp" / "train.log").read_text()


def test_bucket_sampler_bounds_and_reproducibility():
    lengths = [100, 220, 150, 90, 400, 80, 300, 120]
    sampler = BucketBatchSampler(lengths, max_frames=450, seed=3)
    batches = sampler.epoch_batches(0)
    assert sorted(i for b in batches for i in b) == list(range(8))
    assert all(len(b) * max(lengths[i] for i in b) <= 450 for b in batches if len(b) > 1)
    assert batches == BucketBatchSampler(lengths, max_frames=450, seed=3).epoch_batches(0)
    assert batches != sampler.epoch_batches(1) or len(batches) == 1
    ranks = [BucketBatchSampler(lengths, 450, seed=3, rank=r, world_size=2).epoch_batches(0) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) and not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}


def test_schedules():
    poly = ScheduleConfig("polynomial", warmup_updates=10, total_updates=110, final_lr_scale=0.0)
    assert lr_multiplier(0, poly) == 0.0 and lr_multiplier(10, poly) == 1.0
    assert lr_multiplier(60, poly) == pytest.approx(0.5) and lr_multiplier(110, poly) == 0.0
    tri = ScheduleConfig("tri_stage", warmup_updates=10, hold_updates=40, total_updates=150, final_lr_scale=0.05)
    assert lr_multiplier(5, tri) == pytest.approx(0.5) and lr_multiplier(30, tri) == 1.0
    assert lr_multiplier(100, tri) == pytest.approx(0.05 ** 0.5) and lr_multiplier(150, tri) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_multiplier(20, ScheduleConfig("cosine", total_updates=30))
