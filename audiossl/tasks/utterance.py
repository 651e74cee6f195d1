"""Utterance-level fine-tuning: one label (or a set of tags) per utterance → an :class:`UtteranceModel`'s loss.

Labels come from a Kaldi table of the data dir (``utt2spk``, ``utt2label``, ``utt2family``,
``utt2tags`` with space-separated tags, ...; a single label with spaces, ``Eb minor``, is the class
``Eb_minor``) and are mapped to class ids through a class list:

* a class list file named by the caller, else
* ``labels.<name>`` for table ``utt2<name>`` (mini_music: one class a line), else
* ``labels`` (the speaker sets: ``<class> <index>`` lines, indices 0, 1, ... in order), else
* the sorted distinct values of the training table.

Lines of utterances not in the data dir are left out (logged). A label outside the class list, or
(in training) a class without any utterance, is a :class:`~audiossl.data.kaldi_dir.DataDirError`
naming the file and line or the classes.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from audiossl.atomic import write_text_atomic
from audiossl.config_fields import dataclass_from_dict
from audiossl.data.dataset import Batch, UtteranceDataset
from audiossl.data.kaldi_dir import DataDirError, read_utterance_labels, table_line
from audiossl.errors import ConfigError
from audiossl.models.encoder import SpeechEncoder
from audiossl.models.utterance import UtteranceConfig
from audiossl.nn.frontends import fbank_num_frames
from audiossl.tasks.base import StepOutput, Task

logger = logging.getLogger("audiossl.train")

HIGHER_IS_BETTER = {"acc": True, "err": False, "loss": False, "exact_match": True, "lrap": True}
CLASSES_FILE = "classes.txt"


class UtteranceTask(Task):
    """Batches of (inputs, class ids) → the model's loss and additive figures.

    Single-label heads log ``acc`` and ``err``, ``multilabel`` heads ``exact_match`` and ``lrap``
    (see :class:`~audiossl.models.utterance.UtteranceModel`); all log ``loss`` (mean over items).

    Args:
        model: the :class:`~audiossl.models.utterance.UtteranceModel` trained.
        valid_metric: the validation figure that chooses ``best.pt`` (None: ``err`` for
            single-label heads, ``lrap`` for multilabel ones); :attr:`higher_is_better` follows it.
    """

    find_unused_parameters = True  # layer drop leaves different layers unused on each rank

    def __init__(self, model: nn.Module, valid_metric: str | None = None):
        self.metrics = dict(model.metrics)
        self.valid_metric = valid_metric or ("lrap" if model.multilabel else "err")
        known = ["loss", *self.metrics]
        if self.valid_metric not in known:
            raise ConfigError(f"utterance.valid_metric {self.valid_metric!r}: a {model.config.head.kind} head "
                              f"logs {known}")
        self.higher_is_better = HIGHER_IS_BETTER[self.valid_metric]

    def train_step(self, model: nn.Module, batch: Batch, generator) -> StepOutput:
        out = model(batch.inputs, batch.lengths, batch.targets, generator)
        return StepOutput(out.loss, {**out.sums, "loss": float(out.loss.detach()) * batch.size})

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        items = max(sums.get("items", 0.0), 1.0)
        figures = {"loss": sums.get("loss", 0.0) / items}
        for name, (numerator, denominator) in self.metrics.items():
            figures[name] = sums.get(numerator, 0.0) / max(sums.get(denominator, 0.0), 1.0)
        return figures

    def valid_score(self, summary: dict[str, float]) -> float:
        """The figure that chooses ``best.pt``; the trainer keeps the highest when :attr:`higher_is_better`."""
        return summary[self.valid_metric]


# ---------------------------------------------------------------------------- labels

def label_name(table: str) -> str:
    """``utt2family`` → ``family``; a table not named ``utt2<name>`` is a ConfigError."""
    if not table.startswith("utt2") or len(table) == 4 or "/" in table:
        raise ConfigError(f"label table {table!r} is not a data dir table named utt2<label> (utt2spk, utt2family, ...)")
    return table[4:]


def class_list_path(data_dir: str | os.PathLike, table: str) -> Path | None:
    """The class list of ``table`` in ``data_dir``: ``labels.<name>``, else ``labels``, else None."""
    for name in (f"labels.{label_name(table)}", "labels"):
        path = Path(data_dir) / name
        if path.is_file():
            return path
    return None


def read_class_list(path: str | os.PathLike) -> list[str]:
    """The classes of a class list in index order: ``<class>`` or ``<class> <index>`` lines (indices 0, 1,
    ... in order; a class with spaces, such as mini_music's ``Eb minor``, is read as :func:`label_names`
    reads it, ``Eb_minor``); a misnumbered or repeated line is a DataDirError naming it."""
    classes: list[str] = []
    with open(path, encoding="utf-8-sig") as f:   # a byte order mark is no part of the first class
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                raise DataDirError(f"{path}:{number}: expected '<class>' or '<class> <index>', got an empty line")
            if len(fields) > 1 and fields[-1].isdigit():
                if fields[-1] != str(len(classes)):
                    raise DataDirError(f"{path}:{number}: class '{' '.join(fields[:-1])}' has index {fields[-1]}, "
                                       f"expected {len(classes)} (indices count from 0 in order)")
                fields = fields[:-1]
            name = label_names(" ".join(fields), multilabel=False)[0]
            if name in classes:
                raise DataDirError(f"{path}:{number}: class '{name}' repeated")
            classes.append(name)
    if not classes:
        raise DataDirError(f"{path}: no classes")
    return classes


def label_names(value: str, multilabel: bool) -> list[str]:
    """The classes of a label table's value: its space-separated tags (``multilabel``), else the whole
    value, one label whose spaces (``Eb minor``) become ``_``."""
    return value.split() if multilabel else ["_".join(value.split())]


def read_labels(data_dir: str | os.PathLike, table: str, multilabel: bool) -> dict[str, list[str]]:
    """``{utt: [label, ...]}`` of every utterance of ``data_dir`` from its ``table``
    (:func:`~audiossl.data.kaldi_dir.read_utterance_labels`), each value's :func:`label_names`."""
    label_name(table)
    return {utt: label_names(value, multilabel) for utt, value in read_utterance_labels(data_dir, table).items()}


