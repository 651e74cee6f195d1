"""CTC fine-tuning of a pretrained encoder, or training the same architecture from scratch.

    python -m audiossl.bin.finetune_ctc --config conf/finetune.yaml --init exp/pretrain/checkpoints/best.pt \\
        [--scratch] [--set trainer.max_updates=2000 ...] \\
        --train-data data/train_1h_fbank --valid-data data/dev_fbank <exp-dir>

--init names the pretrained checkpoint, of any family (or a CTC model, whose encoder is fine-tuned
again; or a Hugging Face directory or fairseq file, as ``audiossl.load_model`` reads): its encoder
config (and, without --scratch, its weights) make the encoder; with
--scratch it is never frozen. The config's ``ctc`` section sets the tokenizer (``char``,
``bpe`` or ``unigram`` with ``vocab_size``), ``encoder_layers`` (keep only the first N
layers; the top layers of a briefly pretrained HuBERT are specialised to its targets),
``encoder_layer_drop`` (fairseq's fine-tuning ``layerdrop``; default 0, none: the pretraining
run's value is not carried over), ``final_dropout``, ``mask_prob``, ``mask_length`` and
``freeze_encoder_updates``; its ``trainer`` section the optimisation. The tokenizer is trained
on the training transcripts and stored in the model's checkpoints. The checkpoint with the
lowest dev CER is ``<exp-dir>/checkpoints/best.pt``. Re-running continues from last.pt, with the same
--init, --scratch and settings (a change is refused by name).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from audiossl.data.kaldi_dir import DataDir
from audiossl.errors import reports_user_errors
from audiossl.models.ctc.factory import ctc_over_encoder
from audiossl.tasks.asr import (CtcTask, check_ctc_lengths, ctc_dataset, fine_tuning_encoder, read_ctc_section,
                                run_tokenizer, token_targets)
from audiossl.train.config import check_sections, load_run_config, trainer_config
from audiossl.train.trainer import Trainer, run_origin, run_record


@reports_user_errors
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
    run = load_run_config(args.config, args.set)
    check_sections(run, ("ctc", "trainer"), args.config)
    options, settings = read_ctc_section(run.get("ctc"))
    train_config = trainer_config(run.get("trainer"))
    encoder = fine_tuning_encoder(args.init, options)
    exp = Path(args.exp_dir)
    tokenizer = run_tokenizer(options, args.train_data, exp)
    if args.scratch:
        settings["freeze_encoder_updates"] = 0  # freezing a random encoder would only handicap the control
    torch.manual_seed(train_config.seed)  # reproducible initialisation
    model = ctc_over_encoder(encoder, tokenizer, settings, copy_weights=not args.scratch)
    train = ctc_dataset(args.train_data, model, token_targets(args.train_data, tokenizer))
    check_ctc_lengths(train, model, f"{args.train_data}/text")
    valid = None
    if args.valid_data:
        valid = ctc_dataset(args.valid_data, model, token_targets(args.valid_data, tokenizer))
    logging.info("CTC %s: %s encoder (%s), %d %s tokens, %d training utterances",
                 "from scratch" if args.scratch else "fine-tuning", model.config.encoder_family, args.init,
                 tokenizer.vocab_size, options.tokenizer, len(train))
    references = DataDir.read(args.valid_data).transcripts(args.valid_data) if args.valid_data else {}
    Trainer(CtcTask(references), model, train, valid, train_config, exp,
            origin=run_origin(args.init, not args.scratch),
            run_config=run_record(run, args)).fit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
