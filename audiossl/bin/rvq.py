"""MERT's acoustic targets: a residual-VQ autoencoder trained on music, and its K codes per frame.

    python -m audiossl.bin.rvq fit [--codebooks 8] [--codebook-size 256] [--updates 2000] [--max-frames N] \\
        [--features logmel] [--seed S] <data-dir> <teacher-out.safetensors>
        trains the teacher on the log-mel frames of a data dir's 24 kHz audio (75 frames/s), logging
        its reconstruction error and each codebook's perplexity
    python -m audiossl.bin.rvq apply <teacher> <data-dir> <labels-out>
        writes every utterance's codes, one line per utterance, K comma-joined ids per frame
        (``utt 12,7,3 12,9,0 ...``): the label table MERT pretrains on, merged as k-means labels are
        (``python -m audiossl.bin.kmeans merge``)
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import numpy as np
import torch

from audiossl.bin.arguments import positive_int
from audiossl.errors import reports_user_errors
from audiossl.features.music import FEATURE_KINDS, MusicFeatureSource
from audiossl.targets.labels import write_labels
from audiossl.targets.rvq import RvqAutoencoder, RvqConfig, apply_rvq, code_perplexities, fit_rvq, load_frames


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.rvq", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="train the residual-VQ teacher on a data dir's music")
    p.add_argument("--codebooks", type=positive_int, default=8, help="K, codes per frame (EnCodec's 8 in MERT)")
    p.add_argument("--codebook-size", type=positive_int, default=256, help="V, entries per codebook")
    p.add_argument("--latent-dim", type=positive_int, default=64, help="size of the quantized vectors")
    p.add_argument("--hidden", type=positive_int, default=256, help="conv channels of the autoencoder")
    p.add_argument("--updates", type=positive_int, default=2000, help="Adam updates of 32 windows of 64 frames")
    p.add_argument("--max-frames", type=positive_int, default=500_000,
                   help="frames read for training (75 a second), from utterances in a seeded random order")
    p.add_argument("--features", choices=FEATURE_KINDS, default="logmel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("data_dir")
    p.add_argument("teacher")
    p = sub.add_parser("apply", help="write the codes of every utterance of a data dir")
    p.add_argument("teacher")
    p.add_argument("data_dir")
    p.add_argument("labels")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    progress = sys.stderr.isatty()
    if args.command == "fit":
        torch.set_num_threads(os.cpu_count() or 1)
        frames = load_frames(MusicFeatureSource(args.data_dir, args.features), args.max_frames, args.seed, progress)
        logging.info("%s: %d frames of dimension %d", args.data_dir, len(frames), frames.shape[1])
        config = RvqConfig(args.features, frames.shape[1], args.hidden, args.latent_dim, args.codebooks,
                           args.codebook_size)
        fit_rvq(frames, config, args.updates, args.seed, progress=progress).save(args.teacher)
    else:
        torch.set_num_threads(1)  # one of several parallel jobs
        teacher = RvqAutoencoder.load(args.teacher)
        labels = apply_rvq(teacher, MusicFeatureSource(args.data_dir, teacher.config.features), progress)
        write_labels(args.labels, labels)
        codes = np.concatenate(list(labels.values()))
        logging.info("%s: %d utterances, %d frames; code perplexity per codebook %s", args.data_dir, len(labels),
                     len(codes), " ".join(f"{p:.0f}" for p in code_perplexities(codes, teacher.config.codebook_size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
