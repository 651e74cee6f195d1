"""The trainer: exact resume after interruption, non-finite losses, checkpoints, schedules, batch transforms."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from matplotlib import image
import numpy as np
import pytest
import torch
import yaml

from audiossl.checkpoint import build_model, checksum, load_checkpoint, load_model
from audiossl.data.dataset import Batch, BucketBatchSampler, LanguageBatchSampler, UtteranceDataset
from audiossl.data.kaldi_dir import DataDir, DataDirError, merge_tables, write_table
from audiossl.data.transforms import BatchTransform, Compose, FbankFromWaveform
from audiossl.errors import ConfigError
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.features.store import compute_features
from audiossl.models.hubert import HubertConfig
from audiossl.nn.frontends import fbank_num_frames
from audiossl.tasks.pretrain import PretrainingTask
from audiossl.train import precision
from audiossl.train.config import trainer_config
from audiossl.train.schedules import ScheduleConfig, lr_multiplier
from audiossl.train.curves import plot_curves
from audiossl.train.trainer import Trainer, TrainingError


@pytest.fixture
def fbank_dir(plain_data_dir: Path) -> Path:
    """The shared data dir with 80-dim fbank in feats.scp (and utt2num_frames)."""
    data_dir = plain_data_dir
    data = DataDir.read(data_dir)
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--num-mel-bins=80"]))
    frames = compute_features(data, extractor, data_dir / "fbank" / "raw.ark")
    write_table(data_dir / "feats.scp", merge_tables([data_dir / "fbank" / "raw.scp"]))
    write_table(data_dir / "utt2num_frames", {k: str(v) for k, v in frames.items()})
    return data_dir


def make_run(data_dir: Path, exp: Path, batch_transform: BatchTransform | None = None,
             languages: dict[str, str] | None = None, origin: dict | None = None, run_config: dict | None = None,
             valid_dir: Path | None = None, **trainer):
    """A tiny fbank HuBERT on ``data_dir``'s feats.scp, or on its waveforms when ``batch_transform`` is given;
    validated on ``valid_dir`` (utterances of ``data_dir``), else on the training data."""
    config = HubertConfig.tiny(frontend="fbank")
    config.num_classes = 5
    config.frequency_warp = 0.1  # resuming must also restore the warp factors' random stream
    torch.manual_seed(0)  # the bins seed model initialisation the same way
    model = build_model("hubert", config.to_dict())
    kind = "fbank" if batch_transform is None else "waveform"

    def frames_of(n: int) -> int:
        fbank_frames = torch.tensor([n]) if kind == "fbank" else fbank_num_frames(torch.tensor([n]))
        return int(model.num_frames(fbank_frames)[0])

    rng = np.random.default_rng(0)
    lengths = UtteranceDataset(data_dir, kind).lengths
    utts = DataDir.read(data_dir).utterances
    labels = {u: rng.integers(0, 5, frames_of(n)) for u, n in zip(utts, lengths)}
    train = UtteranceDataset(data_dir, kind, labels, frames_of)
    valid = train if valid_dir is None else UtteranceDataset(valid_dir, kind, labels, frames_of)
    settings = {"max_updates": 6, "batch_seconds": 4.0, "lr": 1e-3, "precision": "fp32", "log_interval": 1,
                "valid_interval": 3, "save_interval": 2, "num_workers": 0, "keep_last": 10,
                "schedule": {"warmup_updates": 2}, **trainer}
    return Trainer(PretrainingTask(model, languages), model, train, valid, trainer_config(settings), exp,
                   batch_transform=batch_transform, origin=origin, run_config=run_config)


def crash_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th ``Trainer._update`` from now raise KeyboardInterrupt, as a killed job would stop."""
    original = Trainer._update
    calls = {"n": 0}

    def crashing(self, micro):
        calls["n"] += 1
        if calls["n"] == call:
            monkeypatch.setattr(Trainer, "_update", original)
            raise KeyboardInterrupt("killed")
        return original(self, micro)

    monkeypatch.setattr(Trainer, "_update", crashing)


def poison(monkeypatch, run: Trainer, when, factor: float = float("nan")) -> None:
    """Multiply a training loss by ``factor`` (NaN: a non-finite loss) where ``when(updates done, attempt at
    the next one from 1)`` is true."""
    step = PretrainingTask.train_step
    attempts: dict[int, int] = {}

    def poisoned(self, model, batch, generator):
        out = step(self, model, batch, generator)
        if model.training:
            done = run.state["update"]
            attempts[done] = attempts.get(done, 0) + 1
            if when(done, attempts[done]):
                out.loss = out.loss * factor
        return out

    monkeypatch.setattr(PretrainingTask, "train_step", poisoned)


def losses(exp: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (exp / "updates.jsonl").read_text().splitlines()]


