"""egs/mini_tts/domain on the tiny corpus: radio and noisy copies, a HuBERT pretrained on radio audio,
fine-tuned on radio labels against scratch, decoded on clean and radio test sets, and the grid table."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import audiossl
from audiossl.data.kaldi_dir import DataDir

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "mini_tts" / "domain" / "run.sh"
TINY_PRETRAIN = ("--set model.size=tiny --set trainer.max_updates=3 --set trainer.valid_interval=3 "
                 "--set trainer.save_interval=3 --set trainer.batch_seconds=10")
TINY_FINETUNE = ("--set trainer.max_updates=3 --set trainer.valid_interval=3 --set trainer.save_interval=3 "
                 "--set trainer.batch_seconds=10 --set ctc.encoder_layers=1")


def test_domain_grid_on_the_tiny_corpus(tmp_path):
    env = {**os.environ, "AUDIOSSL_CORPORA": str(tmp_path / "corpora")}
    done = subprocess.run([str(RECIPE), "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"),
                           "--prepare-args", "--size tiny", "--pretrain-domains", "radio",
                           "--finetune-sets", "train_1h_radio", "--test-sets", "test test_radio", "--kmeans2-layer", "1",
                           "--pretrain-args", TINY_PRETRAIN, "--finetune-args", TINY_FINETUNE,
                           "--results", str(tmp_path / "RESULTS.md")],
                          env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = tmp_path / "data"
    clean, radio = DataDir.read(data / "test"), DataDir.read(data / "test_radio")
    assert radio.utterances == [f"{utt}-radio" for utt in clean.utterances]
    assert set(DataDir.read(data / "train_unlab_all").utterances) == (
        set(DataDir.read(data / "train_unlab").utterances) | set(DataDir.read(data / "train_unlab_noisy").utterances)
        | set(DataDir.read(data / "train_unlab_radio").utterances))
    labels = (tmp_path / "exp/pt_radio/kmeans1/train_unlab_radio.labels").read_text().splitlines()
    assert all(line.split()[0].endswith("-radio") for line in labels)
    model = audiossl.load_model(tmp_path / "exp/pt_radio/hubert_iter2/checkpoints/best.pt")
    assert model.config.family == "hubert"
    section = (tmp_path / "RESULTS.md").read_text()
    assert "| pretraining | fine-tuning set | test | test_radio |" in section
    assert "| radio | train_1h_radio |" in section and "| none | train_1h_radio |" in section
