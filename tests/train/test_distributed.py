"""Several processes train as one: DDP and FSDP on 2 CPU ranks (gloo, torchrun) against one process with
the same global batch, and checkpoints that move between one process and FSDP."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
import torch
import yaml

from audiossl.checkpoint import build_model, load_checkpoint
from audiossl.data.kaldi_dir import DataDir, merge_tables, write_table
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.features.store import compute_features
from audiossl.models.hubert import HubertConfig
from conftest import synth_speechlike

# Nothing random but the batches' order: no masking, dropout, layer drop or warping, so that one process
# and two ranks see the same global batch and compute the same gradient (up to summation order).
CONFIG = {
    "model": {"family": "hubert", "size": "tiny", "args": {"frontend": "fbank"},
              "set": {"num_classes": 5, "unmasked_weight": 1.0, "dropout_input": 0.0, "frequency_warp": 0.0,
                      "mask": {"prob": 0.0, "min_masks": 0},
                      "encoder": {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0,
                                  "layer_drop": 0.0}}},
    "trainer": {"max_updates": 4, "batch_seconds": 2.5, "lr": 2e-3, "precision": "fp32", "log_interval": 1,
                "valid_interval": 2, "save_interval": 2, "keep_last": 4, "num_workers": 0, "num_threads": 1,
                "schedule": {"warmup_updates": 1}},
}
# Two ranks sum the same per-frame gradients in another order (all-reduce, reduce-scatter) than one
# process: float32 rounding, which four AdamW steps leave at 0 (DDP) and 6e-8 (FSDP) in the weights
# here, where training moves them by 2e-3 (lr) from update 2 to 4; a skipped batch or a wrongly
# scaled gradient would move them by about that much.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Twelve utterances of 1-2 s with fbank features, labels and a run config."""
    root = tmp_path_factory.mktemp("distributed")
    wav_scp = {}
    for i in range(12):
        path = root / f"u{i:02d}.wav"
        soundfile.write(path, synth_speechlike(1.0 + 0.09 * i, seed=i), 16000)
        wav_scp[f"spk{i % 3}-u{i:02d}"] = str(path)
    data = DataDir({"wav.scp": wav_scp, "utt2spk": {u: u.split("-")[0] for u in wav_scp}})
    data.write(root / "data")
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--num-mel-bins=80"]))
    frames = compute_features(data, extractor, root / "data/fbank/raw.ark")
    write_table(root / "data/feats.scp", merge_tables([root / "data/fbank/raw.scp"]))
    write_table(root / "data/utt2num_frames", {k: str(v) for k, v in frames.items()})
    (root / "run.yaml").write_text(yaml.safe_dump(CONFIG))
    model = build_model("hubert", HubertConfig.tiny(frontend="fbank").to_dict())
    counts = model.num_frames(torch.tensor(list(frames.values())))
    generator = torch.Generator().manual_seed(0)
    write_table(root / "labels", {utt: " ".join(map(str, torch.randint(0, 5, (int(n),), generator=generator).tolist()))
                                  for utt, n in zip(frames, counts)})
    return root


def pretrain(corpus: Path, exp: Path, ranks: int, *settings: str) -> None:
    """bin.pretrain on the corpus, in one process or under torchrun with ``ranks`` CPU ranks."""
    launcher = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                     "--nproc-per-node", str(ranks)]
    sets = [arg for setting in settings for arg in ("--set", setting)]
    done = subprocess.run([*launcher, "-m", "audiossl.bin.pretrain", "--config", str(corpus / "run.yaml"), *sets,
                           "--train-data", str(corpus / "data"), "--train-labels", str(corpus / "labels"),
                           "--valid-data", str(corpus / "data"), "--valid-labels", str(corpus / "labels"), str(exp)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def largest_difference(a: Path, b: Path) -> float:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    return max(float((first[k] - second[k]).abs().max()) for k in first)


def losses(exp: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (exp / "updates.jsonl").read_text().splitlines()]


def test_two_ranks_train_as_one_process_and_checkpoints_move_between_them(corpus, tmp_path):
    pretrain(corpus, tmp_path / "one", 1, "trainer.accum_steps=2")
    for strategy in ("ddp", "fsdp"):
        pretrain(corpus, tmp_path / strategy, 2, f"trainer.strategy={strategy}")
        assert largest_difference(tmp_path / "one/checkpoints/last.pt", tmp_path / strategy / "checkpoints/last.pt") \
            < TOLERANCE, strategy
        assert losses(tmp_path / strategy) == pytest.approx(losses(tmp_path / "one"), rel=1e-6), strategy
    state = load_checkpoint(tmp_path / "fsdp/checkpoints/last.pt")["train_state"]
    assert state["world_size"] == 2 and state["update"] == 4 and len(state["rng"]) == 2
    one_state = load_checkpoint(tmp_path / "one/checkpoints/last.pt")["train_state"]["optimizer"]
    assert state["optimizer"]["state"].keys() == one_state["state"].keys()  # the same (one-process) layout

    # one process's checkpoint at update 2 resumes under FSDP, and FSDP's under one process
    for source, target, ranks, settings in (("one", "to_fsdp", 2, ["trainer.strategy=fsdp"]),
                                            ("fsdp", "from_fsdp", 1, ["trainer.accum_steps=2"])):
        (tmp_path / target / "checkpoints").mkdir(parents=True)
        shutil.copy(tmp_path / source / "checkpoints/update_2.pt", tmp_path / target / "checkpoints/last.pt")
        pretrain(corpus, tmp_path / target, ranks, *settings)
        assert "resumed with a different world size" in (tmp_path / target / "train.log").read_text()
        assert largest_difference(tmp_path / "one/checkpoints/last.pt", tmp_path / target / "checkpoints/last.pt") \
            < TOLERANCE, target


def test_fsdp_refuses_layer_drop(corpus, tmp_path):
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "audiossl.bin.pretrain", "--config", str(corpus / "run.yaml"),
                           "--set", "trainer.strategy=fsdp", "--set", "model.set.encoder.layer_drop=0.1",
                           "--train-data", str(corpus / "data"), "--train-labels", str(corpus / "labels"),
                           str(tmp_path / "exp")], capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "trainer.strategy fsdp cannot train with layer drop (TransformerEncoder.layer_drop=0.1)" in done.stderr