def resumes_exactly(run_in, tmp_path: Path, monkeypatch, call: int) -> list[dict]:
    """``run_in(exp).fit()`` straight, and killed at its ``call``-th update then resumed: the same losses.
    Returns the straight run's update records."""
    run_in(tmp_path / "straight").fit()
    crash_at(monkeypatch, call)
    with pytest.raises(KeyboardInterrupt):
        run_in(tmp_path / "resumed").fit()
    run_in(tmp_path / "resumed").fit()
    assert losses(tmp_path / "resumed") == losses(tmp_path / "straight")
    return [json.loads(line) for line in (tmp_path / "straight" / "updates.jsonl").read_text().splitlines()]


def test_resume_after_interruption_gives_same_losses(fbank_dir, tmp_path, monkeypatch):
    make_run(fbank_dir, tmp_path / "straight").fit()
    reference = losses(tmp_path / "straight")
    assert len(reference) == 6

    interrupted = make_run(fbank_dir, tmp_path / "resumed")
    crash_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
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
    saved = ["update_2.pt", "update_3.pt", "update_4.pt"]  # 3: best on valid
    assert sorted(p.name for p in ckpts.glob("update_*.pt")) == saved
    assert (ckpts / "best.pt").exists() and (ckpts / "last.pt").samefile(ckpts / "update_4.pt")
    payload = torch.load(ckpts / "last.pt", weights_only=True)  # no arbitrary unpickling needed
    assert payload["family"] == "hubert" and payload["train_state"]["update"] == 4
    model = load_model(ckpts / "last.pt")
    assert not model.training
    wavs = torch.randn(2, 16000) * 0.1
    hidden, frames = model.extract_features(wavs, torch.tensor([16000, 12000]))
    assert len(hidden) == model.config.encoder.num_layers + 1
    assert frames.tolist() == [49, 37] and hidden[-1].shape == (2, 49, model.config.encoder.dim)


def test_checkpoints_on_cuda_keep_the_cuda_generators(fbank_dir, tmp_path, monkeypatch):
    saved = [torch.arange(8, dtype=torch.uint8), torch.arange(8, 16, dtype=torch.uint8)]
    restored = []
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: saved)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    def on_cuda(run: Trainer) -> Trainer:  # only the device's name: save and resume touch no tensor on it
        run.info = dataclasses.replace(run.info, device=torch.device("cuda"))
        return run

    on_cuda(make_run(fbank_dir, tmp_path / "exp")).save(best=False)
    last = tmp_path / "exp" / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)["train_state"]
    assert all(torch.equal(a, b) for a, b in zip(state["rng"][0]["cuda_rng"], saved, strict=True))
    assert on_cuda(make_run(fbank_dir, tmp_path / "exp")).resume()
    assert len(restored) == 1 and torch.equal(restored[0][0], saved[0]) and len(restored[0]) == 1  # one GPU here

    payload = load_checkpoint(last)  # written before the CUDA generators were saved
    del payload["train_state"]["rng"][0]["cuda_rng"]
    torch.save({**payload, "checksum": checksum(payload)}, last)
    assert on_cuda(make_run(fbank_dir, tmp_path / "exp")).resume() and len(restored) == 1


def test_non_finite_loss_stops_and_keeps_checkpoints(fbank_dir, tmp_path, monkeypatch):
    run = make_run(fbank_dir, tmp_path / "exp", max_updates=8, max_bad_updates=2)
    poison(monkeypatch, run, lambda done, attempt: done >= 2)
    last = tmp_path / "exp" / "checkpoints" / "last.pt"
    with pytest.raises(TrainingError, match="2 consecutive updates with a non-finite loss or gradient") as error:
        run.fit()
    assert "(at update 3, 2 skipped in all)" in str(error.value) and f"newest checkpoint is {last} (update 2)" in str(error.value)
    kept = load_checkpoint(last)
    assert kept["train_state"]["update"] == 2
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())
    assert "non-finite loss nan on utterances" in (tmp_path / "exp" / "train.log").read_text()
    assert run.state["update"] == run.scheduler.last_epoch == 2  # skipped updates neither count nor step the schedule


def fp16_run(fbank_dir: Path, exp: Path, monkeypatch, **trainer) -> Trainer:
    """fp16 whose gradients overflow at every scale down to 2^-8 (the loss times 2^40): each update skipped
    and the scale halved from 2^16, under the floor of 2^10 at the 7th."""
    run = make_run(fbank_dir, exp, precision="fp16", loss_scale_floor=1024.0, loss_scale_patience=2, max_updates=3,
                   **trainer)
    poison(monkeypatch, run, lambda done, attempt: run.precision == "fp16", factor=2.0 ** 40)
    return run


