"""MERT end to end on the tiny mini_music corpus: egs/mini_music/ssl (residual-VQ teacher, pretraining),
then its 24 kHz checkpoint through egs/mini_music/instrument and the SUPERB runner's music tasks."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

import audiossl
from audiossl.bin import superb as superb_bin
from audiossl.features.music import cnn_frames
from audiossl.data.kaldi_dir import DataDir
from audiossl.targets.labels import read_labels

EGS = Path(__file__).resolve().parents[2] / "egs"
TINY = ("--set trainer.max_updates=2 --set trainer.valid_interval=2 --set trainer.save_interval=2 "
        "--set trainer.batch_seconds=12 --set trainer.precision=fp32")


def run(recipe: str, tmp: Path, *args: str) -> str:
    env = {**os.environ, "AUDIOSSL_CORPORA": str(tmp / "corpora")}
    done = subprocess.run([str(EGS / recipe / "run.sh"), *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def mert(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny corpus's data dir and the MERT checkpoint its recipe pretrained."""
    tmp = tmp_path_factory.mktemp("mert")
    out = run("mini_music/ssl", tmp, "--prepare-args", "--size tiny", "--data", str(tmp / "data"), "--exp",
              str(tmp / "exp"), "--rvq-args", "--codebooks 2 --codebook-size 16 --hidden 32 --latent-dim 8 --updates 20",
              "--pretrain-args", f"--set model.size=tiny {TINY}")
    assert "stage 2: residual-VQ teacher on train" in out and "stage 4: k-means 2: does not apply to mert" in out
    return tmp, tmp / "exp/mert_iter1/checkpoints/best.pt"


def test_the_recipe_pretrains_mert_on_the_teachers_codes(mert):
    tmp, checkpoint = mert
    data = DataDir.read(tmp / "data/train")
    parts = [DataDir.read(tmp / f"data/24k/{name}_train").utterances for name in ("notes", "tagging", "key")]
    assert data.utterances == sorted(sum(parts, []))  # the 24 kHz clips of every set
    codes = read_labels(tmp / "exp/rvq/train.labels")
    for utt in data.utterances[:5]:
        seconds = float(data["utt2dur"][utt])
        assert codes[utt].shape == (cnn_frames(round(seconds * 24000)), 2)
    records = [json.loads(line) for line in (tmp / "exp/mert_iter1/valid.jsonl").read_text().splitlines()]
    assert {"acc_masked", "loss_masked", "loss_cqt"} <= set(records[-1])
    model = audiossl.load_model(checkpoint)
    assert (model.sample_rate, model.frame_rate, model.target_codebooks) == (24000, 75.0, 2)
    with torch.no_grad():
        states, frames = model.extract_features(torch.randn(1, 24000) * 0.1, torch.tensor([24000]))
    assert len(states) == 3 and int(frames[0]) == 74


def test_the_checkpoint_fine_tunes_and_probes_at_24_khz(mert):
    tmp, checkpoint = mert
    out = run("mini_music/instrument", tmp, "--size", "tiny", "--data", str(tmp / "data"), "--exp", str(tmp / "instr"),
              "--results", str(tmp / "RESULTS_instr.md"), "--pretrained", str(checkpoint),
              "--train-set", "24k/notes_train", "--valid-set", "24k/notes_dev", "--test-set", "24k/notes_test",
              "--finetune-args", TINY + " --allow-empty-classes")
    assert "stage 3: classify, pretrained model on 24k/notes_test" in out
    assert "(mert, linear head)" in (tmp / "RESULTS_instr.md").read_text()
    config = EGS / "mini_tts/superb/conf/superb.yaml"
    for task in ("instrument", "key"):
        out_dir = tmp / "superb" / task
        assert superb_bin.main(["task", "--upstream", str(checkpoint), "--config", str(config), "--cache",
                                str(tmp / "cache"), "--allow-empty-classes", "--no-progress", task, str(tmp / "data"),
                                str(out_dir)]) == 0
        results = json.loads((out_dir / "results.json").read_text())
        assert all(s.startswith(str(tmp / "data/24k/")) for s in results["sets"])