def training_classes(data_dir: str | os.PathLike, table: str, multilabel: bool,
                     class_list: str | os.PathLike | None = None) -> list[str]:
    """The classes of a training set: ``class_list`` if given, else its class list file
    (:func:`class_list_path`), else its table's sorted distinct labels. Fewer than a head can tell apart
    (two, or one tag for ``multilabel``) are a DataDirError naming where they come from."""
    path = class_list or class_list_path(data_dir, table)
    if path is not None:
        classes = read_class_list(path)
    else:
        path = Path(data_dir) / table
        classes = sorted({label for labels in read_labels(data_dir, table, multilabel).values() for label in labels})
        logger.info("%s: no labels.%s or labels file; the classes are the %d distinct labels of %s", data_dir,
                    label_name(table), len(classes), table)
    if len(classes) < (1 if multilabel else 2):
        raise DataDirError(f"{path}: {len(classes)} class(es) {classes}: " + (
            "a multilabel head needs a tag" if multilabel else "a single-label head needs two or more to tell apart"))
    return classes


def class_targets(data_dir: str | os.PathLike, table: str, classes: list[str],
                  multilabel: bool) -> dict[str, list[int]]:
    """``{utt: [class id, ...]}`` of every utterance of ``data_dir``; a label not in ``classes`` is a
    DataDirError naming the table, line and utterance."""
    path = Path(data_dir) / table
    index = {name: i for i, name in enumerate(classes)}
    targets = {}
    for utt, labels in read_labels(data_dir, table, multilabel).items():
        unknown = [label for label in labels if label not in index]
        if unknown:
            shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
            raise DataDirError(f"{table_line(path, utt)}: utterance '{utt}' has label '{unknown[0]}', not one of the "
                               f"{len(classes)} classes ({shown})")
        targets[utt] = [index[label] for label in labels]
    return targets


def check_every_class_seen(targets: dict[str, list[int]], classes: list[str], where: str) -> None:
    """Raise a DataDirError naming the classes of ``classes`` that no utterance of ``targets`` has."""
    seen = {i for ids in targets.values() for i in ids}
    empty = [name for i, name in enumerate(classes) if i not in seen]
    if empty:
        raise DataDirError(f"{where}: no training utterance of {len(empty)} of the {len(classes)} classes: "
                           f"{', '.join(empty)}")


def check_tags_vary(targets: dict[str, list[int]], num_classes: int, where: str) -> None:
    """Raise a DataDirError naming ``where`` when no class of ``targets`` (multilabel class ids of each utterance)
    is on some utterances and off others: macro ROC-AUC and mAP over such classes are undefined."""
    counts = np.bincount([i for ids in targets.values() for i in set(ids)], minlength=num_classes)
    if not ((counts > 0) & (counts < len(targets))).any():
        raise DataDirError(f"{where}: no tag is on some utterances and off others ({len(targets)} utterances): "
                           "ROC-AUC and mAP are undefined")


def write_classes(path: str | os.PathLike, classes: list[str]) -> None:
    """Write the class list (``<class> <index>`` lines); an existing one must list the same classes."""
    path = Path(path)
    if path.exists():
        before = read_class_list(path)
        if before != classes:
            raise ConfigError(f"{path}: the run started with {len(before)} other classes; use a new exp dir")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(f"{name} {i}\n" for i, name in enumerate(classes)))


