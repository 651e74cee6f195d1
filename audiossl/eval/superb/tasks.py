"""The tasks of the SUPERB-style evaluation: their data, labels, heads, losses and figures.

=========== ======================== ============================ ========================== ======
task        sets (under the data dir) labels                       head                       figure
=========== ======================== ============================ ========================== ======
pr          pr/{train_1h,dev,test}   ``text``: ARPAbet phonemes   linear per frame, CTC      PER
asr         asr/{train_1h,dev,test}  ``text``: words (characters) 2-layer BLSTM, CTC         WER
ks          ks/{train,dev,test}      ``utt2label`` (12 classes)   mean pool + linear         acc
ic          ic/{train,dev,test}      ``utt2intent`` (3 slots)     mean pool + linear a slot  acc
sid         speakers/sid_*           ``utt2spk``                  mean pool + linear         acc
asv         speakers/asv_*           ``utt2spk``; ``trials``      x-vector, AAM-softmax      EER
instrument  16k/notes_*              ``utt2family`` (16)          MLP on the mean            acc
pitch       16k/notes_*              ``utt2pitch``                MLP on the mean            acc
tagging     16k/tagging_*            ``utt2tags`` (multi-label)   MLP on the mean, sigmoid   ROC-AUC
key         16k/key_*                ``utt2key`` (24 keys)        MLP on the mean            weighted key score
=========== ======================== ============================ ========================== ======

ASV trains on ``asv_train``'s speakers, chooses its checkpoint by speaker accuracy on
``sid_dev`` (other sentences of the same speakers) and is scored on ``asv_test``'s trials,
speakers held out of all training. Classes come from the training set's ``labels.<name>``
when it has one (one class a line), else from its distinct labels; a label outside them, or a
class no training utterance has, is an error naming the file and line or the classes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from audiossl.data.kaldi_dir import DataDir, DataDirError, read_utterance_labels, table_line
from audiossl.errors import ConfigError
from audiossl.eval.superb.heads import FrameBlstm, FrameLinear, PooledLinear, PooledMlp, ctc_loss
from audiossl.eval.verification import check_trials, read_trials, score_trials
from audiossl.models.utterance.config import HeadConfig
from audiossl.models.utterance.model import XVectorHead
from audiossl.tasks.utterance import check_every_class_seen, check_tags_vary, class_targets, training_classes
from audiossl.text.ctc_decode import greedy_decode
from audiossl.text.scoring import error_rates
from audiossl.text.tokenizer import CharTokenizer

# ---------------------------------------------------------------------------- key score

PITCH_CLASSES = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6, "G": 7,
                 "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11, "Cb": 11}


def key_score(reference: str, estimate: str) -> float:
    """MIREX's weighted key score of one estimate (``"Eb minor"``, tonic and mode; ``_`` may join them):
    1 the same key, 0.5 a perfect fifth above in the same mode, 0.3 the relative key, 0.2 the
    parallel key, else 0 (as ``mir_eval.key.weighted_score``)."""
    (ref_tonic, ref_mode), (est_tonic, est_mode) = (k.replace("_", " ").split() for k in (reference, estimate))
    ref, est = PITCH_CLASSES[ref_tonic], PITCH_CLASSES[est_tonic]
    if (ref, ref_mode) == (est, est_mode):
        return 1.0
    if ref_mode == est_mode and (est - ref) % 12 == 7:
        return 0.5
    if ref_mode == "major" and est_mode == "minor" and (est - ref) % 12 == 9:
        return 0.3
    if ref_mode == "minor" and est_mode == "major" and (est - ref) % 12 == 3:
        return 0.3
    if ref == est:
        return 0.2
    return 0.0


def is_key(name: str) -> bool:
    """Whether ``name`` is a key :func:`key_score` reads: a tonic of :data:`PITCH_CLASSES` and major or minor."""
    fields = name.replace("_", " ").split()
    return len(fields) == 2 and fields[0] in PITCH_CLASSES and fields[1] in ("major", "minor")


# ---------------------------------------------------------------------------- labels

def task_classes(train_dir: str | os.PathLike, table: str, multilabel: bool, allow_empty: bool) -> list[str]:
    """The classes of a task's training set, as fine-tuning reads them
    (:func:`~audiossl.tasks.utterance.training_classes`); a class no training utterance has is a
    DataDirError unless ``allow_empty``."""
    classes = training_classes(train_dir, table, multilabel)
    if not allow_empty:
        check_every_class_seen(class_targets(train_dir, table, classes, multilabel), classes, f"{train_dir}/{table}")
    return classes


def class_ids(data_dir: str | os.PathLike, table: str, classes: list[str]) -> dict[str, int]:
    """``{utt: class id}`` of a single-label ``table`` (:func:`~audiossl.tasks.utterance.class_targets`)."""
    return {utt: ids[0] for utt, ids in class_targets(data_dir, table, classes, multilabel=False).items()}


# ---------------------------------------------------------------------------- tasks

@dataclass
class TaskSettings:
    """A task's training budget and head size (a ``tasks.<name>`` section of the SUPERB config); the
    same for every upstream.

    updates: optimizer updates; batch_size: utterances a batch; lr: AdamW's peak (linear warmup over
    the first tenth, then constant); valid_interval: updates between dev evaluations (and at the end);
    head: the head's size options (``projector_dim``, ``hidden_size``, ``num_layers``, ``dropout``,
    ``embedding_dim``, ``channels``).
    """

    updates: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    valid_interval: int = 100
    head: dict[str, Any] = field(default_factory=dict)


# the head options a SUPERB config may set (a task reads those of its head), each a positive size but dropout
HEAD_OPTIONS = ("projector_dim", "hidden_size", "num_layers", "embedding_dim", "channels", "dropout")


def head_option_error(key: str, value: Any) -> str | None:
    """What is wrong with head option ``key`` set to ``value``, or None."""
    if key not in HEAD_OPTIONS:
        return f"unknown key '{key}' (known: {', '.join(HEAD_OPTIONS)})"
    if key == "dropout":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            return f"dropout {value!r}: expected a number in [0, 1)"
    elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"{key} {value!r}: expected a positive whole number"
    return None


class ProbeTask:
    """What the runner needs of a task. ``targets`` values are what :meth:`loss` takes per utterance."""

    name: str
    title: str          # the table's column group
    level: str          # "frames" or "mean": the hidden-state cache kind
    sets: tuple[str, str, str]   # train, dev, test, relative to the data dir
    metric: str         # the reported figure (results.json "metric")
    higher_is_better: bool
    dev_metric: str     # the figure on dev that chooses the checkpoint
    dev_higher_is_better: bool
    classes: list[str]

    def __init__(self, settings: TaskSettings) -> None:
        self.settings = settings

    def prepare(self, data_root: Path, allow_empty_classes: bool) -> None:
        """Read the label set from the training data (before any hidden state is computed)."""

    def targets(self, data_dir: Path) -> dict[str, Any]:
        raise NotImplementedError

    def head(self, input_dim: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, head: nn.Module, features: Tensor, lengths: Tensor, targets: list) -> Tensor:
        return nn.functional.cross_entropy(head(features, lengths).float(), torch.tensor(targets))

    def outputs(self, head: nn.Module, features: Tensor, lengths: Tensor) -> list:
        """Per-utterance outputs scored by :meth:`dev_figure` and :meth:`evaluate`."""
        return list(head(features, lengths).float().numpy())

    def dev_figure(self, outputs: dict[str, Any], targets: dict[str, Any]) -> float:
        raise NotImplementedError

    def evaluate(self, outputs: dict[str, Any], targets: dict[str, Any], data_dir: Path, out_dir: Path) -> dict:
        raise NotImplementedError


class CtcTask(ProbeTask):
    level = "frames"
    higher_is_better = dev_higher_is_better = False

    def __init__(self, settings: TaskSettings, name: str, phonemes: bool) -> None:
        super().__init__(settings)
        self.name, self.phonemes = name, phonemes
        self.title, self.metric, self.dev_metric = ("PR", "per", "per") if phonemes else ("ASR", "wer", "cer")
        self.sets = (f"{name}/train_1h", f"{name}/dev", f"{name}/test")

    def prepare(self, data_root: Path, allow_empty_classes: bool) -> None:
        train = data_root / self.sets[0]
        texts = DataDir.read(train).transcripts(train).values()
        if self.phonemes:  # the inventory the sets were written with, else the training phonemes
            inventory = train / "phones.txt"
            phones = inventory.read_text().split() if inventory.is_file() else {p for t in texts for p in t.split()}
            self.classes = ["<blank>", *sorted(phones)]
            self.index = {p: i for i, p in enumerate(self.classes)}
        else:
            self.tokenizer = CharTokenizer.train(texts)
            self.classes = list(range(self.tokenizer.vocab_size))

    def encode(self, text: str) -> list[int]:
        if self.phonemes:
            return [self.index.get(p, -1) for p in text.split()]
        return self.tokenizer.encode(text)

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.classes[i] for i in ids) if self.phonemes else self.tokenizer.decode(ids)

    def targets(self, data_dir: Path) -> dict[str, Any]:
        texts = DataDir.read(data_dir).transcripts(data_dir)
        if self.phonemes:
            for number, (utt, text) in enumerate(texts.items(), 1):
                if -1 in self.encode(text):
                    unknown = next(p for p in text.split() if p not in self.classes)
                    raise DataDirError(f"{data_dir}/text:{number}: utterance '{utt}' has phoneme '{unknown}', not in "
                                       "the training set's phones.txt or transcripts")
        return texts

    def head(self, input_dim: int) -> nn.Module:
        h = self.settings.head
        if self.phonemes:
            return FrameLinear(input_dim, len(self.classes))
        return FrameBlstm(input_dim, len(self.classes), h.get("hidden_size", 256), h.get("num_layers", 2),
                          h.get("dropout", 0.2))

    def loss(self, head, features, lengths, targets) -> Tensor:
        return ctc_loss(head(features, lengths), lengths, [self.encode(t) for t in targets])

    def outputs(self, head, features, lengths) -> list:
        return [self.decode(ids) for ids in greedy_decode(head(features, lengths), lengths)]

    def dev_figure(self, outputs, targets) -> float:
        rates = error_rates({u: targets[u] for u in outputs}, outputs)
        return rates.wer if self.phonemes else rates.cer

    def evaluate(self, outputs, targets, data_dir, out_dir) -> dict:
        rates = error_rates({u: targets[u] for u in outputs}, outputs)
        (out_dir / "hyp.txt").write_text("".join(f"{u} {outputs[u]}\n" for u in sorted(outputs)))
        if self.phonemes:
            return {"per": rates.wer, "phonemes": rates.num_words}
        return {"wer": rates.wer, "cer": rates.cer, "words": rates.num_words}


class ClassTask(ProbeTask):
    """One class per utterance: accuracy (``key``: also the weighted key score, which it reports)."""

    level = "mean"
    higher_is_better = dev_higher_is_better = True

    def __init__(self, settings: TaskSettings, name: str, title: str, sets: tuple[str, str, str], table: str,
                 mlp: bool) -> None:
        super().__init__(settings)
        self.name, self.title, self.sets, self.table, self.mlp = name, title, sets, table, mlp
        self.metric = self.dev_metric = "key_score" if name == "key" else "accuracy"

    def prepare(self, data_root: Path, allow_empty_classes: bool) -> None:
        self.classes = task_classes(data_root / self.sets[0], self.table, False, allow_empty_classes)
        if self.name == "key":  # the weighted key score reads tonic and mode
            wrong = [key for key in self.classes if not is_key(key)]
            if wrong:
                raise DataDirError(f"{data_root / self.sets[0]}: key '{wrong[0]}' is not '<tonic> major|minor' "
                                   f"(tonics: {', '.join(PITCH_CLASSES)})")

    def targets(self, data_dir: Path) -> dict[str, Any]:
        return class_ids(data_dir, self.table, self.classes)

    def head(self, input_dim: int) -> nn.Module:
        h = self.settings.head
        if self.mlp:
            return PooledMlp(input_dim, len(self.classes), h.get("hidden_size", 512), h.get("dropout", 0.2))
        return PooledLinear(input_dim, len(self.classes), h.get("projector_dim", 256))

    def figures(self, outputs, targets) -> dict[str, float]:
        utts = sorted(outputs)
        predicted = [int(np.argmax(outputs[u])) for u in utts]
        figures = {"accuracy": float(np.mean([p == targets[u] for u, p in zip(utts, predicted)]))}
        if self.name == "key":
            figures["key_score"] = float(np.mean([key_score(self.classes[targets[u]], self.classes[p])
                                                  for u, p in zip(utts, predicted)]))
        return figures

    def dev_figure(self, outputs, targets) -> float:
        return self.figures(outputs, targets)[self.dev_metric]

    def evaluate(self, outputs, targets, data_dir, out_dir) -> dict:
        from audiossl.eval.utterance import single_label_results

        figures = single_label_results(outputs, {u: [t] for u, t in targets.items()}, self.classes, out_dir)
        return {**figures, **self.figures(outputs, targets), "classes": len(self.classes)}


class IntentTask(ProbeTask):
    """``action object location`` slots, one linear output group each; an intent is right when every slot is."""

    name, title, level, metric, dev_metric, higher_is_better = "ic", "IC", "mean", "accuracy", "accuracy", True
    dev_higher_is_better = True
    sets = ("ic/train", "ic/dev", "ic/test")
    table = "utt2intent"

    def intents(self, data_dir: Path) -> dict[str, list[str]]:
        """``{utt: [action, object, location]}`` of every utterance of ``data_dir``; another number of
        slot values is a DataDirError naming the table's line."""
        intents = {}
        for utt, value in read_utterance_labels(data_dir, self.table).items():
            intents[utt] = value.split()
            if len(intents[utt]) != 3:
                raise DataDirError(f"{table_line(data_dir / self.table, utt)}: utterance '{utt}' has intent '{value}', not "
                                   "three slot values (action object location)")
        return intents

    def prepare(self, data_root: Path, allow_empty_classes: bool) -> None:
        values = list(self.intents(data_root / self.sets[0]).values())
        self.slots = [sorted({v[i] for v in values}) for i in range(3)]
        self.classes = sorted({" ".join(v) for v in values})

    def targets(self, data_dir: Path) -> dict[str, Any]:
        ids = {}
        for utt, fields in self.intents(data_dir).items():
            if any(f not in slot for f, slot in zip(fields, self.slots)):
                raise DataDirError(f"{table_line(data_dir / self.table, utt)}: utterance '{utt}' has intent "
                                   f"'{' '.join(fields)}', not three slot values seen in training")
            ids[utt] = [slot.index(f) for f, slot in zip(fields, self.slots)]
        return ids

    def head(self, input_dim: int) -> nn.Module:
        return PooledLinear(input_dim, sum(len(s) for s in self.slots), self.settings.head.get("projector_dim", 256))

    def split(self, logits: Tensor) -> list[Tensor]:
        return list(logits.split([len(s) for s in self.slots], dim=-1))

    def loss(self, head, features, lengths, targets) -> Tensor:
        parts = self.split(head(features, lengths).float())
        ids = torch.tensor(targets)
        return sum(nn.functional.cross_entropy(part, ids[:, i]) for i, part in enumerate(parts))

    def outputs(self, head, features, lengths) -> list:
        parts = [part.argmax(-1) for part in self.split(head(features, lengths))]
        return torch.stack(parts, -1).tolist()

    def dev_figure(self, outputs, targets) -> float:
        return float(np.mean([outputs[u] == targets[u] for u in outputs]))

    def evaluate(self, outputs, targets, data_dir, out_dir) -> dict:
        from audiossl.eval.utterance import plot_confusion
        from sklearn.metrics import confusion_matrix

        def intent(ids):
            return " ".join(slot[i] for slot, i in zip(self.slots, ids))

        utts = sorted(outputs)
        names = [*self.classes, "(other)"]
        index = {name: i for i, name in enumerate(names)}
        labels = [index.get(intent(targets[u]), len(self.classes)) for u in utts]
        predicted = [index.get(intent(outputs[u]), len(self.classes)) for u in utts]
        (out_dir / "predictions").write_text("".join(f"{u} {intent(targets[u]).replace(' ', '/')} "
                                                     f"{intent(outputs[u]).replace(' ', '/')}\n" for u in utts))
        plot_confusion(confusion_matrix(labels, predicted, labels=list(range(len(names)))), names,
                       out_dir / "confusion.png")
        slot_acc = {f"{slot}_accuracy": float(np.mean([outputs[u][i] == targets[u][i] for u in utts]))
                    for i, slot in enumerate(("action", "object", "location"))}
        return {"accuracy": self.dev_figure(outputs, targets), **slot_acc}


