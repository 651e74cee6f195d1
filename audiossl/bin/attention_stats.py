"""How far each attention head of one or more checkpoints looks, on utterances of a data dir.

    python -m audiossl.bin.attention_stats [--num-utts 32] [--plot attention.png] <data-dir> <model.pt>...

For every layer: the attention entropy divided by log(frames) (1 is uniform attention) and
the expected distance in frames between a query and the keys it attends to, averaged over
heads and for the most local head. ``--plot`` draws each head's distance per layer, one panel
per checkpoint. The data dir needs the models' inputs (feats.scp for fbank models).
"""
from __future__ import annotations

import argparse
import sys

import torch

from audiossl.bin.arguments import positive_int
from audiossl.checkpoint import load_model
from audiossl.data.dataset import UtteranceDataset
from audiossl.errors import reports_user_errors
from audiossl.eval.attention import attention_statistics, format_statistics, plot_distances


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.attention_stats", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-utts", type=positive_int, default=32, help="first N utterances of the data dir")
    parser.add_argument("--plot", help="write a PNG of each head's attention distance per layer")
    parser.add_argument("data_dir")
    parser.add_argument("models", nargs="+")
    args = parser.parse_args(argv)
    named = {}
    for path in args.models:
        model = load_model(path)
        data = UtteranceDataset(args.data_dir, model.input_kind, num_mel_bins=model.num_mel_bins)
        items = (data[i] for i in range(min(args.num_utts, len(data))))
        batches = ((inputs[None], torch.tensor([inputs.shape[0]])) for _, inputs, _ in items)
        named[path] = attention_statistics(model, batches)
        print(format_statistics(path, named[path]))
    if args.plot:
        plot_distances(named, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