def utterance_audio(data_dir: str | os.PathLike, encoder: SpeechEncoder, targets: dict[str, list[int]] | None = None,
                    targets_name: str = "targets") -> UtteranceDataset:
    """The waveforms of ``data_dir`` at ``encoder``'s rate, with ``targets`` as UtteranceDataset takes them.
    Utterances too short for one of ``encoder``'s frames are a DataDirError naming them, before any is read."""
    data = UtteranceDataset(data_dir, "waveform", targets, targets_name=targets_name, sample_rate=encoder.sample_rate)
    samples = torch.tensor(data.lengths)
    frames = encoder.num_frames(fbank_num_frames(samples) if encoder.input_kind == "fbank" else samples)
    short = [f"'{utt}' ({length / encoder.sample_rate:.3f} s)"
             for utt, length, count in zip(data.utterances, data.lengths, frames.tolist()) if count < 1]
    if short:
        raise DataDirError(f"{data_dir}: {len(short)} utterance(s) too short for one frame of the model: "
                           f"{', '.join(short[:5])}{', ...' if len(short) > 5 else ''}; leave them out of the data dir")
    return data


def labelled_dataset(data_dir: str | os.PathLike, table: str, classes: list[str], multilabel: bool,
                     encoder: SpeechEncoder) -> UtteranceDataset:
    """:func:`utterance_audio` of ``data_dir`` for ``encoder``, with its class ids as targets."""
    return utterance_audio(data_dir, encoder, class_targets(data_dir, table, classes, multilabel),
                           str(Path(data_dir) / table))


# ---------------------------------------------------------------------------- run config

@dataclass
class UtteranceOptions:
    """The fine-tuning options of a run config's ``utterance`` section (its other keys are
    :class:`~audiossl.models.utterance.UtteranceConfig` fields: ``layers``, ``normalize_layers``,
    ``freeze_upstream``, ``head``).

    upstream_lr_scale: the upstream's learning rate is ``trainer.lr`` times this (the featurizer's
        layer weights and the head take ``trainer.lr``); both follow ``trainer.schedule``.
    encoder_layers: keep only the upstream's first N layers (None: all).
    encoder_layer_drop: the upstream's layer drop while fine-tuning (the pretraining value is not kept).
    valid_metric: the validation figure that chooses ``best.pt``: ``acc``, ``err``, ``lrap``,
        ``exact_match`` (higher or lower is better as the name says) or ``loss``; None: ``err``
        for single-label heads, ``lrap`` for multilabel.
    """

    upstream_lr_scale: float = 0.1
    encoder_layers: int | None = None
    encoder_layer_drop: float = 0.0
    valid_metric: str | None = None


def multilabel_head(section: dict[str, Any] | None) -> bool:
    """Whether a run config's ``utterance`` section asks for a ``multilabel`` head."""
    head = (section or {}).get("head") or {}
    return isinstance(head, dict) and head.get("kind") == "multilabel"


def read_utterance_section(section: dict[str, Any] | None, num_classes: int) -> tuple[UtteranceOptions, dict[str, Any]]:
    """A run config's ``utterance`` section → the fine-tuning options and the UtteranceConfig settings,
    whose ``head.num_classes`` is set to ``num_classes`` (a different value given is a ConfigError)."""
    if not isinstance(section or {}, dict):
        raise ConfigError(f"utterance: expected a mapping of keys, got {section!r}")
    section = dict(section or {})
    option_names = [f.name for f in dataclasses.fields(UtteranceOptions)]
    model_names = [f.name for f in dataclasses.fields(UtteranceConfig) if f.name not in ("upstream_family", "upstream")]
    unknown = sorted(set(section) - set(option_names) - set(model_names))
    if unknown:
        raise ConfigError(f"utterance: unknown keys {unknown}; known: {sorted(option_names + model_names)}")
    options = dataclass_from_dict(UtteranceOptions, {key: section.pop(key) for key in option_names if key in section},
                                  "utterance")
    if not options.upstream_lr_scale >= 0.0:   # NaN too: the upstream's learning rate would climb the loss or be NaN
        raise ConfigError(f"utterance.upstream_lr_scale {options.upstream_lr_scale}: must be a number >= 0 "
                          "(0 keeps the upstream's weights as they are)")
    if options.valid_metric is not None and options.valid_metric not in HIGHER_IS_BETTER:
        raise ConfigError(f"utterance.valid_metric {options.valid_metric!r} not one of {sorted(HIGHER_IS_BETTER)}")
    head = dict(section.get("head") or {})
    if head.get("num_classes", num_classes) != num_classes:
        raise ConfigError(f"utterance.head.num_classes is {head['num_classes']}, the labels have {num_classes} classes "
                          "(leave it out: it follows the labels)")
    section["head"] = {**head, "num_classes": num_classes}
    return options, section
