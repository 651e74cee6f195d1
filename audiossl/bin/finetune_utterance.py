"""Fine-tune a pretrained encoder for an utterance-level task (speakers, instruments, tags), or train
the same model from scratch.

    python -m audiossl.bin.finetune_utterance --config conf/finetune.yaml \\
        (--pretrained exp/pretrain/checkpoints/best.pt | --scratch-like exp/pretrain/checkpoints/best.pt) \\
        --label-table utt2spk [--set trainer.max_updates=500 ...] \\
        --train-data data/sid_train [--valid-data data/sid_dev] [--test-data data/sid_test] <exp-dir>

--pretrained: the upstream is that checkpoint's encoder (any family, or a fine-tuned model's
encoder; or a Hugging Face directory or fairseq file, as ``audiossl.load_model`` reads) with its
weights; --scratch-like: the same architecture, randomly initialised (the
control). The utterance model (:mod:`audiossl.models.utterance`) puts a learned weighted sum of
the upstream's layers and a head on it.

Labels: each utterance's value in the data dir's <label-table> (utt2spk, utt2family; utt2tags for
a ``multilabel`` head: space-separated tags), mapped through a class list: --classes, else the
training dir's labels.<name> for utt2<name>, else its labels, else the table's sorted values. An
unknown label, or a class no training utterance has, stops the run before it trains. So does a
--test-data set (one the model will classify later) with an unknown label, an utterance too short
for the model or (multilabel) tags that do not vary.

The run config's ``utterance`` section holds the model's ``layers``, ``normalize_layers``,
``freeze_upstream`` and ``head`` (``head.num_classes`` follows the labels) and the fine-tuning
options ``upstream_lr_scale`` (the upstream's learning rate is ``trainer.lr`` times this; the
layer weights and the head take ``trainer.lr``), ``encoder_layers``, ``encoder_layer_drop``
and ``valid_metric`` (the dev figure that chooses best.pt: err for single-label heads and lrap
for multilabel ones by default; acc, lrap and exact_match count higher as better). The
``trainer`` section holds the optimisation.

Writes <exp-dir>/checkpoints/{best,last,update_N}.pt (``audiossl.load_model`` rebuilds the
model from any of them), <exp-dir>/checkpoints/classes.txt (``<class> <index>`` lines) and
<exp-dir>/config.yaml. Re-running continues from last.pt, with the same checkpoint and settings (a
change is refused by name). Inputs are read as waveforms; a model with a fbank front end computes
its features on the fly.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from audiossl.errors import UserError, reports_user_errors
from audiossl.models.utterance import utterance_over_encoder
from audiossl.tasks.asr import FineTuningOptions, fine_tuning_encoder
from audiossl.tasks.utterance import (CLASSES_FILE, UtteranceTask, check_every_class_seen, check_tags_vary,
                                      labelled_dataset, multilabel_head, read_utterance_section, training_classes,
                                      write_classes)
from audiossl.train.config import check_sections, load_run_config, trainer_config
from audiossl.train.trainer import Trainer, run_origin, run_record

logger = logging.getLogger("audiossl.train")


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.finetune_utterance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML run config (utterance and trainer sections)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. trainer.max_updates=100 (repeatable)")
    init = parser.add_mutually_exclusive_group(required=True)
    init.add_argument("--pretrained", metavar="CKPT", help="fine-tune this checkpoint's encoder")
    init.add_argument("--scratch-like", metavar="CKPT", help="this checkpoint's encoder architecture, random weights")
    parser.add_argument("--label-table", required=True, help="the data dirs' table of labels, e.g. utt2spk")
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--valid-data")
    parser.add_argument("--test-data", action="append", default=[], metavar="DIR",
                        help="a set this model will classify later: its labels and audio are checked before "
                        "training (repeatable)")
    parser.add_argument("--classes", metavar="FILE", help="class list of the labels (default: the training dir's "
                        "labels.<name> for utt2<name>, else labels, else the table's sorted values)")
    parser.add_argument("--allow-empty-classes", action="store_true",
                        help="train although some classes have no training utterance (toy sets)")
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    run = load_run_config(args.config, args.set)
    check_sections(run, ("utterance", "trainer"), args.config)
    multilabel = multilabel_head(run.get("utterance"))
    classes = training_classes(args.train_data, args.label_table, multilabel, args.classes)
    options, settings = read_utterance_section(run.get("utterance"), len(classes))
    train_config = trainer_config(run.get("trainer"))
    checkpoint = args.pretrained or args.scratch_like
    encoder = fine_tuning_encoder(checkpoint, FineTuningOptions(encoder_layers=options.encoder_layers,
                                                                encoder_layer_drop=options.encoder_layer_drop))
    train = labelled_dataset(args.train_data, args.label_table, classes, multilabel, encoder)
    try:
        check_every_class_seen(train.targets, classes, f"{args.train_data}/{args.label_table}")
    except UserError as err:
        if not args.allow_empty_classes:
            raise
        logger.warning("%s (--allow-empty-classes)", err)
    torch.manual_seed(train_config.seed)  # reproducible initialisation
    model = utterance_over_encoder(encoder, settings, copy_weights=args.pretrained is not None)
    task = UtteranceTask(model, options.valid_metric)
    valid = None
    if args.valid_data:
        valid = labelled_dataset(args.valid_data, args.label_table, classes, multilabel, encoder)
    for test in args.test_data:  # checked only, as eval_utterance will: here, not after training
        tested = labelled_dataset(test, args.label_table, classes, multilabel, encoder)
        if multilabel:
            check_tags_vary(tested.targets, len(classes), f"{test}/{args.label_table}")
    exp = Path(args.exp_dir)
    write_classes(exp / "checkpoints" / CLASSES_FILE, classes)
    groups = model.parameter_groups(train_config.lr, train_config.lr * options.upstream_lr_scale)
    logger.info("%s: %s upstream (%s), %s head over %d classes of %s, %d training utterances; "
                "best.pt by dev %s (%s is better)", "fine-tuning" if args.pretrained else "from scratch",
                model.config.upstream_family, checkpoint, model.config.head.kind, len(classes), args.label_table,
                len(train), task.valid_metric, "higher" if task.higher_is_better else "lower")
    Trainer(task, model, train, valid, train_config, exp, batch_transform=model.waveform_transform(),
            parameter_groups=groups, origin=run_origin(checkpoint, bool(args.pretrained)),
            run_config=run_record(run, args)).fit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
