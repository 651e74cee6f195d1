"""The utterance-level recipes end to end on the CPU: egs/mini_tts/{sid,sv} and egs/mini_music/{instrument,tagging}.

Each runs on its tiny corpus with a tiny fbank HuBERT as the "pretrained" checkpoint (random
weights: these tests check the plumbing, not the figures) and two updates per model, and its
outputs are checked against the data: predictions against the label tables, scores against the trials.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

import audiossl
from audiossl.checkpoint import build_model, save_checkpoint
from audiossl.data.dataset import UtteranceDataset, collate
from audiossl.data.kaldi_dir import read_table
from audiossl.eval.verification import score_file_metrics
from audiossl.models.hubert import HubertConfig

EGS = Path(__file__).resolve().parents[2] / "egs"
TINY = ("--set trainer.max_updates=2 --set trainer.valid_interval=1 --set trainer.save_interval=1 "
        "--set trainer.batch_seconds=8 --set trainer.precision=fp32")
PNG = b"\x89PNG\r\n\x1a\n"


def run(recipe: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AUDIOSSL_CORPORA": str(tmp / "corpora")}
    done = subprocess.run([str(EGS / recipe / "run.sh"), "--size", "tiny", "--pretrained", str(tmp / "tiny.pt"),
                           *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    """A tiny fbank HuBERT checkpoint and the tiny speaker and music data (stage 0 of sid and instrument)."""
    tmp = tmp_path_factory.mktemp("utterance")
    config = HubertConfig.tiny(frontend="fbank")
    torch.manual_seed(0)
    save_checkpoint(tmp / "tiny.pt", "hubert", config.to_dict(), build_model("hubert", config.to_dict()).state_dict())
    run("mini_tts/sid", tmp, "--stop-stage", "0", "--data", str(tmp / "speakers"))
    run("mini_music/instrument", tmp, "--stop-stage", "0", "--data", str(tmp / "music"))
    return tmp


def recipe(name: str, tmp: Path, data: str, *args: str) -> tuple[Path, str]:
    """Run egs/<name> on the shared tiny data; its exp dir and the RESULTS section it wrote."""
    task = name.split("/")[1]
    exp, results = tmp / f"exp_{task}", tmp / f"RESULTS_{task}.md"
    out = run(name, tmp, "--data", str(tmp / data), "--exp", str(exp), "--results", str(results),
              "--finetune-args", TINY + " ".join(("",) + args)).stdout
    assert f"stage 0: tiny {'speakers' if data == 'speakers' else 'mini_music'} data in" in out and "already done" in out
    document = results.read_text()
    assert document.startswith("# Utterance-level fine-tuning") and "do not transfer to real speech" in document
    section = document.split("\n## ")[1]
    assert "| pretrained |" in section and "| scratch |" in section and f"Produced by `{task}/run.sh " in section
    assert "Pretrained upstream: `" + str(tmp / "tiny.pt") + "` (hubert, " in section
    for init in ("pretrained", "scratch"):
        model_dir = exp / init
        assert (model_dir / ".done").exists()
        records = [json.loads(line) for line in (model_dir / "updates.jsonl").read_text().splitlines()]
        assert [r["update"] for r in records] == [1, 2]
        assert all(r["lr_upstream"] == pytest.approx(0.1 * r["lr_head"]) for r in records)
        arguments = yaml.safe_load((model_dir / "config.yaml").read_text())["data"]
        assert arguments["pretrained" if init == "pretrained" else "scratch_like"] == str(tmp / "tiny.pt")
        assert arguments["scratch_like" if init == "pretrained" else "pretrained"] is None
    return exp, section


def check_model(checkpoint: Path, kind: str, num_classes: int) -> None:
    """``load_model`` rebuilds the fine-tuned model; it classifies and embeds raw audio."""
    model = audiossl.load_model(checkpoint)
    assert model.config.family == "utterance" and model.config.head.kind == kind and model.num_classes == num_classes
    wavs, lengths = torch.randn(2, 16000) * 0.05, torch.tensor([16000, 12000])
    with torch.no_grad():
        assert model.classify(wavs, lengths).shape == (2, num_classes)
        assert model.embed(wavs, lengths).shape == (2, model.embedding_dim)


def check_single_label(eval_dir: Path, data_dir: Path, table: str) -> dict:
    """Predictions name every test utterance with its label; accuracy is their agreement."""
    results = json.loads((eval_dir / "results.json").read_text())
    labels = read_table(data_dir / table)
    rows = [line.split() for line in (eval_dir / "predictions").read_text().splitlines()]
    assert [row[0] for row in rows] == sorted(labels) and all(row[1] == labels[row[0]] for row in rows)
    assert results["accuracy"] == pytest.approx(np.mean([row[1] == row[2] for row in rows]))
    assert results["error"] == pytest.approx(1 - results["accuracy"])
    for png in ("confusion.png", "layer_weights.png"):
        assert (eval_dir / png).read_bytes()[:8] == PNG
    weights = results["layer_weights"]
    assert weights["layers"] == [0, 1, 2] and sum(weights["weights"]) == pytest.approx(1.0)
    return results


def test_sid(tmp):
    exp, section = recipe("mini_tts/sid", tmp, "speakers")
    data = tmp / "speakers/speakers"
    classes = (exp / "pretrained/checkpoints/classes.txt").read_text()
    assert classes == (data / "sid_train/labels").read_text() and len(classes.splitlines()) == 8
    for init in ("pretrained", "scratch"):
        results = check_single_label(exp / init / "eval_sid_test", data / "sid_test", "utt2spk")
        assert f"| {init} | {100 * results['accuracy']:.1f} |" in section
    check_model(exp / "pretrained/checkpoints/best.pt", "linear", 8)
    again = run("mini_tts/sid", tmp, "--stage", "1", "--stop-stage", "3", "--data", str(tmp / "speakers"),
                "--exp", str(exp), "--finetune-args", TINY)  # the same settings: nothing is done again
    assert again.stdout.count("already done") == 4


def test_sv(tmp):
    exp, section = recipe("mini_tts/sv", tmp, "speakers")
    trials = tmp / "speakers/speakers/asv_test/trials"
    for init in ("pretrained", "scratch"):
        eval_dir = exp / init / "eval_asv_test"
        results = json.loads((eval_dir / "results.json").read_text())
        scores = [line.split()[:2] for line in (eval_dir / "scores").read_text().splitlines()]
        assert scores == [line.split()[:2] for line in trials.read_text().splitlines()]
        recomputed = score_file_metrics(trials, eval_dir / "scores")
        for key in ("eer", "min_dcf_0.01", "min_dcf_0.05"):
            assert results[key] == pytest.approx(recomputed[key], abs=1e-5)
        assert results["num_trials"] == len(scores) and results["embedding_dim"] == 128
        assert f"| {init} | {100 * results['eer']:.1f} |" in section
        assert (eval_dir / "layer_weights.png").read_bytes()[:8] == PNG
    assert "| Upstream | EER % | minDCF 0.01 | minDCF 0.05 |" in section
    check_model(exp / "pretrained/checkpoints/best.pt", "xvector", 8)


def test_instrument(tmp):
    exp, section = recipe("mini_music/instrument", tmp, "music", "--allow-empty-classes")
    data = tmp / "music/16k"
    assert (exp / "pretrained/checkpoints/classes.txt").read_text().split()[::2] == \
        (data / "notes_train/labels.family").read_text().split()
    for init in ("pretrained", "scratch"):
        check_single_label(exp / init / "eval_notes_test", data / "notes_test", "utt2family")
    run_config = yaml.safe_load((exp / "pretrained/config.yaml").read_text())
    assert run_config["data"]["allow_empty_classes"] and run_config["utterance"]["head"]["kind"] == "linear"
    check_model(exp / "scratch/checkpoints/best.pt", "linear", 16)


def test_tagging(tmp):
    exp, section = recipe("mini_music/tagging", tmp, "music", "--allow-empty-classes")
    test = tmp / "music/16k/tagging_test"
    tags = {utt: set(value.split()) for utt, value in read_table(test / "utt2tags").items()}
    for init in ("pretrained", "scratch"):
        eval_dir = exp / init / "eval_tagging_test"
        results = json.loads((eval_dir / "results.json").read_text())
        present = {tag for values in tags.values() for tag in values}
        never = sorted(set((test / "labels.tags").read_text().split()) - present)
        assert set(never) <= set(results["classes_unscored"]) and results["classes_scored"] <= len(present)
        assert 0 <= results["roc_auc_macro"] <= 1 and 0 < results["map_macro"] <= 1 and 0 < results["lrap"] <= 1
        assert [line.split()[0] for line in (eval_dir / "predictions").read_text().splitlines()] == sorted(tags)
        assert f"| {init} | {results['roc_auc_macro']:.3f} | {results['map_macro']:.3f} |" in section
    model = audiossl.load_model(exp / "pretrained/checkpoints/best.pt")
    classes = (exp / "pretrained/checkpoints/classes.txt").read_text().split()[::2]
    utts = sorted(tags)
    data = UtteranceDataset(test, "waveform")
    batch = collate([data[i] for i in range(len(data))])
    with torch.no_grad():
        logits = model.classify(batch.inputs, batch.lengths).numpy()
    truth = np.array([[c in tags[u] for c in classes] for u in utts])
    scored = [i for i in range(len(classes)) if 0 < truth[:, i].sum() < len(utts)]
    expected = roc_auc_score(truth[:, scored], logits[:, scored], average="macro")
    assert json.loads((exp / "pretrained/eval_tagging_test/results.json").read_text())["roc_auc_macro"] == \
        pytest.approx(expected, abs=1e-4)
