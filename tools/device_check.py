"""Every family trained a few updates on this machine's device (a GPU where torch sees one), as a user would.

    python tools/device_check.py [--work DIR] [--updates 6]

On a tiny synthetic corpus (24 utterances of 1-2 s, made here: no speech engine needed) it runs, each in
its own process with trainer.device and trainer.precision on auto (bf16 on GPUs that have it):
  - bin.pretrain of every family with its mini_tts recipe config at size tiny (HuBERT and wav2vec 2.0
    also with the waveform front end, WavLM with noise mixing, UniSpeech-SAT with speaker-aware mixing);
  - bin.finetune_ctc from the HuBERT checkpoint;
  - exact resume: HuBERT on a constant schedule for N updates in one go, and for N/2 then resumed to N
    (max_updates may grow on a constant schedule): the update logs must be equal, loss for loss;
  - load_model of each checkpoint, extract_features on the device against the CPU (largest difference
    of any layer: cuDNN convolutions run in TF32 on Ampere and later GPUs by torch's default).
It prints one JSON line per check and ends with the failed ones; exit status 1 if any failed.
The trainer's and tasks' unit tests need no sox and train on the device too (device auto):
    python -m pytest tests/train/test_trainer.py tests/tasks tests/bin/test_training_entry_points.py
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from conftest import synth_speechlike  # noqa: E402

import audiossl  # noqa: E402
from audiossl.data.kaldi_dir import DataDir, merge_tables, write_table  # noqa: E402
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor  # noqa: E402
from audiossl.features.store import compute_features  # noqa: E402

CONF = ROOT / "egs/mini_tts/ssl/conf"
WORDS = "the cat sat on a mat while birds sang over green hills near old towns".split()
CLASSES = 20
# name: (recipe config, extra arguments); "labelled" runs get k-means-like labels
PRETRAINING = {
    "hubert": ("pretrain1.yaml", ["labelled"]),
    "hubert_waveform": ("pretrain1.yaml", ["labelled", "--set", "model.args.frontend=waveform",
                                           "--set", "model.set.frequency_warp=0"]),
    "wav2vec2": ("wav2vec2.yaml", []),
    "wav2vec2_waveform": ("wav2vec2.yaml", ["--set", "model.args.frontend=waveform"]),
    "wavlm": ("wavlm1.yaml", ["labelled", "noise", "--set", "mixing.prob=1.0"]),
    "unispeech_sat": ("unispeech_sat1.yaml", ["labelled", "--set", "mixing.prob=1.0"]),
    "best_rq": ("best_rq.yaml", []),
    "ssamba": ("ssamba.yaml", ["--set", "model.size=cpu"]),
    "tera": ("tera.yaml", []),
}


def make_corpus(root: Path) -> None:
    """train/ (wav.scp, text, fbank feats.scp), noise/ and 50 Hz labels under ``root``."""
    rng = np.random.default_rng(0)
    wav_scp, text = {}, {}
    for i in range(24):
        path = root / "wav" / f"u{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, synth_speechlike(1.0 + 0.05 * i, seed=i), 16000)
        utt = f"spk{i % 4}-u{i:02d}"
        wav_scp[utt], text[utt] = str(path), " ".join(rng.choice(WORDS, 4)).upper()
    data = DataDir({"wav.scp": wav_scp, "text": text, "utt2spk": {u: u.split("-")[0] for u in wav_scp}})
    data.write(root / "train")
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--num-mel-bins=80"]))
    frames = compute_features(data, extractor, root / "train/fbank/raw.ark")
    write_table(root / "train/feats.scp", merge_tables([root / "train/fbank/raw.scp"]))
    write_table(root / "train/utt2num_frames", {k: str(v) for k, v in frames.items()})
    noise = {}
    for i in range(3):
        path = root / "noise_wav" / f"n{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, (0.05 * rng.standard_normal(32000)).astype(np.float32), 16000)
        noise[f"n{i}"] = str(path)
    DataDir({"wav.scp": noise, "utt2spk": {u: u for u in noise}}).write(root / "noise")
    # one label per two 10 ms frames: the 50 Hz frames of both front ends
    write_table(root / "labels", {u: " ".join(map(str, rng.integers(0, CLASSES, (n + 1) // 2))) for u, n in frames.items()})


def run(name: str, args: list[str], logs: Path) -> bool:
    """``python3 <args>``; one JSON line of its outcome, its output in ``logs/<name>.log``."""
    start = time.time()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    (logs / f"{name}.log").write_text(done.stdout + done.stderr)
    line = {"check": name, "ok": done.returncode == 0, "seconds": round(time.time() - start, 1)}
    if done.returncode:
        line["error"] = done.stderr[-1500:]
    print(json.dumps(line), flush=True)
    return done.returncode == 0


def training_options(data: Path, updates: int, interval: int | None = None) -> list[str]:
    """Options of a run of ``updates`` updates, validated and saved every ``interval`` (default: half)."""
    interval = interval or max(updates // 2, 1)
    sets = {"trainer.max_updates": updates, "trainer.batch_seconds": 8, "trainer.log_interval": 1,
            "trainer.valid_interval": interval, "trainer.save_interval": interval,
            "trainer.schedule.warmup_updates": 2}
    return [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")] + [
        "--train-data", str(data / "train"), "--valid-data", str(data / "train")]


def pretraining(name: str, data: Path, updates: int, interval: int | None = None) -> list[str]:
    config, extra = PRETRAINING[name]
    expanded = []
    for arg in extra:
        if arg == "labelled":
            expanded += ["--train-labels", str(data / "labels"), "--valid-labels", str(data / "labels"),
                         "--set", f"model.set.num_classes={CLASSES}"]
        elif arg == "noise":
            expanded += ["--noise-data", str(data / "noise")]
        else:
            expanded.append(arg)
    return ["-m", "audiossl.bin.pretrain", "--config", str(CONF / config), "--set", "model.size=tiny",
            *training_options(data, updates, interval), *expanded]


def exact_resume(work: Path, data: Path, updates: int) -> bool:
    """HuBERT on a constant schedule: N updates in one go against N/2, then resumed to N, validated at the
    same updates (the validation loader draws its base seed from torch's global generator, so where
    validation falls is part of the trajectory)."""
    constant = ["--set", "trainer.schedule.name=constant"]
    straight, resumed = work / "exp/resume_straight", work / "exp/resume_resumed"
    base = pretraining("hubert", data, updates, updates // 2) + constant
    half = pretraining("hubert", data, updates // 2, updates // 2) + constant
    if not all(run(name, args + [str(exp)], work / "logs") for name, args, exp in (
            ("resume_straight", base, straight), ("resume_first_half", half, resumed),
            ("resume_second_half", base, resumed))):
        return False
    logs = [[json.loads(line)["loss"] for line in (exp / "updates.jsonl").read_text().splitlines()]
            for exp in (straight, resumed)]
    equal = logs[0] == logs[1] and len(logs[0]) == updates
    print(json.dumps({"check": "exact_resume", "ok": equal, "losses": logs}), flush=True)
    return equal


def features_on_device(path: Path, name: str) -> bool:
    """load_model's extract_features on the device against the CPU, on a padded batch of two."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    wavs = torch.stack([torch.from_numpy(synth_speechlike(1.5, seed=s)) for s in (1, 2)])
    lengths = torch.tensor([24000, 17000])
    model = audiossl.load_model(path).eval()
    with torch.no_grad():
        on_cpu, _ = model.extract_features(wavs, lengths)
        on_device, _ = model.to(device).extract_features(wavs.to(device), lengths.to(device))
    difference = max(float((a - b.cpu()).abs().max()) for a, b in zip(on_cpu, on_device, strict=True))
    print(json.dumps({"check": f"features_{name}", "ok": difference < 1e-2, "device": str(device),
                      "max_difference": difference}), flush=True)
    return difference < 1e-2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="where the corpus and runs go (default: a new temporary dir)")
    parser.add_argument("--updates", type=int, default=6, help="updates of each run (even)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="device_check_"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                      "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                      "work": str(work)}), flush=True)
    data = work / "data"
    make_corpus(data)
    results = {name: run(f"pretrain_{name}", pretraining(name, data, args.updates) + [str(work / "exp" / name)],
                         work / "logs") for name in PRETRAINING}
    results["ctc_hubert"] = run("ctc_hubert", [
        "-m", "audiossl.bin.finetune_ctc", "--config", str(ROOT / "egs/mini_tts/asr/conf/finetune.yaml"),
        "--init", str(work / "exp/hubert/checkpoints/best.pt"), "--set", "ctc.encoder_layers=2",
        *training_options(data, args.updates), str(work / "exp/ctc_hubert")], work / "logs")
    results["exact_resume"] = exact_resume(work, data, args.updates)
    for name in [*PRETRAINING, "ctc_hubert"]:
        if results[name]:
            results[f"features_{name}"] = features_on_device(work / "exp" / name / "checkpoints/best.pt", name)
    failed = [name for name, ok in results.items() if not ok]
    print(json.dumps({"failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
