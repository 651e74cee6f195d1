"""HuBERT-style k-means targets from a data dir's feats.scp (stages "k-means 1" and "k-means 2").

    python -m audiossl.bin.kmeans fit --num-clusters K [--max-frames N] [--seed S] [--deltas 2] [--utt-cmvn] \\
        <data-dir> <model-out>
        writes the frames of randomly ordered utterances (up to N) as shards to <model-out>.work/, fits
        k-means++ and Lloyd's k-means streamed over them, prints inertia and cluster usage; a killed fit
        rerun with the same arguments continues from its last shard and pass (shards made with other
        features, settings or inputs are made again)
    python -m audiossl.bin.kmeans apply [--deltas 2] [--utt-cmvn] <model> <data-dir> <labels-out.txt>
        labels every frame of a data dir (one job, e.g. on data/split4utt/JOB)
    python -m audiossl.bin.kmeans merge [--data-dir D] [--utt2num-frames F] <labels-out.txt> <job-labels>...
        merges the jobs' label tables; checks every utterance of D has labels and,
        with F, that each has exactly its number of frames

Features are the data dir's feats.scp (with --utt-cmvn and --deltas), or with --model <checkpoint>
--layer L the hidden states of layer L of a pretrained or CTC fine-tuned model on the data dir's
inputs (HuBERT iteration 2; VietASR), with --layer posteriors a CTC model's token probabilities per
frame (GigaAM's HuBERT-CTC), or with --music-features logmel_chroma log-mel and chroma of its 24 kHz audio on
MERT's 75 frames/s grid (MERT-v0's targets; with --utt-cmvn).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from audiossl.bin.arguments import non_negative_int, positive_int
from audiossl.data.kaldi_dir import DataDir
from audiossl.errors import reports_user_errors
from audiossl.features.music import FEATURE_KINDS, MusicFeatureSource
from audiossl.targets.kmeans import (FeatureSource, KMeansModel, ModelLayerSource, ScpFeatureSource, apply_kmeans,
                                     fit_kmeans, parse_layer, write_frame_shards)
from audiossl.targets.labels import (check_coverage, check_label_lengths, describe_counts, label_counts,
                                     merge_label_files, read_frame_counts, write_labels)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def feature_source(args) -> FeatureSource:
    """feats.scp features, or a layer of a pretrained model when --model is given."""
    if args.model:
        import torch

        from audiossl.checkpoint import load_model

        # fit runs alone and may use every core; apply runs as one of several parallel jobs
        torch.set_num_threads((os.cpu_count() or 1) if args.command == "fit" else 1)
        return ModelLayerSource(load_model(args.model), args.data_dir, args.layer)
    if args.music_features:
        return MusicFeatureSource(args.data_dir, args.music_features, utt_cmvn=args.utt_cmvn)
    return ScpFeatureSource(args.data_dir, deltas=args.deltas, utt_cmvn=args.utt_cmvn)


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.kmeans", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="fit k-means on the frames of a data dir's utterances")
    p.add_argument("--num-clusters", type=positive_int, required=True, help="k (fairseq n_clusters)")
    p.add_argument("--max-frames", type=positive_int, default=1_000_000,
                   help="frames clustered at most, from utterances in a seeded random order")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--deltas", type=non_negative_int, default=0,
                   help="Kaldi delta order appended to feats.scp (2 for MFCC)")
    p.add_argument("--utt-cmvn", action="store_true",
                   help="normalise each utterance's feats.scp to zero mean, unit variance before the deltas")
    p.add_argument("--model", help="cluster hidden states of this checkpoint instead of feats.scp")
    p.add_argument("--layer", type=parse_layer, default=-1,
                   help="hidden state index with --model, or 'posteriors': a CTC model's token probabilities")
    p.add_argument("--music-features", choices=FEATURE_KINDS,
                   help="cluster music features of wav.scp at 24 kHz (75 frames/s) instead of feats.scp")
    p.add_argument("--n-init", type=positive_int, default=1, help="k-means++ seedings tried on the sample, the best kept")
    p.add_argument("--init-frames", type=positive_int, default=None,
                   help="frames sampled for the seedings (default max(20000, 50 k))")
    p.add_argument("--max-passes", type=positive_int, default=10, help="Lloyd passes over every frame at most")
    p.add_argument("--tol", type=float, default=1e-3, help="stop when a pass improves the inertia less (relative)")
    p.add_argument("--shard-frames", type=positive_int, default=100_000, help="frames per shard file")
    p.add_argument("data_dir")
    p.add_argument("kmeans_model")
    p = sub.add_parser("apply", help="label every frame of a data dir")
    p.add_argument("--deltas", type=non_negative_int, default=0, help="as given to fit")
    p.add_argument("--utt-cmvn", action="store_true", help="as given to fit")
    p.add_argument("--model", help="as given to fit")
    p.add_argument("--layer", type=parse_layer, default=-1, help="as given to fit")
    p.add_argument("--music-features", choices=FEATURE_KINDS, help="as given to fit")
    p.add_argument("kmeans_model")
    p.add_argument("data_dir")
    p.add_argument("labels")
    p = sub.add_parser("merge", help="merge per-job label tables")
    p.add_argument("--data-dir", help="require labels for every utterance of this data dir")
    p.add_argument("--utt2num-frames", help="require exactly this many labels per utterance")
    p.add_argument("labels")
    p.add_argument("job_labels", nargs="+")
    args = parser.parse_args(argv)
    progress = sys.stderr.isatty()

    if args.command == "fit":
        source = feature_source(args)
        work = Path(f"{args.kmeans_model}.work")
        shards = write_frame_shards(source, work, args.max_frames, args.seed, args.shard_frames, progress=progress,
                                    log=log)
        log(f"{args.data_dir}: {shards.num_frames} frames of dimension {shards.dim} in {len(shards.parts)} "
            f"shard(s) under {work}")
        start = time.perf_counter()
        model = fit_kmeans(shards, args.num_clusters, args.seed, n_init=args.n_init, init_frames=args.init_frames,
                           max_passes=args.max_passes, tol=args.tol, state_path=work / "fit_state.pt", log=log,
                           features=source.settings)
        seconds = time.perf_counter() - start
        labels, dists = zip(*(model.assign(block) for block in shards.blocks()))
        log(f"fit {model.num_clusters} clusters in {seconds:.1f} s; "
            f"inertia (mean squared distance) {np.concatenate(dists).mean():.4g}")
        log(f"cluster usage: {describe_counts(label_counts({'fit': np.concatenate(labels)}, model.num_clusters))}")
        model.save(args.kmeans_model)
        shutil.rmtree(work)
    elif args.command == "apply":
        model = KMeansModel.load(args.kmeans_model)
        source = feature_source(args)
        labels, inertia = apply_kmeans(model, source, progress=progress, name=args.kmeans_model)
        write_labels(args.labels, labels)
        log(f"{args.data_dir}: {len(labels)} utterances, {sum(map(len, labels.values()))} frames, "
            f"inertia {inertia:.4g}; {describe_counts(label_counts(labels, model.num_clusters))}")
    elif args.command == "merge":
        labels = merge_label_files(args.job_labels)
        merged = f"{args.labels} (merged from {len(args.job_labels)} job files)"
        if args.data_dir:
            check_coverage(labels, DataDir.read(args.data_dir).utterances, merged)
        if args.utt2num_frames:
            check_label_lengths(labels, read_frame_counts(args.utt2num_frames), merged)
        write_labels(args.labels, labels)
        log(f"{args.labels}: {len(labels)} utterances, {sum(map(len, labels.values()))} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