class TaggingTask(ProbeTask):
    """Multi-label instrument tags: a sigmoid per tag; macro ROC-AUC (reported and chooses) and mAP."""

    name, title, level, metric, dev_metric, higher_is_better = "tagging", "Tagging", "mean", "roc_auc", "roc_auc", True
    dev_higher_is_better = True
    sets = ("16k/tagging_train", "16k/tagging_dev", "16k/tagging_test")
    table = "utt2tags"

    def prepare(self, data_root: Path, allow_empty_classes: bool) -> None:
        self.classes = task_classes(data_root / self.sets[0], self.table, True, allow_empty_classes)

    def targets(self, data_dir: Path) -> dict[str, Any]:
        """Each utterance's tag ids; a set where no tag is on some utterances and off others (ROC-AUC is
        undefined) is a DataDirError."""
        ids = class_targets(data_dir, self.table, self.classes, multilabel=True)
        check_tags_vary(ids, len(self.classes), str(data_dir / self.table))
        return ids

    def head(self, input_dim: int) -> nn.Module:
        h = self.settings.head
        return PooledMlp(input_dim, len(self.classes), h.get("hidden_size", 512), h.get("dropout", 0.2))

    def multi_hot(self, targets: list[list[int]]) -> Tensor:
        labels = torch.zeros(len(targets), len(self.classes))
        for row, ids in enumerate(targets):
            labels[row, ids] = 1.0
        return labels

    def loss(self, head, features, lengths, targets) -> Tensor:
        return nn.functional.binary_cross_entropy_with_logits(head(features, lengths).float(), self.multi_hot(targets))

    def dev_figure(self, outputs, targets) -> float:
        from sklearn.metrics import roc_auc_score

        utts = sorted(outputs)
        truth = self.multi_hot([targets[u] for u in utts]).numpy()
        scored = (truth.sum(0) > 0) & (truth.sum(0) < len(utts))
        return float(roc_auc_score(truth[:, scored], np.stack([outputs[u] for u in utts])[:, scored]))

    def evaluate(self, outputs, targets, data_dir, out_dir) -> dict:
        from audiossl.eval.utterance import multilabel_results

        figures = multilabel_results(outputs, targets, self.classes, out_dir)
        return {"roc_auc": figures.pop("roc_auc_macro"), "map": figures.pop("map_macro"), **figures}


