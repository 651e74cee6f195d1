"""k-means fit + label at corpus scale: audiossl's Lloyd streamed over shards against scikit-learn's
MiniBatchKMeans with fairseq's settings, side by side.

    python bench/kmeans.py [--frames 200000] [--clusters 500] [--threads 2] [--memory-frames 50000,100000,200000]

Features: 768-dim frames of synthesized speech (the mini_tts engines reading WordNet's example
sentences): 96-bin Kaldi fbank stacked over 8 consecutive frames, 100 per second, written as
``.npy`` shards of 50,000 frames (``--features X.npy`` clusters a (frames, dim) float32 file of
your own instead, e.g. a HuBERT layer). Each fit runs in a child process, so its peak resident
memory is its own:

- scikit-learn: ``MiniBatchKMeans`` with fairseq ``examples/hubert/simple_kmeans/learn_kmeans.py``'s
  settings (k-means++, batch 10,000, n_init 20, max_iter 100, max_no_improvement 100, tol 0,
  reassignment_ratio 0, init_size 3 x batch) on the features loaded into memory, as fairseq does,
  then ``predict`` of every frame;
- audiossl: ``fit_kmeans`` streamed over the shards (defaults), then the label of every frame,
  shard by shard.

Inertia is the mean squared distance of every frame to its nearest center, computed the same way
for both. The memory rows fit audiossl on the first N frames' shards.
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
import torch

from audiossl.audio import load_entry
from audiossl.corpora import mini_tts
from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.targets.kmeans import FrameShards, KMeansModel, fit_kmeans

from speech import synthesize  # bench/speech.py

MEL_BINS, STACK, SHARD_FRAMES = 96, 8, 50_000
SPEAKERS = ["flite_kal16", "flite_slt", "flite_rms", "flite_awb", "espeak_m3", "espeak_f2", "espeak_m7",
            "espeak_f5"]


def speech_features(out_dir: Path, frames: int) -> list[Path]:
    """At least ``frames`` stacked-fbank frames of synthesized speech, as shards of SHARD_FRAMES."""
    sentences = mini_tts.wordnet_examples()
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", [f"--num-mel-bins={MEL_BINS}"]))
    rows: list[np.ndarray] = []
    made, batch = 0, 0
    while made < frames:
        wavs = synthesize(out_dir / f"wav{batch}", 64, SPEAKERS, sentences[batch * 64:])
        for wav in wavs:
            fbank = extractor(load_entry(str(wav))[0])
            stacked = np.lib.stride_tricks.sliding_window_view(fbank, (STACK, MEL_BINS))[:, 0]
            rows.append(stacked.reshape(len(stacked), STACK * MEL_BINS))
            made += len(stacked)
        (out_dir / f"wav{batch}").rename(out_dir / f"done{batch}")
        batch += 1
    return write_shards(np.concatenate(rows)[:frames], out_dir)


def write_shards(features: np.ndarray, out_dir: Path) -> list[Path]:
    paths = []
    for i, start in enumerate(range(0, len(features), SHARD_FRAMES)):
        paths.append(out_dir / f"frames.{i}.npy")
        np.save(paths[-1], np.ascontiguousarray(features[start:start + SHARD_FRAMES], dtype=np.float32))
    return paths


def inertia_of(centers: np.ndarray, shards: FrameShards) -> float:
    """Mean squared distance of every frame to its nearest of ``centers``."""
    model = KMeansModel(torch.from_numpy(np.asarray(centers, dtype=np.float32)))
    total = sum(float(model.assign(block)[1].sum()) for block in shards.blocks())
    return total / shards.num_frames


def run_child(kind: str, paths: list[Path], clusters: int, threads: int) -> dict:
    """Fit and label in this process; the figures as a dict."""
    torch.set_num_threads(threads)
    shards = FrameShards(paths)
    start = time.perf_counter()
    if kind == "sklearn":
        from sklearn.cluster import MiniBatchKMeans
        from threadpoolctl import threadpool_limits

        with threadpool_limits(threads):
            features = np.concatenate(list(shards.blocks()))
            km = MiniBatchKMeans(n_clusters=clusters, init="k-means++", max_iter=100, batch_size=10000, tol=0.0,
                                 max_no_improvement=100, init_size=None, n_init=20, reassignment_ratio=0.0,
                                 compute_labels=False, random_state=0).fit(features)
            fitted = time.perf_counter()
            labels = km.predict(features)
        centers = km.cluster_centers_
    else:
        model = fit_kmeans(shards, clusters, seed=0)
        fitted = time.perf_counter()
        labels = np.concatenate([model.predict(block) for block in shards.blocks()])
        centers = model.centers.numpy()
    labelled = time.perf_counter()
    return {"fit_s": fitted - start, "label_s": labelled - fitted, "frames": len(labels),
            "clusters_used": int(len(np.unique(labels))), "inertia": inertia_of(centers, shards),
            "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident memory since its exec (``VmHWM``; ``ru_maxrss`` would count the
    forking parent's)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def child(kind: str, paths: list[Path], clusters: int, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--clusters", str(clusters),
                          "--threads", str(threads), *map(str, paths)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000, help="frames clustered (default 200000)")
    parser.add_argument("--clusters", type=int, default=500, help="k (default 500, HuBERT iteration 2's)")
    parser.add_argument("--threads", type=int, default=2, help="threads of each fit (default 2)")
    parser.add_argument("--memory-frames", default="50000,100000,200000",
                        help="corpus sizes of the audiossl memory rows, multiples of 50000 ('' for none)")
    parser.add_argument("--features", help="a (frames, dim) float32 .npy to cluster instead of synthesized speech")
    parser.add_argument("--child", choices=("sklearn", "audiossl"), help=argparse.SUPPRESS)
    parser.add_argument("shards", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, [Path(p) for p in args.shards], args.clusters, args.threads)))
        return

    with tempfile.TemporaryDirectory(prefix="bench_kmeans_") as tmp:
        start = time.perf_counter()
        if args.features:
            paths = write_shards(np.load(args.features, mmap_mode="r")[:args.frames], Path(tmp))
            source = args.features
        else:
            paths = speech_features(Path(tmp), args.frames)
            source = f"synthesized speech, {MEL_BINS}-bin fbank x {STACK} frames"
        shards = FrameShards(paths)
        print(f"{shards.num_frames} frames x {shards.dim} ({source}; made in {time.perf_counter() - start:.0f} s); "
              f"k = {args.clusters}; {args.threads} thread(s) per fit", flush=True)
        results = {kind: child(kind, paths, args.clusters, args.threads) for kind in ("sklearn", "audiossl")}
        base = results["sklearn"]
        print(f"\n{'':<38}{'fit s':>8}{'label s':>9}{'total s':>9}{'speed-up':>10}{'inertia':>12}"
              f"{'vs sklearn':>12}{'clusters':>10}{'peak MB':>9}")
        for kind, name in (("sklearn", "scikit-learn MiniBatchKMeans (fairseq)"), ("audiossl", "audiossl fit_kmeans")):
            r = results[kind]
            total = r["fit_s"] + r["label_s"]
            print(f"{name:<38}{r['fit_s']:8.1f}{r['label_s']:9.2f}{total:9.1f}"
                  f"{(base['fit_s'] + base['label_s']) / total:9.1f}x{r['inertia']:12.5g}"
                  f"{100 * (r['inertia'] / base['inertia'] - 1):+11.2f}%{r['clusters_used']:10d}{r['peak_rss_mb']:9.0f}")
        sizes = [int(n) for n in args.memory_frames.split(",") if n]
        if sizes:
            print(f"\naudiossl peak resident memory as the corpus grows (k = {args.clusters})")
            for n in sizes:
                r = child("audiossl", paths[:max(1, n // SHARD_FRAMES)], args.clusters, args.threads)
                print(f"{r['frames']:>9} frames: {r['peak_rss_mb']:7.0f} MB, fit {r['fit_s']:.1f} s")


if __name__ == "__main__":
    main()
