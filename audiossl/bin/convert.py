"""Convert HuBERT, wav2vec 2.0 and WavLM checkpoints between audiossl, Hugging Face model directories
and fairseq checkpoints.

    python -m audiossl.bin.convert from-hf [--num-classes K] <hf-dir> <checkpoint.pt>
    python -m audiossl.bin.convert to-hf <checkpoint.pt> <hf-dir>
    python -m audiossl.bin.convert from-fairseq [--num-classes K] <fairseq.pt> <checkpoint.pt>
    python -m audiossl.bin.convert to-fairseq <checkpoint.pt> <fairseq.pt>

from-hf reads a local ``save_pretrained`` directory (nothing is downloaded) of ``HubertModel``,
``HubertForCTC``, ``Wav2Vec2Model``, ``Wav2Vec2ForPreTraining``, ``Wav2Vec2ForCTC``, ``WavLMModel``
or ``WavLMForCTC`` and writes an audiossl checkpoint that ``audiossl.load_model`` and
``audiossl.bin.pretrain --init`` take (continued pretraining). A CTC head is dropped; what the
class does not store is new: HuBERT's and WavLM's prediction head (K targets), the wav2vec 2.0
quantizer unless the class is ``Wav2Vec2ForPreTraining``. to-hf writes ``HubertModel``,
``Wav2Vec2ForPreTraining`` or ``WavLMModel``, which those classes load with the same hidden
states; only 16 kHz waveform-front-end checkpoints have a Hugging Face equivalent.

from-fairseq reads a fairseq wav2vec 2.0 or HuBERT pretraining checkpoint, or a unilm WavLM one,
with an unpickler that admits only the types such files hold (anything else is refused by name
and nothing in the file runs); WavLM's head, which unilm does not store, is new (K targets).
to-fairseq writes fairseq's layout (unilm's for WavLM, without the head).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiossl.bin.arguments import positive_int
from audiossl.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from audiossl.errors import UserError, reports_user_errors
from audiossl.interop.fairseq import load_fairseq, save_fairseq
from audiossl.interop.huggingface import load_hf, save_hf


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    from_hf = commands.add_parser("from-hf", help="Hugging Face directory -> audiossl checkpoint")
    from_hf.add_argument("--num-classes", type=positive_int, default=100,
                         help="targets of the new HuBERT/WavLM prediction head (default 100)")
    from_hf.add_argument("source")
    from_hf.add_argument("target")
    to_hf = commands.add_parser("to-hf", help="audiossl checkpoint -> Hugging Face directory")
    to_hf.add_argument("source")
    to_hf.add_argument("target")
    from_fairseq = commands.add_parser("from-fairseq", help="fairseq checkpoint -> audiossl checkpoint")
    from_fairseq.add_argument("--num-classes", type=positive_int, default=100,
                              help="targets of a new WavLM prediction head (default 100)")
    from_fairseq.add_argument("source")
    from_fairseq.add_argument("target")
    to_fairseq = commands.add_parser("to-fairseq", help="audiossl checkpoint -> fairseq checkpoint")
    to_fairseq.add_argument("source")
    to_fairseq.add_argument("target")
    args = parser.parse_args(argv)
    if Path(args.target).resolve() == Path(args.source).resolve():
        raise UserError(f"{args.target} is the source: converting onto it would replace it; name another target")
    if args.command in ("from-hf", "from-fairseq"):
        load = load_hf if args.command == "from-hf" else load_fairseq
        model = load(args.source, args.num_classes)
        save_checkpoint(args.target, model.config.family, model.config.to_dict(), model.state_dict())
    else:
        save = save_hf if args.command == "to-hf" else save_fairseq
        save(model_from_checkpoint(load_checkpoint(args.source), args.source), args.target)
    print(f"{args.source} -> {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
