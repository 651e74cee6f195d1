"""Self-training: pseudo-labels of unlabelled audio from a fine-tuned CTC model and a word LM, kept by
confidence, added to the labelled set for another round of fine-tuning.

The confidence of a pseudo-label is the log-probability per frame that the CTC model gives its text
(all alignments summed): about 0 for a text the network is sure of, lower where the LM overrode it
or the audio is unclear, minus infinity for a text no alignment fits.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from audiossl.atomic import atomic_dir
from audiossl.checkpoint import CheckpointError, load_model
from audiossl.data.kaldi_dir import DataDir, DataDirError, check_not_a_source
from audiossl.errors import ConfigError
from audiossl.models.ctc.model import CtcModel
from audiossl.tasks.asr import ctc_dataset, ctc_outputs
from audiossl.text.lexicon_decode import LexiconDecoder, check_char_tokens
from audiossl.text.lm_search import read_lm_params
from audiossl.text.scoring import error_rates


@dataclass(frozen=True)
class PseudoLabel:
    """A transcript a model gave an utterance, and its confidence (log-probability per frame, <= 0)."""
    text: str
    confidence: float


def pseudo_labels(model: CtcModel, outputs: list[tuple[list[str], Tensor, Tensor]], decode) -> dict[str, PseudoLabel]:
    """``{utt: PseudoLabel}`` of every utterance of ``outputs``.

    Args:
        model: the CTC model whose network ``outputs`` are (its tokenizer encodes the texts).
        outputs: batches of ``(utterances, (B, T, V) log-probabilities, (B,) frames)``
            (:func:`~audiossl.tasks.asr.ctc_outputs`).
        decode: ``decode(log_probs, frames) -> [text]``, e.g. a
            :class:`~audiossl.text.lexicon_decode.LexiconDecoder` with its LM weights set.
    """
    labels = {}
    for utts, log_probs, frames in outputs:
        texts = decode(log_probs, frames)
        for i, (utt, text) in enumerate(zip(utts, texts)):
            ids = torch.tensor(model.tokenizer.encode(text), dtype=torch.long)
            confidence = -math.inf   # nothing recognised: never kept
            if len(ids):
                nll = torch.nn.functional.ctc_loss(log_probs[i, :frames[i], None], ids[None], frames[i:i + 1],
                                                   torch.tensor([len(ids)]), blank=0, reduction="sum")
                confidence = -float(nll) / int(frames[i])
            labels[utt] = PseudoLabel(text, confidence)
    return labels


def check_keep_options(min_confidence: float | None, keep_fraction: float | None) -> None:
    """ConfigError unless exactly one of the two is given, a fraction in (0, 1] or a confidence (a mean
    log-probability per frame) of at most 0."""
    if (min_confidence is None) == (keep_fraction is None):
        raise ConfigError("keep pseudo-labels by a minimum confidence or by a fraction (one of the two)")
    if min_confidence is not None and not min_confidence <= 0.0:
        raise ConfigError(f"the minimum confidence is a log-probability per frame, at most 0 (e.g. -0.2); "
                          f"{min_confidence} would keep no pseudo-label")
    if keep_fraction is not None and not 0.0 < keep_fraction <= 1.0:
        raise ConfigError(f"the kept fraction of pseudo-labels must be in (0, 1], got {keep_fraction}")


def keep_confident(labels: dict[str, PseudoLabel], min_confidence: float | None = None,
                   keep_fraction: float | None = None) -> dict[str, PseudoLabel]:
    """The pseudo-labels at or above ``min_confidence``, or the most confident ``keep_fraction`` of them
    (exactly one of the two); never an empty text."""
    check_keep_options(min_confidence, keep_fraction)
    usable = {utt: label for utt, label in labels.items() if label.text.strip() and math.isfinite(label.confidence)}
    if min_confidence is not None:
        return {utt: label for utt, label in usable.items() if label.confidence >= min_confidence}
    ranked = sorted(usable, key=lambda utt: (-usable[utt].confidence, utt))
    return {utt: usable[utt] for utt in sorted(ranked[:round(keep_fraction * len(labels))])}


def with_pseudo_labels(labelled: DataDir, unlabelled: DataDir, labels: dict[str, PseudoLabel], name: str) -> DataDir:
    """The labelled data dir plus the utterances of ``unlabelled`` that ``labels`` covers, with those texts
    (and ``utt2confidence``: 0 for the labelled ones, the pseudo-labels' confidence otherwise).

    Keeps the tables both dirs have (``cmvn.scp``, per speaker and per set, is dropped: two sets may
    disagree on a speaker's), and ``segments`` where one has it (:meth:`DataDir.with_segments`); an
    utterance of the labelled set is never pseudo-labelled.
    """
    overlap = sorted(set(labels) & set(labelled.utterances))
    if overlap:
        raise DataDirError(f"{name}: utterance '{overlap[0]}' is labelled already ({len(overlap)} in all)")
    missing = sorted(set(labels) - set(unlabelled.utterances))
    if missing:
        raise DataDirError(f"{name}: pseudo-label for '{missing[0]}', which the unlabelled set does not have")
    pseudo = unlabelled.subset(labels)
    pseudo.tables["text"] = {utt: label.text for utt, label in labels.items()}
    if "segments" in labelled or "segments" in pseudo:   # kept, with a region per recording of the other set
        labelled, pseudo = labelled.with_segments(), pseudo.with_segments()
    tables = (set(labelled.tables) & set(pseudo.tables)) - {"cmvn.scp"}
    combined = DataDir({table: {**labelled[table], **pseudo[table]} for table in tables})
    combined.tables["utt2confidence"] = {**{utt: "0" for utt in labelled.utterances},
                                         **{utt: f"{label.confidence:.4f}" for utt, label in labels.items()}}
    return combined


def write_self_training_set(model_path: str, unlabelled_dir: str, labelled_dir: str, out_dir: str, lm_dir: str,
                            lm_params_from: str, keep_fraction: float | None = None, min_confidence: float | None = None,
                            beam_size: int = 100, batch_seconds: float = 200.0, progress: bool = False) -> dict:
    """Pseudo-label ``unlabelled_dir`` (its utterances of ``labelled_dir`` left out) with the CTC model at
    ``model_path`` and the LM of ``lm_dir`` at the weights of the decode ``lm_params_from`` (a scores.json),
    keep the confident ones (:func:`keep_confident`) and write them with the labelled set to ``out_dir``
    (:func:`with_pseudo_labels`; replacing an earlier ``out_dir`` whole), with ``pseudo_labels.json``: counts, every pseudo-label and, where the
    unlabelled dir has a text (a synthetic corpus), the error rates of the kept and the dropped ones.
    Returns that report."""
    check_keep_options(min_confidence, keep_fraction)
    check_not_a_source(out_dir, [labelled_dir, unlabelled_dir])
    labelled, unlabelled = DataDir.read(labelled_dir), DataDir.read(unlabelled_dir)
    if not set(unlabelled.utterances) - set(labelled.utterances):
        raise DataDirError(f"{unlabelled_dir}: every utterance is one of {labelled_dir}: nothing to pseudo-label")
    model = load_model(model_path)
    if not isinstance(model, CtcModel):
        raise CheckpointError(f"{model_path}: not a CTC model ({type(model).__name__})")
    check_char_tokens(model.tokenizer.tokens)
    decoder = LexiconDecoder(model.tokenizer.tokens, lm_dir, beam_size)
    decoder.set_weights(*read_lm_params(lm_params_from))
    data = ctc_dataset(unlabelled_dir, model)
    with torch.no_grad():
        outputs = ctc_outputs(model.eval(), data, batch_seconds, progress=progress)
    labelled_utts = set(labelled.utterances)
    found = {utt: label for utt, label in pseudo_labels(model, outputs, decoder).items() if utt not in labelled_utts}
    kept = keep_confident(found, min_confidence, keep_fraction)
    combined = with_pseudo_labels(labelled, unlabelled, kept, out_dir)
    report = {"model": model_path, "unlabelled": unlabelled_dir, "labelled": len(labelled_utts),
              "pseudo_labelled": len(found), "kept": len(kept), "keep_fraction": keep_fraction,
              "min_confidence": min_confidence}
    truth = unlabelled.tables.get("text", {})
    for name, utts in (("kept", sorted(kept)), ("dropped", sorted(set(found) - set(kept)))):
        if utts and all(utt in truth for utt in utts):
            rates = error_rates({u: truth[u] for u in utts}, {u: found[u].text for u in utts})
            report[f"{name}_wer"], report[f"{name}_cer"] = rates.wer, rates.cer
    report["labels"] = {utt: {"text": label.text, "confidence": label.confidence, "kept": utt in kept}
                        for utt, label in sorted(found.items())}
    with atomic_dir(out_dir) as tmp:  # no table of an earlier set (of other inputs) stays beside these
        combined.write(tmp)
        (tmp / "pseudo_labels.json").write_text(json.dumps(report, indent=1))
    return report
