"""Self-supervised pretraining by masked prediction of frame targets (HuBERT).

    python -m audiossl.bin.pretrain --config conf/pretrain.yaml [--set trainer.max_updates=400 ...] \\
        --train-data data/train_unlab_fbank --train-labels exp/kmeans1/train_unlab.labels \\
        [--valid-data data/dev_fbank --valid-labels exp/kmeans1/dev.labels] [--init <checkpoint>] <exp-dir>

The config has a ``model`` section (family, size, args, set; see audiossl.models.named) and
a ``trainer`` section (audiossl.train.trainer.TrainerConfig). Data dirs must hold the model's
inputs: feats.scp with 80-dim Kaldi fbank for the fbank front end, wav.scp for the waveform one.
Label files have one line per utterance, ``utt label label ...``, one label per model frame.
With --init, the model starts from that checkpoint's config and weights (a new
label-embedding table for this run's targets; other model settings of the run config that
differ are logged as not used): the next HuBERT iteration continuing from the
previous one, or continued pretraining. Re-running continues from <exp-dir>/checkpoints/last.pt. Works under torchrun (one process per rank).
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from audiossl.checkpoint import CheckpointError, build_model, load_checkpoint
from audiossl.data.dataset import UtteranceDataset
from audiossl.data.kaldi_dir import DataDirError
from audiossl.models.named import model_config_from_section
from audiossl.targets.labels import read_labels
from audiossl.tasks.ssl import MaskedPredictionTask
from audiossl.train.config import ConfigError, load_run_config, save_run_config, trainer_config
from audiossl.train.trainer import Trainer, TrainingError


def initialized_from(path: str, num_classes: int) -> torch.nn.Module:
    """The model of checkpoint ``path`` with its weights, predicting ``num_classes`` new targets."""
    payload = load_checkpoint(path)
    model = build_model(payload["family"], payload["config"])
    model.load_state_dict(payload["model"])
    model.replace_head(num_classes)
    return model


def ignored_model_settings(model: torch.nn.Module, run_config) -> list[str]:
    """Top-level config fields where the run config's model section differs from ``model.config``.

    With --init these settings come from the checkpoint, and the run config's are not used.
    """
    kept, asked = model.config.to_dict(), run_config.to_dict()
    return sorted(key for key in asked if asked[key] != kept.get(key))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML run config (model and trainer sections)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. trainer.max_updates=100 (repeatable)")
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--train-labels", required=True)
    parser.add_argument("--valid-data")
    parser.add_argument("--valid-labels")
    parser.add_argument("--init", help="start from this checkpoint (new label embeddings for these targets)")
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        run = load_run_config(args.config, args.set)
        family, model_config = model_config_from_section(run.get("model", {}))
        config = trainer_config(run.get("trainer"))
        torch.manual_seed(config.seed)  # reproducible initialisation
        if args.init:
            model = initialized_from(args.init, model_config.num_classes)
            family = load_checkpoint(args.init)["family"]
            ignored = ignored_model_settings(model, model_config)
            if ignored:
                logging.warning("--init %s: the model keeps the checkpoint's settings; the run config's "
                                "differing %s are not used", args.init, ", ".join(ignored))
        else:
            model = build_model(family, model_config.to_dict())
        kind = model.frontend.input_kind

        def target_length(length: int) -> int:
            return int(model.num_frames(torch.tensor([length]))[0])

        train = UtteranceDataset(args.train_data, kind, read_labels(args.train_labels), target_length,
                                 targets_name=args.train_labels)
        valid = None
        if args.valid_data:
            valid = UtteranceDataset(args.valid_data, kind, read_labels(args.valid_labels), target_length,
                                     targets_name=args.valid_labels)
        save_run_config(run, args, args.exp_dir)
        logging.info("%s %s: %.1fM parameters, %d training utterances", family, run["model"].get("size"),
                     sum(p.numel() for p in model.parameters()) / 1e6, len(train))
        Trainer(MaskedPredictionTask(family), model, train, valid, config, args.exp_dir).fit()
    except (CheckpointError, ConfigError, DataDirError, KeyError, ValueError, TrainingError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
