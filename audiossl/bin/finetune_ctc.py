"""CTC fine-tuning of a pretrained encoder, or training the same architecture from scratch.

    python -m audiossl.bin.finetune_ctc --config conf/finetune.yaml --init exp/pretrain/checkpoints/best.pt \\
        [--scratch] [--set trainer.max_updates=2000 ...] \\
        --train-data data/train_1h_fbank --valid-data data/dev_fbank <exp-dir>

--init names the pretrained checkpoint: its encoder config (and, without --scratch, its
weights) make the encoder; with --scratch it is never frozen. The config's ``ctc``
section sets the tokenizer (``char``, ``bpe`` or ``unigram`` with ``vocab_size``),
``encoder_layers`` (keep only the first N transformer layers; the top layers of a briefly
pretrained HuBERT are specialised to its targets), ``encoder_layer_drop`` (fairseq's
fine-tuning ``layerdrop``; default 0, none: the pretraining run's value is not carried over),
``final_dropout``, ``mask_prob``, ``mask_length`` and ``freeze_encoder_updates``; its
``trainer`` section the optimisation. The tokenizer is trained
on the training transcripts and stored in the model's checkpoints. The checkpoint with the
lowest dev CER is ``<exp-dir>/checkpoints/best.pt``. Re-running continues from last.pt.
"""
from __future__ import annotations

import argparse
import copy
import logging
import sys
from pathlib import Path

import torch

from audiossl.checkpoint import CheckpointError, build_model, load_checkpoint
from audiossl.data.dataset import UtteranceDataset
from audiossl.data.kaldi_dir import DataDir, DataDirError
from audiossl.models.ctc.config import CtcConfig
from audiossl.tasks.asr import CtcTask
from audiossl.text.tokenizer import build_tokenizer, tokenizer_from_dict
from audiossl.train.config import ConfigError, load_run_config, save_run_config, trainer_config
from audiossl.train.trainer import Trainer, TrainingError


def token_targets(data_dir, tokenizer) -> dict:
    """Token ids of each utterance's transcript."""
    data = DataDir.read(data_dir)
    if "text" not in data:
        raise DataDirError(f"{data_dir}: no text file")
    return {utt: tokenizer.encode(data["text"][utt]) for utt in data.utterances}


def fine_tuning_encoder(payload: dict, num_layers: int | None = None, layer_drop: float = 0.0) -> dict:
    """The checkpoint with its encoder as fine-tuning uses it: its first ``num_layers`` transformer
    layers (None: all) and layer drop ``layer_drop`` in place of the pretraining run's."""
    config = copy.deepcopy(payload["config"])
    config["encoder"]["layer_drop"] = layer_drop
    if num_layers is None:
        return {**payload, "config": config}
    if not 1 <= num_layers <= config["encoder"]["num_layers"]:
        raise ValueError(f"encoder_layers {num_layers} not in 1..{config['encoder']['num_layers']}")
    config["encoder"]["num_layers"] = num_layers
    dropped = tuple(f"encoder.layers.{i}." for i in range(num_layers, payload["config"]["encoder"]["num_layers"]))
    weights = {k: v for k, v in payload["model"].items() if not k.startswith(dropped)}
    return {**payload, "config": config, "model": weights}


def check_ctc_lengths(dataset: UtteranceDataset, model, name: str) -> None:
    """CTC needs at least one frame per token; name the first utterance that has fewer."""
    frames = model.num_frames(torch.tensor(dataset.lengths)).tolist()
    for utt, count in zip(dataset.utterances, frames):
        tokens = len(dataset.targets[utt])
        if tokens > count:
            raise DataDirError(f"{name}: utterance '{utt}' has {tokens} tokens but only {count} frames")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.finetune_ctc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML run config (ctc and trainer sections)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. trainer.max_updates=100 (repeatable)")
    parser.add_argument("--init", required=True, help="pretrained checkpoint (its encoder)")
    parser.add_argument("--scratch", action="store_true", help="same encoder architecture, random weights")
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--valid-data")
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        run = load_run_config(args.config, args.set)
        ctc = dict(run.get("ctc", {}))
        kind, vocab_size = ctc.pop("tokenizer", "char"), ctc.pop("vocab_size", None)
        pretrained = fine_tuning_encoder(load_checkpoint(args.init), ctc.pop("encoder_layers", None),
                                         ctc.pop("encoder_layer_drop", 0.0))
        exp = Path(args.exp_dir)
        last = exp / "checkpoints" / "last.pt"
        if last.exists():  # resuming: keep the tokenizer the run started with
            tokenizer = tokenizer_from_dict(load_checkpoint(last)["config"]["tokenizer"])
        else:
            texts = list(DataDir.read(args.train_data)["text"].values())
            tokenizer = build_tokenizer(kind, texts, vocab_size)
        if args.scratch:
            ctc["freeze_encoder_updates"] = 0  # freezing a random encoder would only handicap the control
        config = CtcConfig(encoder_family=pretrained["family"], encoder=pretrained["config"],
                           tokenizer=tokenizer.to_dict(), vocab_size=tokenizer.vocab_size, **ctc)
        train_config = trainer_config(run.get("trainer"))
        torch.manual_seed(train_config.seed)  # reproducible initialisation
        model = build_model("ctc", config.to_dict())
        if not args.scratch:
            encoder_weights = {k: v for k, v in pretrained["model"].items() if not k.startswith("head.")}
            model.encoder.load_state_dict(encoder_weights, strict=False)
            missing = set(model.encoder.state_dict()) - set(encoder_weights)
            if missing:
                raise CheckpointError(f"{args.init}: no weights for encoder parameters {sorted(missing)[:5]}")
        input_kind = model.input_kind
        train = UtteranceDataset(args.train_data, input_kind, token_targets(args.train_data, tokenizer),
                                 targets_name=f"{args.train_data}/text")
        check_ctc_lengths(train, model, f"{args.train_data}/text")
        valid = None
        if args.valid_data:
            valid = UtteranceDataset(args.valid_data, input_kind,
                                     token_targets(args.valid_data, tokenizer),
                                     targets_name=f"{args.valid_data}/text")
        save_run_config(run, args, exp)
        logging.info("CTC %s: %s encoder (%s), %d %s tokens, %d training utterances",
                     "from scratch" if args.scratch else "fine-tuning", pretrained["family"], args.init,
                     tokenizer.vocab_size, kind, len(train))
        Trainer(CtcTask(), model, train, valid, train_config, exp).fit()
    except (ConfigError, DataDirError, CheckpointError, KeyError, ValueError, TrainingError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
