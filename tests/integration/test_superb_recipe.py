"""egs/mini_tts/superb end to end on the CPU: every task on a tiny HuBERT, one task on an s3prl baseline.

The tiny task sets are made from the tiny mini_tts data dirs (stage 0 of egs/mini_tts/ssl); the
upstream is a tiny fbank HuBERT with random weights: the test checks the plumbing, not the figures.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

import audiossl
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.models.hubert import HubertConfig

EGS = Path(__file__).resolve().parents[2] / "egs" / "mini_tts"
SUPERB_TASKS = ("pr", "asr", "ks", "ic", "sid", "asv", "instrument", "pitch", "tagging", "key")


def run(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUDIOSSL_CORPORA": str(tmp / "corpora")}
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    """The tiny mini_tts data dirs and a tiny HuBERT checkpoint where the ssl recipe puts its own."""
    tmp = tmp_path_factory.mktemp("superb")
    run([str(EGS / "ssl" / "run.sh"), "--data", str(tmp / "data"), "--prepare-args", "--size tiny", "--stop-stage", "0"],
        tmp)
    config = HubertConfig.tiny(frontend="fbank")
    torch.manual_seed(0)
    save_checkpoint(tmp / "exp/hubert_iter2/checkpoints/best.pt", "hubert", config.to_dict(),
                    build_model("hubert", config.to_dict()).state_dict())
    return tmp


def superb_args(tmp: Path, *args: str) -> list[str]:
    """egs/mini_tts/superb on the tiny task sets, 4 updates a task."""
    config = tmp / "superb.yaml"
    config.write_text("tasks:\n" + "".join(
        f"  {t}: {{updates: 4, batch_size: 4, valid_interval: 2, head: {{hidden_size: 16, channels: 16}}}}\n"
        for t in SUPERB_TASKS))
    return [str(EGS / "superb" / "run.sh"), "--size", "tiny", "--data", str(tmp / "superb_data"),
            "--mini-tts-data", str(tmp / "data"), "--exp", str(tmp / "exp_superb"),
            "--results", str(tmp / "SUPERB.md"), "--superb-config", str(config), "--superb-args", "--allow-empty-classes",
            *args]


def test_superb_runs_every_task_on_a_checkpoint_and_a_baseline(tmp):
    """The SUPERB runner on a HuBERT checkpoint (every task) and on s3prl's mfcc (KS): each task's
    results, plots and scores, the ASV scores against the trials, one table with both upstreams."""
    hubert = tmp / "exp/hubert_iter2/checkpoints/best.pt"
    baseline_tasks = ("ks",)
    for upstream, tasks in ((str(hubert), SUPERB_TASKS), ("mfcc", baseline_tasks)):
        done = run(superb_args(tmp, "--upstream", upstream, "--tasks", " ".join(tasks)), tmp)
    made = [line.split("stage 0: ")[1].split(" task sets")[0] for line in done.stdout.splitlines() if "stage 0: " in line]
    assert made == ["ks"] and "already done" in done.stdout   # stage 0 makes only the sets --tasks read, once
    assert "| mfcc | – | – | " in done.stdout                  # stage 3 prints the table
    exp = tmp / "exp_superb"
    assert sorted(p.name for p in exp.iterdir()) == ["cache", "hubert_iter2_best", "mfcc"]
    for name, tasks in (("hubert_iter2_best", SUPERB_TASKS), ("mfcc", baseline_tasks)):
        assert sorted(p.name for p in (exp / name).iterdir()) == sorted(tasks)
        for task in tasks:
            results = json.loads((exp / name / task / "results.json").read_text())
            assert results["upstream"] == name and results["dev"]["update"] in (2, 4)
            assert results["value"] == results["figures"][results["metric"]]
            assert (exp / name / task / "layer_weights.png").read_bytes().startswith(b"\x89PNG")
            if task in ("ks", "ic", "sid", "instrument", "pitch", "key"):
                assert (exp / name / task / "confusion.png").exists()
        states = len(json.loads((exp / name / "ks" / "results.json").read_text())["layer_weights"]["weights"])
        assert states == (1 if name == "mfcc" else len(audiossl.load_model(hubert).hidden_sizes))
    trials = (tmp / "superb_data/speakers/asv_test/trials").read_text().split("\n")
    scores = (exp / "hubert_iter2_best" / "asv" / "scores").read_text().split("\n")
    assert [s.split()[:2] for s in scores if s] == [t.split()[:2] for t in trials if t]
    table = (tmp / "SUPERB.md").read_text()
    assert "| Upstream | PR PER % ↓ | ASR WER % ↓ | KS Acc % ↑ | IC Acc % ↑ | SID Acc % ↑ | ASV EER % ↓ |" in table
    assert "| hubert_iter2_best |" in table and "| mfcc | – | – | " in table and "Produced by `superb/run.sh " in table
    assert len((tmp / "results.csv").read_text().splitlines()) == 3