class VerificationTask(ProbeTask):
    """x-vector on the frames, trained with AAM-softmax over ``asv_train``'s speakers; cosine scores of
    ``asv_test/trials``: EER (reported) and minDCF. Chosen by speaker accuracy on ``sid_dev``."""

    name, title, level, metric, dev_metric, higher_is_better = "asv", "ASV", "frames", "eer", "accuracy", False
    dev_higher_is_better = True
    sets = ("speakers/asv_train", "speakers/sid_dev", "speakers/asv_test")

    def prepare(self, data_root: Path, allow_empty_classes: bool) -> None:
        self.classes = sorted(set(read_utterance_labels(data_root / self.sets[0], "utt2spk").values()))
        test = data_root / self.sets[2]
        check_trials(read_trials(test / "trials"), DataDir.read(test).utterances, test / "trials")

    def targets(self, data_dir: Path) -> dict[str, Any]:
        if data_dir.name == Path(self.sets[2]).name:
            return {}  # scored by trials
        return class_ids(data_dir, "utt2spk", self.classes)

    def head(self, input_dim: int) -> nn.Module:
        h = self.settings.head
        channels = h.get("channels", 256)
        config = HeadConfig(kind="xvector", num_classes=len(self.classes), embedding_dim=h.get("embedding_dim", 128),
                            pooling="attentive", attention_channels=64, tdnn_channels=[channels] * 3)
        return XVectorHead(config, input_dim)

    def loss(self, head, features, lengths, targets) -> Tensor:
        loss, _ = head.loss(head.embed(features, lengths), torch.tensor(targets))
        return loss

    def outputs(self, head, features, lengths) -> list:
        """``(embedding, margin-free logits)`` per utterance."""
        embeddings = head.embed(features, lengths)
        return list(zip(embeddings.float().numpy(), head.logits(embeddings).float().numpy()))

    def dev_figure(self, outputs, targets) -> float:
        return float(np.mean([int(np.argmax(outputs[u][1])) == targets[u] for u in outputs]))

    def evaluate(self, outputs, targets, data_dir, out_dir) -> dict:
        trials = read_trials(data_dir / "trials")
        _, _, metrics = score_trials(trials, {u: embedding for u, (embedding, _) in outputs.items()}, out_dir / "scores")
        return {"num_trials": len(trials), **metrics}