def test_fp16_overflows_lower_the_loss_scale_until_a_collapse_stops_the_run(fbank_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("audiossl.train.trainer.native_bf16", lambda device: False)
    run = fp16_run(fbank_dir, tmp_path / "exp", monkeypatch, max_bad_updates=2)  # overflows are not "bad"
    with pytest.raises(TrainingError, match=r"the fp16 loss scale stayed under 1024 for 2 updates \(now 256, at update "
                                            r"1\): the gradients do not fit in fp16; bf16, the fallback, is not native"):
        run.fit()
    log = (tmp_path / "exp" / "train.log").read_text()
    assert "update 1 skipped: fp16 gradient overflow, loss scale now 32768; 1 update(s) skipped in all" in log
    assert "loss scale now 256; 8 update(s) skipped in all" in log and run.state["update"] == 0


def test_fp16_collapse_goes_on_in_bf16_where_it_is_native(fbank_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("audiossl.train.trainer.native_bf16", lambda device: True)
    run = fp16_run(fbank_dir, tmp_path / "exp", monkeypatch)
    run.fit()
    assert run.state["update"] == 3 and run.precision == "bf16"
    assert "; training goes on in bf16" in (tmp_path / "exp" / "train.log").read_text()
    state = load_checkpoint(tmp_path / "exp" / "checkpoints" / "last.pt")["train_state"]
    assert state["precision"] == "bf16" and state["skipped_updates"] == 8
    resumed = fp16_run(fbank_dir, tmp_path / "exp", monkeypatch)
    assert resumed.resume() and resumed.precision == "bf16" and not resumed.scaler.is_enabled()


def test_non_finite_loss_before_any_checkpoint_says_none_was_saved(fbank_dir, tmp_path, monkeypatch):
    run = make_run(fbank_dir, tmp_path / "exp", max_updates=4, max_bad_updates=2)
    poison(monkeypatch, run, lambda done, attempt: True)
    with pytest.raises(TrainingError, match="no checkpoint was saved yet"):
        run.fit()
    assert not (tmp_path / "exp" / "checkpoints" / "last.pt").exists()
    assert run.state["update"] == run.scheduler.last_epoch == 0


def disk_full() -> None:
    raise OSError(28, "No space left on device")


def zip_writer_after_disk_full() -> None:
    """What torch.save into a file object raises on a full disk: its zip writer fails after the file's OSError."""
    try:
        disk_full()
    except OSError:
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 704 vs 598") from None


def zip_writer_failed() -> None:
    """What torch.save to a path raises on a full disk (the zip writer's own write)."""
    raise RuntimeError("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing file data/0: "
                       "file write failed")


@pytest.mark.parametrize("fail, reason", [
    (disk_full, "No space left on device"),
    (zip_writer_after_disk_full, "No space left on device"),
    (zip_writer_failed, re.escape("[enforce fail at inline_container.cc:858] . PytorchStreamWriter failed writing "
                                  "file data/0: file write failed (is the disk full?)")),
], ids=["OSError", "zip writer after OSError", "zip writer"])
def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint_and_says_so(fbank_dir, tmp_path, monkeypatch, fail,
                                                                             reason):
    run = make_run(fbank_dir, tmp_path / "exp", max_updates=4)
    save = torch.save

    def disk_full_at_update_4(payload, f, *args, **kwargs):
        if payload["train_state"]["update"] == 4:
            Path(f).write_bytes(b"half a checkpoint")
            fail()
        return save(payload, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", disk_full_at_update_4)
    last = tmp_path / "exp" / "checkpoints" / "last.pt"
    with pytest.raises(TrainingError, match=f"cannot write .*update_4.pt at update 4: {reason}; the "
                                            f"newest checkpoint is {last} \\(update 3\\), intact"):
        run.fit()
    assert load_checkpoint(last)["train_state"]["update"] == 3  # saved as the best at the validation of update 3
    assert sorted(p.name for p in last.parent.iterdir()) == ["best.pt", "last.pt", "update_2.pt", "update_3.pt"]
    monkeypatch.setattr(torch, "save", save)
    make_run(fbank_dir, tmp_path / "exp", max_updates=4).fit()  # space again: it resumes and finishes
    assert load_checkpoint(last)["train_state"]["update"] == 4


def test_a_run_can_start_from_another_runs_optimizer_and_schedule(fbank_dir, tmp_path):
    first = make_run(fbank_dir, tmp_path / "first", max_updates=4)
    first.fit()
    kept = load_checkpoint(tmp_path / "first" / "checkpoints" / "last.pt")["train_state"]
    run = make_run(fbank_dir, tmp_path / "second", max_updates=2, lr=5e-4)
    parameters = list(run.model.parameters())
    reshaped = next(i for i, p in enumerate(parameters) if p is run.model.head.label_embeddings)  # a new label table
    kept["optimizer"]["state"][reshaped]["exp_avg"] = torch.zeros(3)
    run.start_from(kept, "first/last.pt")
    assert run.scheduler.last_epoch == 4
    expected = 5e-4 * lr_multiplier(4, run.config.schedule)
    assert run.optimizer.param_groups[0]["lr"] == pytest.approx(expected) and run.scheduler.get_last_lr()[0] == expected
    assert torch.equal(run.optimizer.state[parameters[0]]["exp_avg"], kept["optimizer"]["state"][0]["exp_avg"])
    assert parameters[reshaped] not in run.optimizer.state
    run.fit()
    assert run.state["update"] == 2 and run.scheduler.last_epoch == 6
    assert "schedule at update 4" in (tmp_path / "second" / "train.log").read_text()


def test_a_skipped_last_update_is_made_again_and_the_run_ends_with_its_checkpoint(fbank_dir, tmp_path, monkeypatch):
    run = make_run(fbank_dir, tmp_path / "exp", max_updates=4, max_bad_updates=2)
    poison(monkeypatch, run, lambda done, attempt: done == 3 and attempt == 1)
    summary = run.fit()
    exp = tmp_path / "exp"
    state = load_checkpoint(exp / "checkpoints" / "last.pt")["train_state"]
    assert state["update"] == run.state["update"] == 4 and state["bad_updates"] == 0
    assert run.scheduler.last_epoch == 4 and state["scheduler"]["last_epoch"] == 4
    per_epoch = len(run.sampler.epoch_batches(0))
    assert state["batch_index"] + state["epoch"] * per_epoch == 5  # the skipped batch is consumed
    assert [json.loads(line)["update"] for line in (exp / "updates.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    final = json.loads((exp / "valid.jsonl").read_text().splitlines()[-1])
    assert final["update"] == 4 and final["loss"] == summary["loss"]
    assert "update 4: non-finite loss nan" in (exp / "train.log").read_text()


@dataclasses.dataclass
class Recorder(BatchTransform):
    """Records whether gradients were on (training) or off (validation) at each call; changes nothing."""

    training_only: bool
    grad_enabled: list[bool] = dataclasses.field(default_factory=list, repr=False)

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        self.grad_enabled.append(torch.is_grad_enabled())
        return batch


@dataclasses.dataclass
class AddNoise(BatchTransform):
    """Adds generator-drawn Gaussian noise to the waveforms; training only."""

    scale: float
    training_only = True

    def __call__(self, batch: Batch, generator: torch.Generator) -> Batch:
        noise = torch.randn(batch.inputs.shape, generator=generator) * self.scale
        return dataclasses.replace(batch, inputs=batch.inputs + noise.to(batch.inputs.device))


def test_training_only_transforms_apply_in_training_and_not_in_validation(plain_data_dir, tmp_path):
    augment, always = Recorder(training_only=True), Recorder(training_only=False)
    run = make_run(plain_data_dir, tmp_path / "exp", Compose([augment, always, FbankFromWaveform()]), max_updates=3)
    assert run.sampler.max_frames == 4 * 16000  # batches are bounded in the dataset's samples
    run.fit()
    valid_sampler = BucketBatchSampler(run.valid_set.lengths, run.sampler.max_frames, shuffle=False)
    valid_batches = len(valid_sampler.epoch_batches(0))
    assert augment.grad_enabled == [True] * 3
    assert always.grad_enabled == [True] * 3 + [False] * valid_batches  # validated once, at update 3
    assert ("batch transforms: Recorder(training_only=True), Recorder(training_only=False), "
            "FbankFromWaveform(num_mel_bins=80) in training, Recorder(training_only=False), "
            "FbankFromWaveform(num_mel_bins=80) in validation") in (tmp_path / "exp" / "train.log").read_text()


def test_resume_with_a_random_transform_gives_same_losses(plain_data_dir, tmp_path, monkeypatch):
    def transform():
        return Compose([AddNoise(0.05), FbankFromWaveform()])

    make_run(plain_data_dir, tmp_path / "straight", transform(), max_updates=4).fit()
    reference = losses(tmp_path / "straight")
    make_run(plain_data_dir, tmp_path / "clean", FbankFromWaveform(), max_updates=4).fit()
    assert losses(tmp_path / "clean") != reference  # the noise is applied

    crash_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        make_run(plain_data_dir, tmp_path / "resumed", transform(), max_updates=4).fit()
    assert len(losses(tmp_path / "resumed")) == 2
    make_run(plain_data_dir, tmp_path / "resumed", transform(), max_updates=4).fit()
    assert losses(tmp_path / "resumed") == reference


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


def test_language_sampler_draws_languages_by_temperature():
    lengths = [100] * 40 + [100] * 10
    languages = ["en"] * 40 + ["es"] * 10
    for alpha, expected in ((1.0, 0.8), (0.5, 2 / 3), (0.0, 0.5)):
        sampler = LanguageBatchSampler(lengths, languages, 200, alpha, seed=3)
        assert sampler.probabilities["en"] == pytest.approx(expected)
    batches = sampler.epoch_batches(0)
    assert len(batches) == 25 and all(len({languages[i] for i in batch}) == 1 for batch in batches)
    spanish = [batch for batch in batches if languages[batch[0]] == "es"]
    assert len(spanish) > 5  # uniform over languages: Spanish's 5 batches come round more than once
    assert batches == LanguageBatchSampler(lengths, languages, 200, 0.0, seed=3).epoch_batches(0)
    assert batches != sampler.epoch_batches(1)
    every = LanguageBatchSampler(lengths, languages, 200, 0.0, shuffle=False).epoch_batches(0)
    assert sorted(i for batch in every for i in batch) == list(range(50))
    ranks = [LanguageBatchSampler(lengths, languages, 200, 0.5, seed=3, rank=r, world_size=2).epoch_batches(0)
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 12 and ranks[0] != ranks[1]


def test_languages_of_a_data_dir_name_what_is_wrong(fbank_dir):
    data = UtteranceDataset(fbank_dir, "fbank")
    with pytest.raises(DataDirError, match="utt2lang: missing; sampling by language needs"):
        data.languages()
    write_table(fbank_dir / "utt2lang", {"spkA-u1": "en", "spkA-u2": "en", "spkB-u3": "es"})
    with pytest.raises(DataDirError, match="utt2lang: no language for 1 utterance\\(s\\), e.g. 'spkB-u4'"):
        UtteranceDataset(fbank_dir, "fbank").languages()
    write_table(fbank_dir / "utt2lang", {"spkA-u1": "en", "spkA-u2": "en", "spkB-u3": "es", "spkB-u4": "es",
                                         "gone-u5": "eu"})
    with pytest.raises(DataDirError, match="no audio of language\\(s\\) eu in"):
        UtteranceDataset(fbank_dir, "fbank").languages()


def test_language_sampling_logs_figures_per_language_and_resumes_exactly(fbank_dir, tmp_path, monkeypatch):
    languages = {"spkA-u1": "en", "spkA-u2": "en", "spkB-u3": "es", "spkB-u4": "es"}
    write_table(fbank_dir / "utt2lang", languages)

    def language_run(exp: Path) -> Trainer:
        return make_run(fbank_dir, exp, languages=languages, language_alpha=0.5, batch_seconds=3.0)

    for record in resumes_exactly(language_run, tmp_path, monkeypatch, 4):  # each update's batch is of one language, whose figures equal the whole's
        spoken = [lang for lang in ("en", "es") if f"loss@{lang}" in record]
        assert len(spoken) == 1 and record[f"acc_masked@{spoken[0]}"] == record["acc_masked"]
    valid = json.loads((tmp_path / "straight" / "valid.jsonl").read_text().splitlines()[-1])
    assert {"loss@en", "loss@es", "acc_masked@en", "acc_masked@es"} <= valid.keys()
    assert "language stage 1 of 1, batches of one language drawn with p ∝ weight · amount^0.5: en 0." in (tmp_path / "straight" / "train.log").read_text()


def test_language_stages_switch_the_mix_at_their_update_and_resume_exactly(fbank_dir, tmp_path, monkeypatch):
    languages = {"spkA-u1": "en", "spkA-u2": "en", "spkB-u3": "es", "spkB-u4": "es"}
    write_table(fbank_dir / "utt2lang", languages)
    stages = [{"alpha": 1.0, "updates": 3, "weights": {"es": 0}}, {"alpha": 0.0, "weights": {"en": 0}}]

    def staged_run(exp: Path) -> Trainer:
        return make_run(fbank_dir, exp, languages=languages, language_stages=stages, batch_seconds=3.0)

    updates = resumes_exactly(staged_run, tmp_path, monkeypatch, 5)
    spoken = [[lang for lang in ("en", "es") if f"loss@{lang}" in record] for record in updates]
    assert spoken == [["en"]] * 3 + [["es"]] * 3
    log = (tmp_path / "straight" / "train.log").read_text()
    assert "update 3: language stage 2 of 2, batches of one language drawn with p ∝ weight · amount^0: en 0.000" in log


def test_a_language_mix_is_checked_against_the_training_data_at_the_start_and_not_asked_of_the_dev_set(
        fbank_dir, tmp_path):
    """A later stage's weights that the data cannot draw failed as the stage began, and a dev set without a
    language the mix names failed the first validation: hours into the run, both."""
    languages = {"spkA-u1": "en", "spkA-u2": "en", "spkB-u3": "es", "spkB-u4": "es"}
    write_table(fbank_dir / "utt2lang", languages)
    for weights, message in (({"fr": 2.0}, r"weights name \['fr'\], which the data does not have"),
                             ({"en": 0, "es": 0}, r"weights \{.*\} leave no language to draw from")):
        stages = [{"alpha": 1.0, "updates": 2}, {"alpha": 0.5, "weights": weights}]
        with pytest.raises(TrainingError, match=r"trainer.language_stages\[1\]: language " + message):
            make_run(fbank_dir, tmp_path / "refused", languages=languages, language_stages=stages)
    assert not (tmp_path / "refused").exists()
    DataDir.read(fbank_dir).subset(["spkA-u1"]).write(tmp_path / "dev")  # English alone
    stages = [{"alpha": 1.0, "updates": 2, "weights": {"es": 2.0}}, {"alpha": 0.0, "weights": {"en": 0}}]
    make_run(fbank_dir, tmp_path / "exp", languages=languages, language_stages=stages, valid_dir=tmp_path / "dev",
             max_updates=4, valid_interval=2).fit()
    valid = [json.loads(line) for line in (tmp_path / "exp" / "valid.jsonl").read_text().splitlines()]
    assert [record["update"] for record in valid] == [2, 4] and all("loss@en" in record for record in valid)


@pytest.mark.parametrize("stages, message", [
    ([{"alpha": 1.0}, {"alpha": 0.3}], r"language_stages\[0\]: a stage before the last needs its length"),
    ([{"alpha": 1.0, "updates": 6}, {"alpha": 0.3}], "end at update 6, not before max_updates 6"),
    ([{"alpha": 1.0, "mix": {"es": 2}}], r"language_stages\[0\]: unknown keys \['mix'\]"),
    (yaml.safe_load("[{alpha: 1.0, weights: {no: 2.0}}]"),   # Norwegian's code, unquoted, is YAML's False
     r"language_stages\[0\].weights: expected text, got False \(YAML reads unquoted yes, no, on, off, true and "
     r"false as booleans: quote the word, e.g. 'no'\)"),
])
def test_language_stages_refuse_what_cannot_run(stages, message):
    with pytest.raises(ConfigError, match=message):
        trainer_config({"max_updates": 6, "language_stages": stages})
    with pytest.raises(ConfigError, match="language_stages and trainer.language_alpha are both set"):
        trainer_config({"language_alpha": 1.0, "language_stages": [{"alpha": 1.0}]})


def test_schedules():
    poly = ScheduleConfig("polynomial", warmup_updates=10, total_updates=110, final_lr_scale=0.0)
    assert lr_multiplier(0, poly) == 0.0 and lr_multiplier(10, poly) == 1.0
    assert lr_multiplier(60, poly) == pytest.approx(0.5) and lr_multiplier(110, poly) == 0.0
    tri = ScheduleConfig("tri_stage", warmup_updates=10, hold_updates=40, total_updates=150, final_lr_scale=0.05)
    assert lr_multiplier(5, tri) == pytest.approx(0.5) and lr_multiplier(30, tri) == 1.0
    assert lr_multiplier(100, tri) == pytest.approx(0.05 ** 0.5) and lr_multiplier(150, tri) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_multiplier(20, ScheduleConfig("cosine", total_updates=30))


def test_health_warnings_of_the_task_reach_the_log(fbank_dir, tmp_path, monkeypatch):
    """Each log interval's figures go to the task's health check; its warnings are logged with the update."""
    seen = []

    def check(self, figures):
        seen.append(figures)
        return ["codebook collapse: test"] if len(seen) == 2 else []

    monkeypatch.setattr(PretrainingTask, "health_warnings", check)
    make_run(fbank_dir, tmp_path / "exp", max_updates=3).fit()
    assert len(seen) == 3 and "acc_masked" in seen[0]
    assert "WARNING update 2: codebook collapse: test" in (tmp_path / "exp" / "train.log").read_text()


def test_a_fresh_start_forgets_the_log_of_a_run_killed_before_its_first_checkpoint(fbank_dir, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    stale = "".join(json.dumps({"update": u, "loss": 9.0}) + "\n" for u in (1, 2, 3))
    (exp / "updates.jsonl").write_text(stale)   # written by a run killed before update 4's save
    (exp / "valid.jsonl").write_text(stale)
    make_run(fbank_dir, exp, max_updates=2).fit()
    updates = [json.loads(line) for line in (exp / "updates.jsonl").read_text().splitlines()]
    assert [r["update"] for r in updates] == [1, 2] and all(r["loss"] != 9.0 for r in updates)
    assert all(json.loads(line)["loss"] != 9.0 for line in (exp / "valid.jsonl").read_text().splitlines())


def test_a_resumed_run_must_be_the_one_that_wrote_the_checkpoint(fbank_dir, tmp_path):
    exp = tmp_path / "exp"
    make_run(fbank_dir, exp, max_updates=4, origin={"--init": "a.pt"}).fit()
    last, log = exp / "checkpoints" / "last.pt", (exp / "updates.jsonl").read_text()
    changed = make_run(fbank_dir, exp, max_updates=4, lr=5e-4, seed=2, origin={"--init": "b.pt"})
    with pytest.raises(TrainingError, match=f"{last}: this run differs from the one that wrote the checkpoint: "
                                            r"--init: 'a.pt' then, 'b.pt' now; trainer.lr: 0.001 then, 0.0005 now; "
                                            r"trainer.seed: 1 then, 2 now\. To resume it, put the old values back; "
                                            f"to train with the new ones, give another exp dir than {exp}"):
        changed.fit()
    with pytest.raises(TrainingError, match=r"trainer.max_updates: 4 then, 6 now \(the polynomial schedule spans "
                                            r"max_updates: the learning rates of the 4 updates done would not be"):
        make_run(fbank_dir, exp, max_updates=6, origin={"--init": "a.pt"}).fit()
    assert (exp / "updates.jsonl").read_text() == log and load_checkpoint(last)["train_state"]["update"] == 4
    # bookkeeping may change; so may accum_steps with the number of processes, keeping the batches per update
    make_run(fbank_dir, exp, max_updates=4, origin={"--init": "a.pt"}, keep_last=1, log_interval=2).fit()
    with pytest.raises(TrainingError, match=r"trainer.accum_steps: 1 with 1 process\(es\) then, 2 with 1 now"):
        make_run(fbank_dir, exp, max_updates=4, origin={"--init": "a.pt"}, accum_steps=2).fit()


def test_a_run_with_a_constant_schedule_may_be_extended(fbank_dir, tmp_path):
    exp = tmp_path / "exp"
    constant = {"name": "constant", "warmup_updates": 2}
    make_run(fbank_dir, exp, max_updates=4, schedule=constant).fit()
    first = losses(exp)
    make_run(fbank_dir, exp, max_updates=6, schedule=constant).fit()
    assert len(losses(exp)) == 6 and losses(exp)[:4] == first
    # (not bitwise a straight 6-update run: the short run's final validation drew from the global random stream)
    with pytest.raises(TrainingError, match="trainer.max_updates: 6 then, 5 now, under the 6 updates done"):
        make_run(fbank_dir, exp, max_updates=5, schedule=constant).fit()


def test_the_run_config_is_written_once_the_run_starts(fbank_dir, tmp_path):
    exp = tmp_path / "exp"
    make_run(fbank_dir, exp, max_updates=2, run_config={"trainer": {"max_updates": 2}}).fit()
    assert yaml.safe_load((exp / "config.yaml").read_text()) == {"trainer": {"max_updates": 2}}
    with pytest.raises(TrainingError, match="trainer.lr: 0.001 then, 0.002 now"):
        make_run(fbank_dir, exp, max_updates=2, lr=2e-3, run_config={"trainer": {"lr": 2e-3}}).fit()
    assert yaml.safe_load((exp / "config.yaml").read_text()) == {"trainer": {"max_updates": 2}}


def test_training_curves_are_drawn_in_runs_longer_than_the_interval_and_kept_up_to_date(fbank_dir, tmp_path,
                                                                                       monkeypatch):
    """A run shorter than a minute draws none; a longer one draws at validations and at its end, and a run
    resumed from it redraws them however short it is."""
    exp = tmp_path / "exp"
    make_run(fbank_dir, exp, max_updates=2, schedule={"name": "constant"}).fit()
    assert not (exp / "training_curves.png").exists()
    drawn = []

    def plot(runs, path, smoothing):  # records the validations each drawing shows
        drawn.append((dict(runs), path, len((exp / "valid.jsonl").read_text().splitlines())))
        return plot_curves(runs, path, smoothing)

    monkeypatch.setattr("audiossl.train.trainer.plot_curves", plot)
    monkeypatch.setattr("audiossl.train.trainer.CURVES_INTERVAL_SECONDS", 0.0)
    make_run(fbank_dir, exp, max_updates=6, schedule={"name": "constant"}).fit()
    assert drawn == [({"exp": exp}, exp / "training_curves.png", validations) for validations in (2, 3, 3)]
    monkeypatch.setattr("audiossl.train.trainer.CURVES_INTERVAL_SECONDS", 60.0)
    make_run(fbank_dir, exp, max_updates=7, schedule={"name": "constant"}).fit()
    assert drawn[-1][2] == 4 and image.imread(exp / "training_curves.png").ndim == 3


def test_a_second_trainer_of_an_exp_dir_is_refused_naming_the_holder(fbank_dir, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys
        fd = os.open({str(exp / 'train.lock')!r}, os.O_RDWR | os.O_CREAT)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        os.write(fd, f"pid {{os.getpid()}} on here".encode())
        print("locked", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(TrainingError, match=f"{exp}: another trainer is writing this exp dir \\(pid {holder.pid} on "
                                                f"here holds {exp / 'train.lock'}\\); wait for it to end"):
            make_run(fbank_dir, exp, max_updates=2).fit()
        assert sorted(p.name for p in exp.iterdir()) == ["train.lock"]
    finally:
        holder.communicate("")
    make_run(fbank_dir, exp, max_updates=2).fit()  # the holder is gone
    assert len(losses(exp)) == 2


def test_a_kill_between_the_links_of_a_best_checkpoint_leaves_best_and_last_consistent(fbank_dir, tmp_path,
                                                                                       monkeypatch):
    make_run(fbank_dir, tmp_path / "straight", max_updates=4).fit()
    replace, links = os.replace, []

    def killed_at_the_second_link_of_update_4(src, dst):  # update 2: last.pt; 3 and 4 (each the best): both
        if Path(dst).name in ("best.pt", "last.pt"):
            links.append(dst)
            if len(links) == 5:
                raise KeyboardInterrupt("killed")
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_the_second_link_of_update_4)
    with pytest.raises(KeyboardInterrupt):
        make_run(fbank_dir, tmp_path / "exp", max_updates=4).fit()
    monkeypatch.setattr(os, "replace", replace)
    make_run(fbank_dir, tmp_path / "exp", max_updates=4).fit()
    best, straight = (load_checkpoint(e / "checkpoints" / "best.pt") for e in (tmp_path / "exp", tmp_path / "straight"))
    assert best["train_state"]["update"] == straight["train_state"]["update"] == 4
    assert all(torch.equal(value, straight["model"][key]) for key, value in best["model"].items())


def test_a_validation_score_never_finite_is_warned_about_and_best_pt_is_the_final_checkpoint(fbank_dir, tmp_path,
                                                                                            monkeypatch):
    valid_step = PretrainingTask.valid_step

    def nan_figures(self, model, batch, generator):
        return {key: float("nan") for key in valid_step(self, model, batch, generator)}

    monkeypatch.setattr(PretrainingTask, "valid_step", nan_figures)
    make_run(fbank_dir, tmp_path / "exp", max_updates=4).fit()
    ckpts, log = tmp_path / "exp" / "checkpoints", (tmp_path / "exp" / "train.log").read_text()
    assert (ckpts / "best.pt").samefile(ckpts / "last.pt") and (ckpts / "last.pt").samefile(ckpts / "update_4.pt")
    assert "update 3: the validation score is nan (loss=nan acc_masked=nan " in log and "cannot be best.pt" in log
    assert "update 4: no validation gave a finite score: best.pt is the final checkpoint" in log


def disk_full_from_update_3(monkeypatch, run: Trainer, log: str) -> None:
    """From the third update on, writes to ``log`` (updates.jsonl, train.log or tensorboard) fail: a full disk."""
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def fill_the_disk():
        if log == "updates.jsonl":
            monkeypatch.setattr("audiossl.train.trainer.open", lambda path, *a, **k: full() if Path(path).name == log
                                else open(path, *a, **k), raising=False)
        elif log == "train.log":
            handler = next(h for h in logging.getLogger("audiossl.train").handlers
                           if getattr(h, "baseFilename", None) == str((run.exp_dir / log).absolute()))
            monkeypatch.setattr(handler, "stream", type("Full", (), {"write": full, "flush": full})())
        else:
            monkeypatch.setattr("torch.utils.tensorboard.SummaryWriter.add_scalar", full)

    update = Trainer._update

    def filling(self, micro):
        if self.state["update"] == 2:
            fill_the_disk()
        return update(self, micro)

    monkeypatch.setattr(Trainer, "_update", filling)


@pytest.mark.parametrize("log", ["updates.jsonl", "train.log", "tensorboard"])
def test_a_full_disk_while_logging_names_the_log_and_the_newest_checkpoint(fbank_dir, tmp_path, monkeypatch, log):
    run = make_run(fbank_dir, tmp_path / "exp", max_updates=4)
    disk_full_from_update_3(monkeypatch, run, log)
    last = tmp_path / "exp" / "checkpoints" / "last.pt"
    with pytest.raises(TrainingError, match=f"cannot write {tmp_path / 'exp' / log} at update 3: No space left on "
                                            f"device; the newest checkpoint is {last} \\(update 2\\), intact"):
        run.fit()
    assert load_checkpoint(last)["train_state"]["update"] == 2


def test_a_full_disk_while_resuming_keeps_the_update_log(fbank_dir, tmp_path, monkeypatch):
    crash_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        make_run(fbank_dir, tmp_path / "exp", max_updates=4, valid_interval=4).fit()
    log = tmp_path / "exp" / "updates.jsonl"
    before = log.read_text()
    assert len(before.splitlines()) == 3  # update 3 is forgotten on resuming from update 2
    write_text = Path.write_text

    def disk_full(self, text, *args, **kwargs):
        write_text(self, text[:len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(TrainingError, match=f"cannot write {log} at update 2: No space left on device"):
        make_run(fbank_dir, tmp_path / "exp", max_updates=4, valid_interval=4).fit()
    assert log.read_text() == before


def test_a_later_trainer_in_the_process_logs_to_its_own_train_log_only(fbank_dir, tmp_path):
    make_run(fbank_dir, tmp_path / "first", max_updates=1).fit()
    make_run(fbank_dir, tmp_path / "second", max_updates=1).fit()
    assert str(tmp_path / "second") not in (tmp_path / "first" / "train.log").read_text()
    assert str(tmp_path / "second") in (tmp_path / "second" / "train.log").read_text()
