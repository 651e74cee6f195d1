"""Self-supervised pretraining by masked prediction of frame targets (HuBERT).

    python -m audiossl.bin.pretrain --config conf/pretrain.yaml [--set trainer.max_updates=400 ...] \\
        --train-data data/train_unlab_fbank --train-labels exp/kmeans1/train_unlab.labels \\
        [--valid-data data/dev_fbank --valid-labels exp/kmeans1/dev.labels] <exp-dir>

The config has a ``model`` section (family, size, args, set; see audiossl.models.named) and
a ``trainer`` section (audiossl.train.trainer.TrainerConfig). Data dirs must hold the model's
inputs: feats.scp with 80-dim Kaldi fbank for the fbank front end, wav.scp for the waveform one.
Label files have one line per utterance, ``utt label label ...``, one label per model frame.
Re-running continues from <exp-dir>/checkpoints/last.pt. Works under torchrun (one process per rank).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from audiossl.checkpoint import build_model
from audiossl.data.dataset import UtteranceDataset
from audiossl.data.kaldi_dir import DataDirError
from audiossl.models.named import model_config_from_section
from audiossl.targets.labels import read_labels
from audiossl.tasks.ssl import MaskedPredictionTask
from audiossl.train.config import ConfigError, dump_yaml, load_run_config, trainer_config
from audiossl.train.trainer import Trainer, TrainingError


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
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        run = load_run_config(args.config, args.set)
        family, model_config = model_config_from_section(run.get("model", {}))
        config = trainer_config(run.get("trainer"))
        torch.manual_seed(config.seed)  # reproducible initialisation
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
        Path(args.exp_dir).mkdir(parents=True, exist_ok=True)
        dump_yaml({**run, "data": {k: v for k, v in vars(args).items() if k not in ("config", "set")}},
                  Path(args.exp_dir) / "config.yaml")
        logging.info("%s %s: %.1fM parameters, %d training utterances", family, run["model"].get("size"),
                     sum(p.numel() for p in model.parameters()) / 1e6, len(train))
        summary = Trainer(MaskedPredictionTask(family), model, train, valid, config, args.exp_dir).fit()
        if summary:
            logging.info("final validation: %s", " ".join(f"{k}={v:.4g}" for k, v in summary.items()))
    except (ConfigError, DataDirError, KeyError, ValueError, TrainingError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
