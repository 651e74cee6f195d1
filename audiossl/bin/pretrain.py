"""Self-supervised pretraining of any registered family (``python -m audiossl.bin.models`` lists them).

    python -m audiossl.bin.pretrain --config conf/pretrain.yaml [--family hubert] [--set trainer.max_updates=400 ...] \\
        --train-data data/train_unlab_fbank [--train-labels exp/kmeans1/train_unlab.labels] \\
        [--valid-data data/dev_fbank [--valid-labels exp/kmeans1/dev.labels]] [--init <checkpoint>] <exp-dir>

The config has a ``model`` section (family, size, args, set; see audiossl.models.named), a
``trainer`` section (audiossl.train.trainer.TrainerConfig) and optionally ``mixing`` (below);
any other section is an error.
--family, when given, must be the config's family. Data dirs must hold the model's inputs:
feats.scp with 80-dim Kaldi fbank for the fbank front end, wav.scp for the waveform one.
Families that predict k-means labels (HuBERT) need label files, one line per utterance,
``utt label label ...``, one label per model frame; MERT takes K codes per frame (``utt 3,1 3,4 ...``,
from python -m audiossl.bin.rvq) and 24 kHz audio (other rates are resampled, with a note in the log);
families that make their own targets take none.
A ``mixing`` section turns on WavLM's denoising (some utterances overlapped with another of the
batch or with a clip of --noise-data; targets stay those of the clean one) or, with
``speaker_aware: true``, UniSpeech-SAT's speaker-aware mixing; the data dirs then need wav.scp
(features are computed after mixing), e.g. ``mixing: {prob: 0.2, noise_prob: 0.5}``.
With --init (anything audiossl.load_model reads: an audiossl checkpoint, a Hugging Face directory,
a fairseq checkpoint, a fairseq2 checkpoint dir), the model starts from that checkpoint's config and weights, with new label
tables for this run's targets: the next HuBERT iteration continuing from the previous one, or
continued pretraining on new data. The run config's model section then either describes the same
model (any other setting than the class count is refused by name) or holds only `set` (e.g. the
class count), or is left out. A new optimizer and schedule start from update 0 unless
--keep-optimizer (an audiossl training checkpoint's AdamW moments and schedule position).
With trainer.language_alpha (multilingual pretraining, as XLS-R and WavLabLM), each batch holds one
language (utt2lang), drawn with probability proportional to its amount of audio to the power alpha,
and every logged figure is also given per language (<figure>@<language>). trainer.language_stages
changes alpha and the mix (a weight per language) at set updates, as WavLabLM's stages:
  language_stages: [{alpha: 1.0, updates: 600}, {alpha: 0.3, weights: {es: 2.0}}]
Re-running continues from <exp-dir>/checkpoints/last.pt, with the same model, --init and training settings (a
change is refused by name; trainer.max_updates may grow where the learning rates so far stay: a constant
schedule, or within the warmup). Works under torchrun (one process per rank).
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from audiossl.errors import ConfigError, reports_user_errors
from audiossl.registry import pretraining_families
from audiossl.tasks.pretrain import (PretrainingTask, check_targets, init_train_state, pretraining_dataset,
                                     pretraining_inputs, pretraining_model)
from audiossl.train.config import check_sections, load_run_config, trainer_config
from audiossl.train.trainer import Trainer, run_origin, run_record


@reports_user_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML run config (model and trainer sections)")
    parser.add_argument("--family", choices=pretraining_families(),
                        help="the model family the config must describe (e.g. hubert)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. trainer.max_updates=100 (repeatable)")
    parser.add_argument("--train-data", required=True)
    parser.add_argument("--train-labels", help="k-means labels of the training data (families that predict them)")
    parser.add_argument("--valid-data")
    parser.add_argument("--valid-labels", help="k-means labels of the validation data")
    parser.add_argument("--noise-data", help="noise data dir (wav.scp) for the mixing section's noise")
    parser.add_argument("--init", help="start from this model (checkpoint, Hugging Face dir, fairseq .pt; new label "
                                       "tables for these targets)")
    parser.add_argument("--keep-optimizer", action="store_true",
                        help="with --init: keep its optimizer moments and schedule position (default: fresh ones)")
    parser.add_argument("exp_dir")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    run = load_run_config(args.config, args.set)
    check_sections(run, ("model", "trainer", "mixing"), args.config)
    if args.keep_optimizer and not args.init:
        raise ConfigError("--keep-optimizer keeps the optimizer of the --init checkpoint: give --init")
    config = trainer_config(run.get("trainer"))
    torch.manual_seed(config.seed)  # reproducible initialisation
    model = pretraining_model(run.get("model") or {}, args.init)
    family = model.config.family
    if args.family and args.family != family:
        raise ConfigError(f"{args.init or args.config}: a {family!r} model, not {args.family!r}; "
                          f"give a {args.family} {'checkpoint' if args.init else 'run config'}")
    check_targets(family, args.train_labels, args.valid_labels, args.valid_data)
    kept_state = init_train_state(args.init) if args.keep_optimizer else None

    inputs = pretraining_inputs(model, run.get("mixing"), args.train_data, args.noise_data)

    train = pretraining_dataset(args.train_data, args.train_labels, model, inputs)
    valid = pretraining_dataset(args.valid_data, args.valid_labels, model, inputs) if args.valid_data else None
    logging.info("%s %s: %.1fM parameters, %d training utterances", family,
                 f"from {args.init}" if args.init else run["model"].get("size"),
                 sum(p.numel() for p in model.parameters()) / 1e6, len(train))
    languages = None  # with language sampling, figures per language too
    if config.language_alpha is not None or config.language_stages:
        languages = {utt: lang for data in (train, valid) if data for utt, lang in zip(data.utterances,
                                                                                  data.languages())}
    trainer = Trainer(PretrainingTask(model, languages), model, train, valid, config, args.exp_dir,
                      batch_transform=inputs.transform, origin=run_origin(args.init, True),
                      run_config=run_record(run, args), settings={"mixing": inputs.mixing})
    if kept_state is not None:
        trainer.start_from(kept_state, args.init)
    trainer.fit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
