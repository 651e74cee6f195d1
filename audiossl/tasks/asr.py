"""CTC fine-tuning: batches of (inputs, token ids) → CTC loss; validation adds CER and WER."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from audiossl.checkpoint import load_checkpoint, load_model
from audiossl.data.dataset import Batch, UtteranceDataset, sorted_batches
from audiossl.data.kaldi_dir import DataDir, DataDirError
from audiossl.config_fields import dataclass_from_dict
from audiossl.errors import ConfigError, UserError
from audiossl.models.ctc.model import CtcModel, ctc_loss
from audiossl.models.encoder import SpeechEncoder
from audiossl.tasks.base import StepOutput, Task
from audiossl.text.tokenizer import (TOKENIZER_KINDS, UNK_ID, Tokenizer, build_tokenizer, normalize_transcript,
                                    tokenizer_from_dict)
from audiossl.text.scoring import error_rates

logger = logging.getLogger(__name__)


class CtcTask(Task):
    """Loss per target token; the encoder is frozen for ``freeze_encoder_updates`` first updates.

    Args:
        references: ``{utt: transcript}`` of the dev set, which its WER and CER score; an utterance not
            there is scored against its tokens decoded back, where a character the tokenizer lacks is ``<unk>``.
    """

    find_unused_parameters = True  # a frozen encoder gets no gradient

    def __init__(self, references: dict[str, str] | None = None) -> None:
        self.references = dict(references or {})

    def before_update(self, model: CtcModel, update: int) -> None:
        model.encoder_frozen = update < model.config.freeze_encoder_updates

    def train_step(self, model: nn.Module, batch: Batch, generator) -> StepOutput:
        log_probs, frames = model(batch.inputs, batch.lengths, generator)
        loss_sum = ctc_loss(log_probs, frames, batch.targets, batch.target_lengths)
        tokens = float(batch.target_lengths.sum())
        return StepOutput(loss_sum / max(tokens, 1.0), {"loss": float(loss_sum.detach()), "tokens": tokens,
                                                         "utterances": float(batch.size)})

    def valid_step(self, model: CtcModel, batch: Batch, generator) -> dict[str, float]:
        log_probs, frames = model(batch.inputs, batch.lengths)
        loss_sum = ctc_loss(log_probs, frames, batch.targets, batch.target_lengths)
        hyps = dict(zip(batch.utterances, model.decode(log_probs, frames)))
        refs = {utt: self.references[utt] if utt in self.references else model.tokenizer.decode(t[:n].tolist())
                for utt, t, n in zip(batch.utterances, batch.targets, batch.target_lengths)}
        rates = error_rates(refs, hyps)
        return {"loss": float(loss_sum), "tokens": float(batch.target_lengths.sum()),
                "utterances": float(batch.size), "word_errors": float(rates.word_errors),
                "words": float(rates.num_words), "char_errors": float(rates.char_errors),
                "chars": float(rates.num_chars)}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        out = {"loss": sums["loss"] / max(sums["tokens"], 1.0)}
        if "words" in sums:
            out["cer"] = 100 * sums["char_errors"] / max(sums["chars"], 1.0)
            out["wer"] = 100 * sums["word_errors"] / max(sums["words"], 1.0)
        return out

    def valid_score(self, summary: dict[str, float]) -> float:
        return summary["cer"]


def token_targets(data_dir, tokenizer) -> dict[str, list[int]]:
    """Token ids of each utterance's transcript (the data dir's ``text``, one line per utterance).

    An empty transcript is legal (Kaldi allows it: the utterance is trained towards blanks) and is
    logged once, with the utterances that have one; so are transcripts with characters the tokenizer
    lacks (a dev set's, unseen in training), which encode as ``<unk>``."""
    texts = DataDir.read(data_dir).transcripts(data_dir)
    empty = [utt for utt, text in texts.items() if not text.strip()]
    if empty:
        logger.warning("%s/text: %d empty transcript(s), trained on as all blank: %s%s", data_dir, len(empty),
                       ", ".join(empty[:10]), ", ..." if len(empty) > 10 else "")
    targets = {utt: tokenizer.encode(text) for utt, text in texts.items()}
    unknown = [utt for utt, ids in targets.items() if UNK_ID in ids]
    if unknown:
        chars = sorted({c for utt in unknown for c in normalize_transcript(texts[utt]).replace(" ", "")
                        if UNK_ID in tokenizer.encode(c)})
        logger.warning("%s/text: %d transcript(s) with characters the tokenizer lacks (%s), encoded as <unk>: %s%s",
                       data_dir, len(unknown), " ".join(chars), ", ".join(unknown[:10]),
                       ", ..." if len(unknown) > 10 else "")
    return targets


def ctc_dataset(data_dir, model: CtcModel, targets: dict[str, list[int]] | None = None) -> UtteranceDataset:
    """The utterances of ``data_dir`` as ``model`` takes them: its input kind, fbank bins and sample rate
    (audio at another rate is resampled as it is read), with ``targets`` (:func:`token_targets`) to train on.

    Utterances too short for one model frame are a DataDirError naming them, before any is read: the
    batch holding one failed, naming none (at a validation or in the middle of a decode)."""
    data = UtteranceDataset(data_dir, model.input_kind, targets, targets_name=f"{data_dir}/text",
                            num_mel_bins=model.num_mel_bins, sample_rate=model.sample_rate)
    frames = model.num_frames(torch.tensor(data.lengths)).tolist()
    short = [f"'{utt}' ({length} {'samples' if data.input_kind == 'waveform' else 'fbank frames'})"
             for utt, length, count in zip(data.utterances, data.lengths, frames) if count < 1]
    if short:
        raise DataDirError(f"{data_dir}: {len(short)} utterance(s) too short for one frame of the model: "
                           f"{', '.join(short[:5])}{', ...' if len(short) > 5 else ''}; leave them out "
                           "(python -m audiossl.bin.data_dir subset --utt-list)")
    return data


@torch.no_grad()
def ctc_outputs(model: CtcModel, data: UtteranceDataset, batch_seconds: float,
                progress: bool = False) -> list[tuple[list[str], Tensor, Tensor]]:
    """The network's output on every utterance of ``data``, in length-sorted batches of at most
    ``batch_seconds`` of padded input: ``(utterances, log-probs (B, T, V), frames (B,))`` per batch."""
    outputs = []
    for batch in tqdm(sorted_batches(data, batch_seconds), desc=f"decode {data.data_dir}", disable=not progress):
        log_probs, frames = model(batch.inputs, batch.lengths)
        outputs.append((batch.utterances, log_probs, frames))
    return outputs


def check_ctc_lengths(dataset: UtteranceDataset, model: CtcModel, name: str) -> None:
    """CTC needs a frame per token and one more for the blank between two same tokens in a row ("LL");
    name the first utterance that has fewer (its loss would be infinite, counted as zero: never learnt)."""
    frames = model.num_frames(torch.tensor(dataset.lengths)).tolist()
    for utt, count in zip(dataset.utterances, frames):
        ids = dataset.targets[utt]
        needed = len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
        if needed > count:
            raise DataDirError(f"{name}: utterance '{utt}' has {len(ids)} tokens, which CTC aligns to at least "
                               f"{needed} frames (a blank between repeated ones), but only {count} frames")


@dataclass
class FineTuningOptions:
    """How a run config's ``ctc`` section prepares the encoder and the tokenizer.

    tokenizer: ``char``, ``bpe`` or ``unigram`` (trained on the training transcripts).
    vocab_size: pieces of a ``bpe``/``unigram`` tokenizer.
    encoder_layers: keep only the first N layers of the pretrained encoder (None: all).
    encoder_layer_drop: layer drop while fine-tuning (fairseq's fine-tuning ``layerdrop``); the
        pretraining run's value is not carried over.
    """

    tokenizer: str = "char"
    vocab_size: int | None = None
    encoder_layers: int | None = None
    encoder_layer_drop: float = 0.0


# the ctc section's keys that are CtcConfig fields (the rest are FineTuningOptions)
CTC_SETTINGS = ("final_dropout", "mask_prob", "mask_length", "freeze_encoder_updates")


def read_ctc_section(section: dict[str, Any] | None) -> tuple[FineTuningOptions, dict[str, Any]]:
    """A run config's ``ctc`` section → the fine-tuning options and the :class:`CtcConfig` settings.

    An unknown key is a :class:`~audiossl.errors.ConfigError` that lists the known ones.
    """
    if not isinstance(section or {}, dict):
        raise ConfigError(f"ctc: expected a mapping of keys, got {section!r}")
    section = dict(section or {})
    settings = {key: section.pop(key) for key in CTC_SETTINGS if key in section}
    known = [f.name for f in dataclasses.fields(FineTuningOptions)]
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(f"ctc: unknown keys {unknown}; known: {sorted(known + list(CTC_SETTINGS))}")
    options = dataclass_from_dict(FineTuningOptions, section, "ctc")
    if options.tokenizer not in TOKENIZER_KINDS:
        raise ConfigError(f"ctc.tokenizer is one of {list(TOKENIZER_KINDS)}, not {options.tokenizer!r}")
    if (options.tokenizer == "char") != (options.vocab_size is None):
        raise ConfigError(f"ctc.vocab_size: a {options.tokenizer} tokenizer "
                          + ("takes its vocabulary from the data: leave vocab_size out" if options.tokenizer == "char"
                             else "needs vocab_size, its number of pieces (blank and <unk> included)"))
    if options.vocab_size is not None and options.vocab_size < 3:
        raise ConfigError(f"ctc.vocab_size is {options.vocab_size}: at least 3 (blank, <unk> and a piece)")
    return options, settings


def run_tokenizer(options: FineTuningOptions, train_data: str, exp_dir: Path) -> Tokenizer:
    """The tokenizer of a fine-tuning run in ``exp_dir``: made as ``options`` say from the transcripts of
    ``train_data``; resuming, the one the run started with (in ``checkpoints/last.pt``), which ``options``
    must still describe (a :class:`~audiossl.errors.ConfigError` names the keys that changed)."""
    last = exp_dir / "checkpoints" / "last.pt"
    if not last.exists():
        texts = list(DataDir.read(train_data).transcripts(train_data).values())
        try:
            return build_tokenizer(options.tokenizer, texts, options.vocab_size)
        except ConfigError:  # a vocab_size the transcripts cannot give: the config names it
            raise
        except UserError as err:  # the transcripts' fault: name their file
            raise DataDirError(f"{train_data}/text: {err}") from None
    tokenizer = tokenizer_from_dict(load_checkpoint(last)["config"]["tokenizer"])
    then = {"tokenizer": getattr(tokenizer, "model_type", tokenizer.kind),
            "vocab_size": None if tokenizer.kind == "char" else tokenizer.vocab_size}
    changed = [f"ctc.{key}: {then[key]!r} then, {getattr(options, key)!r} now"
               for key in then if then[key] != getattr(options, key)]
    if changed:
        raise ConfigError(f"{last}: this run differs from the one that wrote the checkpoint: {'; '.join(changed)}. "
                          "To resume it, put the old values back; to train with the new ones, give another exp dir "
                          f"than {exp_dir}")
    return tokenizer


def fine_tuning_encoder(checkpoint: str, options: FineTuningOptions) -> SpeechEncoder:
    """The encoder of any checkpoint (pretrained, or fine-tuned before; audiossl's, or a Hugging Face
    directory, fairseq file or fairseq2 dir that :func:`audiossl.load_model` reads) as fine-tuning uses
    it: in train mode, without its pretraining or task parts, cut to ``options.encoder_layers``, with
    the fine-tuning layer drop."""
    encoder = load_model(checkpoint).train().encoder_only()
    if options.encoder_layers is not None:
        encoder.truncated(options.encoder_layers)
    return encoder.with_layer_drop(options.encoder_layer_drop)
