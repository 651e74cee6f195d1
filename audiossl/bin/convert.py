"""Convert HuBERT, wav2vec 2.0, WavLM and UniSpeech-SAT checkpoints between audiossl, Hugging Face model
directories, fairseq and s3prl checkpoints and fairseq2 checkpoint dirs (wav2vec 2.0).

    python -m audiossl.bin.convert from-hf [--num-classes K] <hf-dir> <checkpoint.pt>
    python -m audiossl.bin.convert to-hf <checkpoint.pt> <hf-dir>
    python -m audiossl.bin.convert from-fairseq [--num-classes K] <fairseq.pt> <checkpoint.pt>
    python -m audiossl.bin.convert to-fairseq <checkpoint.pt> <fairseq.pt>
    python -m audiossl.bin.convert from-fairseq2 <fairseq2-dir> <checkpoint.pt>
    python -m audiossl.bin.convert to-fairseq2 <checkpoint.pt> <fairseq2-dir>
    python -m audiossl.bin.convert to-s3prl <checkpoint.pt> <s3prl.pt>

from-hf reads a local ``save_pretrained`` directory (sharded or not; nothing is downloaded) of
``HubertModel``, ``HubertForCTC``, ``Wav2Vec2Model``, ``Wav2Vec2ForPreTraining``, ``Wav2Vec2ForCTC``,
``WavLMModel``, ``WavLMForCTC``, ``UniSpeechSatModel`` or ``UniSpeechSatForCTC`` and writes an
audiossl checkpoint that ``audiossl.load_model`` and ``audiossl.bin.pretrain --init`` take
(continued pretraining). A CTC head is dropped; what the class does not store is new: the
masked-prediction head (K targets) of HuBERT, WavLM and UniSpeech-SAT, UniSpeech-SAT's utterance
quantizer, the wav2vec 2.0 quantizer unless the class is ``Wav2Vec2ForPreTraining``. to-hf writes
``HubertModel``, ``Wav2Vec2ForPreTraining``, ``WavLMModel`` or ``UniSpeechSatModel``, which those
classes load with the same hidden states, and a CTC checkpoint of a char tokenizer as the family's
``*ForCTC`` with its ``Wav2Vec2Processor`` files (the same log-probabilities and greedy transcripts);
only 16 kHz waveform-front-end checkpoints have a Hugging Face equivalent.

from-fairseq reads a fairseq wav2vec 2.0 or HuBERT pretraining checkpoint, or a unilm WavLM one,
with an unpickler that admits only the types such files hold (anything else is refused by name
and nothing in the file runs); WavLM's head, which unilm does not store, is new (K targets).
to-fairseq writes fairseq's layout (unilm's for WavLM, without the head). from-fairseq also reads
the fairseq-free files s3prl converts fairseq checkpoints into; to-s3prl writes them, the files s3prl's
hubert_local and wav2vec2_local upstreams load (WavLM: unilm's file, which wavlm_local loads).

from-fairseq2 reads the checkpoint dir fairseq2's trainer writes (model.yaml with model_family
wav2vec2 or wav2vec2_asr; step_<N>/model/pp_00/tp_00/sdp_00.pt): the dir (its last step), a step dir,
its model dir or the .pt below the model.yaml. A wav2vec2_asr model loads as its encoder (the CTC head
is dropped, the quantizer new). to-fairseq2 writes a wav2vec 2.0 checkpoint with its quantizer as such
a dir at step 0, replacing the target dir whole.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from audiossl.bin.arguments import positive_int
from audiossl.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from audiossl.errors import UserError, reports_user_errors
from audiossl.interop.fairseq import load_fairseq, save_fairseq
from audiossl.interop.fairseq2 import load_fairseq2, save_fairseq2
from audiossl.interop.huggingface import load_hf, save_hf
from audiossl.interop.s3prl import save_s3prl


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    new_head = {"from-hf": "targets of the new HuBERT/WavLM prediction head (default 100)",
                "from-fairseq": "targets of a new WavLM prediction head (default 100)"}
    for command, text in (("from-hf", "Hugging Face directory -> audiossl checkpoint"),
                          ("to-hf", "audiossl checkpoint -> Hugging Face directory"),
                          ("from-fairseq", "fairseq checkpoint -> audiossl checkpoint"),
                          ("to-fairseq", "audiossl checkpoint -> fairseq checkpoint"),
                          ("from-fairseq2", "fairseq2 wav2vec 2.0 checkpoint dir -> audiossl checkpoint"),
                          ("to-fairseq2", "audiossl wav2vec 2.0 checkpoint -> fairseq2 checkpoint dir"),
                          ("to-s3prl", "audiossl checkpoint -> file of s3prl's *_local upstreams")):
        subparser = commands.add_parser(command, help=text)
        if command in new_head:
            subparser.add_argument("--num-classes", type=positive_int, default=100, help=new_head[command])
        subparser.add_argument("source")
        subparser.add_argument("target")
    args = parser.parse_args(argv)
    if Path(args.target).resolve() == Path(args.source).resolve():
        raise UserError(f"{args.target} is the source: converting onto it would replace it; name another target")
    if args.command.startswith("from-"):
        if args.command == "from-fairseq2":  # wav2vec 2.0 has no target classes
            model = load_fairseq2(args.source)
        else:
            model = {"from-hf": load_hf, "from-fairseq": load_fairseq}[args.command](args.source, args.num_classes)
        save_checkpoint(args.target, model.config.family, model.config.to_dict(), model.state_dict())
    else:
        save = {"to-hf": save_hf, "to-fairseq": save_fairseq, "to-fairseq2": save_fairseq2,
                "to-s3prl": save_s3prl}[args.command]
        save(model_from_checkpoint(load_checkpoint(args.source), args.source), args.target)
    print(f"{args.source} -> {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
