"""Decode a data dir with a CTC model and score it (Kaldi-style decode dir).

    python -m audiossl.bin.decode_ctc [--beam-size 8] <model.pt> <data-dir> <decode-dir>

Reads the model's inputs from the data dir (feats.scp for fbank models, wav.scp otherwise)
and the references from its text; writes <decode-dir>/hyp.txt, ref.txt, wer, cer, per_utt
and prints the WER and CER.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from audiossl.checkpoint import CheckpointError, load_model
from audiossl.data.dataset import BucketBatchSampler, UtteranceDataset, collate, input_rate
from audiossl.data.kaldi_dir import DataDirError
from audiossl.text.scoring import write_decode_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.decode_ctc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--beam-size", type=int, default=1, help="1: greedy; more: CTC prefix beam search")
    parser.add_argument("--batch-seconds", type=float, default=200.0)
    parser.add_argument("model")
    parser.add_argument("data_dir")
    parser.add_argument("decode_dir")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
        data = UtteranceDataset(args.data_dir, model.input_kind)
        sampler = BucketBatchSampler(data.lengths, int(args.batch_seconds * input_rate(data.input_kind)), shuffle=False)
        loader = torch.utils.data.DataLoader(data, batch_sampler=sampler.epoch_batches(0), collate_fn=collate)
        hyps: dict[str, str] = {}
        with torch.no_grad():
            for batch in tqdm(loader, desc=f"decode {args.data_dir}", disable=not sys.stderr.isatty()):
                log_probs, frames = model(batch.inputs, batch.lengths)
                hyps.update(zip(batch.utterances, model.decode(log_probs, frames, args.beam_size)))
        refs = data.data["text"]
        rates = write_decode_dir(args.decode_dir, refs, hyps, f"{args.model} beam {args.beam_size}")
        with open(Path(args.decode_dir) / "scores.json", "w") as f:
            json.dump({"model": args.model, "data": args.data_dir, "beam_size": args.beam_size,
                       **dataclasses.asdict(rates)}, f, indent=1)
        print(f"{args.data_dir}: WER {rates.wer * 100:.2f} % CER {rates.cer * 100:.2f} % "
              f"({rates.num_utts} utterances) -> {args.decode_dir}")
    except (CheckpointError, DataDirError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
