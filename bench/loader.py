"""The data path against the training step it feeds, and the padding of length buckets against random batches.

    python bench/loader.py [--utts 600] [--batch-seconds 20] [--steps 6] [--workers 1] [--threads 0]

A data dir of synthesized speech-like utterances (lengths log-normal as in a read-speech corpus:
median 5 s, 1 to 20 s; one hour by default) is written to a temporary directory with 80-bin Kaldi
fbank in ``feats.scp``. The trainer's data path (``UtteranceDataset``, ``BucketBatchSampler``,
``DataLoader`` with ``collate`` and the trainer's ``num_workers``) is read over one epoch for
three inputs: stored fbank (the demo), waveforms (CNN front ends) and fbank computed from the
audio as items are read (what mixing transforms need); printed as audio seconds per second.
The step it feeds: a training update (forward, backward, AdamW) of the demo's HuBERT (small,
fbank front end, fp32) on the same batches, median of ``--steps``. The ratio of the two is what
the loader has to spare (target: 10x). Padding: the share of non-padding frames in length-bucketed
batches against random batches under the same bound (utterances in random order, a batch closed
when the next one would break it).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from audiossl.data.dataset import BucketBatchSampler, UtteranceDataset, collate, input_rate
from audiossl.data.kaldi_dir import DataDir, merge_tables, write_table
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.features.store import compute_features
from audiossl.models.hubert import HubertConfig, build_hubert

RATE = 16000


def speechlike(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A harmonic, amplitude-modulated signal with noise, (samples,) float32."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * np.cumsum(100 + 80 * rng.random() + 20 * np.sin(np.pi * t)) / RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    return (0.2 * wave / np.abs(wave).max() + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def make_corpus(root: Path, utts: int, seed: int) -> Path:
    """``utts`` utterances with lengths log-normal around 5 s (1-20 s), wav.scp and 80-bin fbank."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(5.0), 0.6, utts), 1.0, 20.0)
    wav_scp = {}
    for i, seconds in enumerate(lengths):
        path = root / "wav" / f"u{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, speechlike(seconds, rng), RATE, subtype="PCM_16")
        wav_scp[f"spk{i % 20:02d}-u{i:05d}"] = str(path)
    data = DataDir({"wav.scp": wav_scp, "utt2spk": {u: u.split("-")[0] for u in wav_scp}})
    data.write(root / "audio")
    data.write(root / "fbank")
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", ["--num-mel-bins=80"]))
    frames = compute_features(data, extractor, root / "fbank/feats/raw.ark")
    write_table(root / "fbank/feats.scp", merge_tables([root / "fbank/feats/raw.scp"]))
    write_table(root / "fbank/utt2num_frames", {k: str(v) for k, v in frames.items()})
    return root


def epoch_seconds(data: UtteranceDataset, batches: list[list[int]], workers: int) -> float:
    """Wall time to read and collate every batch once, as the trainer's loader does."""
    loader = torch.utils.data.DataLoader(data, batch_sampler=batches, collate_fn=collate, num_workers=workers)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def update_seconds(data: UtteranceDataset, batches: list[list[int]], steps: int) -> list[tuple[float, float]]:
    """(audio seconds, wall seconds) of training updates of the demo's HuBERT on the first batches."""
    torch.manual_seed(0)
    model = build_hubert(HubertConfig.small("fbank")).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    timed = []
    for index in batches[:steps + 1]:  # the first update warms up
        batch = collate([data[i] for i in index])
        frames = model.num_frames(batch.lengths)
        targets = torch.randint(0, 100, (batch.size, int(frames.max())), generator=generator)
        targets[torch.arange(targets.shape[1]) >= frames[:, None]] = -100  # labels of each item's frames, then padding
        start = time.perf_counter()
        model(batch.inputs, batch.lengths, targets, generator).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timed.append((float(batch.lengths.sum()) / input_rate(data), time.perf_counter() - start))
    return timed[1:]


def random_batches(lengths: list[int], max_frames: int, seed: int) -> list[list[int]]:
    """Utterances in random order, a batch closed when the next would take it past ``max_frames`` padded."""
    order = np.random.default_rng(seed).permutation(len(lengths)).tolist()
    batches, current, longest = [], [], 0
    for index in order:
        if current and max(longest, lengths[index]) * (len(current) + 1) > max_frames:
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, lengths[index])
    return batches + [current] if current else batches


def non_padding(lengths: list[int], batches: list[list[int]]) -> float:
    real = sum(lengths[i] for batch in batches for i in batch)
    return real / sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=600)
    parser.add_argument("--batch-seconds", type=float, default=20.0, help="padded audio per batch (the demo's 20)")
    parser.add_argument("--steps", type=int, default=6, help="training updates timed (after one warm-up)")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (the trainer's default 1)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        root = make_corpus(Path(tmp), args.utts, args.seed)
        stored = UtteranceDataset(root / "fbank", "fbank")
        hours = sum(stored.lengths) / 100 / 3600
        print(f"{args.utts} utterances, {hours:.2f} h (made in {time.perf_counter() - started:.0f} s); batches of "
              f"{args.batch_seconds:g} s padded; {args.workers} loader worker(s); {torch.get_num_threads()} thread(s)")
        inputs = {"fbank, stored (feats.scp)": stored,
                  "waveform (wav.scp)": UtteranceDataset(root / "audio", "waveform"),
                  "fbank, from the audio": UtteranceDataset(root / "audio", "fbank", num_mel_bins=80)}
        print(f"\n{'input':<28} {'batches':>7} {'audio s/s':>10}")
        speeds = {}
        for name, data in inputs.items():
            batches = BucketBatchSampler(data.lengths, int(args.batch_seconds * input_rate(data)),
                                         seed=args.seed).epoch_batches(0)
            seconds = epoch_seconds(data, batches, args.workers)
            speeds[name] = sum(data.lengths) / input_rate(data) / seconds
            print(f"{name:<28} {len(batches):7d} {speeds[name]:10.0f}")

        bucket = BucketBatchSampler(stored.lengths, int(args.batch_seconds * 100), seed=args.seed).epoch_batches(0)
        timed = update_seconds(stored, bucket, args.steps)
        step = statistics.median(audio / wall for audio, wall in timed)
        print(f"\ntraining update of the demo's HuBERT (small, fbank, fp32): {step:.1f} audio s/s "
              f"(median of {len(timed)}, {statistics.median(w for _, w in timed):.2f} s per update)")
        print(f"{'input':<28} {'loader / update':>15}")
        for name, speed in speeds.items():
            print(f"{name:<28} {speed / step:14.1f}x")

        max_frames = int(args.batch_seconds * 100)
        shuffled = random_batches(stored.lengths, max_frames, args.seed)
        print(f"\n{'batching':<28} {'batches':>7} {'non-padding frames':>19}")
        for name, batches in (("length buckets (audiossl)", bucket), ("random order", shuffled)):
            print(f"{name:<28} {len(batches):7d} {100 * non_padding(stored.lengths, batches):18.1f}%")


if __name__ == "__main__":
    main()
