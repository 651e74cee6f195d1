"""kill -9 at ten random points of a short run, pretraining and CTC fine-tuning, each time started again:
the final weights and the logged losses are bitwise those of an uninterrupted run."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile
import torch

from audiossl.checkpoint import build_model, load_checkpoint, save_checkpoint
from audiossl.data.kaldi_dir import DataDir, merge_tables, write_table
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.features.store import compute_features
from audiossl.models.hubert import HubertConfig
from conftest import synth_speechlike

UPDATES = 16
TRAINER = [f"trainer.max_updates={UPDATES}", "trainer.batch_seconds=2.5", "trainer.save_interval=2",
           "trainer.valid_interval=8", "trainer.log_interval=4", "trainer.num_threads=1", "trainer.num_workers=0",
           "trainer.precision=fp32"]
WORDS = ["ONE", "TWO", "RED", "SEA", "DOG", "SUN"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Ten utterances with fbank, a transcript, k-means-like labels and a tiny HuBERT to start from."""
    root = tmp_path_factory.mktemp("kill")
    rng = random.Random(0)
    wav_scp, text = {}, {}
    for i in range(10):
        utt = f"spk{i % 2}-u{i:02d}"
        wav_scp[utt] = str(root / f"{utt}.wav")
        soundfile.write(wav_scp[utt], synth_speechlike(1.0 + 0.07 * i, seed=i), 16000)
        text[utt] = " ".join(rng.choice(WORDS) for _ in range(2))
    data = DataDir({"wav.scp": wav_scp, "text": text, "utt2spk": {u: u.split("-")[0] for u in wav_scp}})
    data.write(root / "data")
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--num-mel-bins=80"]))
    frames = compute_features(data, extractor, root / "data/fbank/raw.ark")
    write_table(root / "data/feats.scp", merge_tables([root / "data/fbank/raw.scp"]))
    write_table(root / "data/utt2num_frames", {k: str(v) for k, v in frames.items()})
    config = HubertConfig.tiny(frontend="fbank")
    torch.manual_seed(0)
    model = build_model("hubert", config.to_dict())
    save_checkpoint(root / "tiny.pt", "hubert", config.to_dict(), model.state_dict())
    counts = model.num_frames(torch.tensor(list(frames.values())))
    write_table(root / "labels", {utt: " ".join(str(rng.randrange(5)) for _ in range(int(n)))
                                  for utt, n in zip(frames, counts)})
    return root


def command(corpus: Path, task: str, exp: Path) -> list[str]:
    sets = [arg for setting in TRAINER for arg in ("--set", setting)]
    data = ["--train-data", str(corpus / "data"), "--valid-data", str(corpus / "data")]
    if task == "pretrain":
        return [sys.executable, "-m", "audiossl.bin.pretrain", "--family", "hubert", "--config",
                str(Path(__file__).parents[2] / "egs/mini_tts/ssl/conf/pretrain1.yaml"), "--set", "model.size=tiny",
                "--set", "model.set.num_classes=5", *sets, *data, "--train-labels", str(corpus / "labels"),
                "--valid-labels", str(corpus / "labels"), str(exp)]
    return [sys.executable, "-m", "audiossl.bin.finetune_ctc", "--config",
            str(Path(__file__).parents[2] / "egs/mini_tts/asr/conf/finetune.yaml"), "--set", "ctc.encoder_layers=1",
            "--set", "ctc.freeze_encoder_updates=4", *sets, "--init", str(corpus / "tiny.pt"), *data, str(exp)]


def starts(exp: Path) -> int:
    """How many runs have entered the training loop (each logs its precision once)."""
    log = exp / "train.log"
    return log.read_text().count(" INFO precision ") if log.exists() else 0


def updates_logged(exp: Path) -> int:
    path = exp / "updates.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def records(exp: Path) -> list[dict]:
    return [json.loads(line) for line in (exp / "updates.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("task", ["pretrain", "finetune_ctc"])
def test_kill_9_at_ten_random_points_changes_nothing(corpus, tmp_path, task):
    straight = subprocess.run(command(corpus, task, tmp_path / "straight"), capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr[-3000:]
    exp = tmp_path / "killed"
    rng = random.Random(task)
    resumable = 1  # starts that find a checkpoint: the last one, and each killed one after a save
    for at in sorted(rng.sample(range(1, UPDATES), 10)):  # kill once the run has logged update `at`, or soon after
        started = starts(exp)
        resumable += (exp / "checkpoints/last.pt").exists()
        process = subprocess.Popen(command(corpus, task, exp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and (starts(exp) == started or updates_logged(exp) < at):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.1))  # mid-update, mid-validation or mid-save
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finished = subprocess.run(command(corpus, task, exp), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    # runs killed before the first save (at update 2) start afresh: at most the first three of the eleven
    assert starts(exp) == 11 and (exp / "train.log").read_text().count("resumed from") == resumable >= 8
    assert [r["update"] for r in records(exp)] == list(range(1, UPDATES + 1))
    assert [r["loss"] for r in records(exp)] == [r["loss"] for r in records(tmp_path / "straight")]
    ours, theirs = (load_checkpoint(e / "checkpoints/last.pt")["model"] for e in (exp, tmp_path / "straight"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