TASK_NAMES = ("pr", "asr", "ks", "ic", "sid", "asv", "instrument", "pitch", "tagging", "key")


def build_task(name: str, settings: TaskSettings) -> ProbeTask:
    """The task ``name`` of :data:`TASK_NAMES` with its settings."""
    music = {"instrument": ("Instrument", "notes", "utt2family"), "pitch": ("Pitch", "notes", "utt2pitch"),
             "key": ("Key", "key", "utt2key")}
    if name in ("pr", "asr"):
        return CtcTask(settings, name, phonemes=name == "pr")
    if name == "ks":
        return ClassTask(settings, "ks", "KS", ("ks/train", "ks/dev", "ks/test"), "utt2label", mlp=False)
    if name == "sid":
        return ClassTask(settings, "sid", "SID", ("speakers/sid_train", "speakers/sid_dev", "speakers/sid_test"),
                         "utt2spk", mlp=False)
    if name in music:
        title, stem, table = music[name]
        return ClassTask(settings, name, title, tuple(f"16k/{stem}_{s}" for s in ("train", "dev", "test")), table,
                         mlp=True)
    if name == "ic":
        return IntentTask(settings)
    if name == "tagging":
        return TaggingTask(settings)
    if name == "asv":
        return VerificationTask(settings)
    raise ConfigError(f"unknown SUPERB task {name!r}; known: {', '.join(TASK_NAMES)}")
