"""Convert HuBERT checkpoints between audiossl and Hugging Face model directories.

    python -m audiossl.bin.convert from-hf [--num-classes K] <hf-dir> <checkpoint.pt>
    python -m audiossl.bin.convert to-hf <checkpoint.pt> <hf-dir>

from-hf reads a local ``save_pretrained`` directory of ``HubertModel`` or ``HubertForCTC``
(nothing is downloaded) and writes an audiossl checkpoint that ``audiossl.load_model`` and
``audiossl.bin.pretrain --init`` take (continued pretraining); its masked-prediction head is
new, with K targets. to-hf writes a directory that ``transformers.HubertModel.from_pretrained``
loads; only waveform-front-end HuBERT checkpoints have a Hugging Face equivalent.
"""
from __future__ import annotations

import argparse
import sys

from audiossl.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from audiossl.errors import InteropError, UserError
from audiossl.interop.huggingface import load_hubert, save_hubert


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    from_hf = commands.add_parser("from-hf", help="Hugging Face HuBERT directory -> audiossl checkpoint")
    from_hf.add_argument("--num-classes", type=int, default=100, help="targets of the new prediction head")
    from_hf.add_argument("source")
    from_hf.add_argument("target")
    to_hf = commands.add_parser("to-hf", help="audiossl HuBERT checkpoint -> Hugging Face directory")
    to_hf.add_argument("source")
    to_hf.add_argument("target")
    args = parser.parse_args(argv)
    try:
        if args.command == "from-hf":
            model = load_hubert(args.source, args.num_classes)
            save_checkpoint(args.target, model.config.family, model.config.to_dict(), model.state_dict())
        else:
            payload = load_checkpoint(args.source)
            if payload["family"] != "hubert":
                raise InteropError(f"{args.source}: a {payload['family']!r} checkpoint; only 'hubert' converts")
            save_hubert(model_from_checkpoint(payload), args.target)
    except (UserError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{args.source} -> {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
