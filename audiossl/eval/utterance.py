"""Evaluation of fine-tuned utterance models, and their pretrained-vs-scratch RESULTS.md sections.

:func:`classify` scores a classifier on a data dir (accuracy, error and a confusion matrix; or
ROC-AUC, mAP and LRAP for a multilabel head); :func:`verify` cosine-scores a trial list with the
model's embeddings (EER, minDCF). Both return what ``results.json`` holds; the command line is
:mod:`audiossl.bin.eval_utterance`.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from audiossl.atomic import write_text_atomic
from audiossl.checkpoint import CheckpointError, load_model
from audiossl.data.dataset import UtteranceDataset, sorted_batches
from audiossl.errors import UserError
from audiossl.eval.results import ResultsError, minutes, parse_record, shown, training_facts, write_section
from audiossl.eval.verification import check_trials, read_trials, score_trials
from audiossl.tasks.utterance import CLASSES_FILE, check_tags_vary, class_targets, read_class_list, utterance_audio

PAGE_HEAD = ["# Utterance-level fine-tuning: pretrained encoder vs the same model from scratch", "",
             "The audio is synthetic (speech engines with shifted pitch, formants and tempo; a General MIDI "
             "soundfont): figures on it compare methods on these corpora only and do not transfer to real "
             "speech or music.", ""]
# results.json key, column title, scale, higher is better
FIGURES = {
    "classify": [("accuracy", "Accuracy %", 100, True), ("error", "Error %", 100, False)],
    "multilabel": [("roc_auc_macro", "ROC-AUC (macro)", 1, True), ("map_macro", "mAP (macro)", 1, True),
                   ("lrap", "LRAP", 1, True)],
    "verify": [("eer", "EER %", 100, False), ("min_dcf_0.01", "minDCF 0.01", 1, False),
               ("min_dcf_0.05", "minDCF 0.05", 1, False)],
}


def start_output(out_dir: Path) -> None:
    """Make ``out_dir`` and remove its results.json, which is written last: an evaluation that stops
    leaves no earlier figures beside its own files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").unlink(missing_ok=True)


def utterance_model(checkpoint: str | os.PathLike):
    """The utterance model of ``checkpoint``, in eval mode; another family is a CheckpointError."""
    model = load_model(checkpoint)
    if getattr(model.config, "family", None) != "utterance":
        raise CheckpointError(f"{checkpoint}: a {model.config.family} model, not an utterance model "
                              "(made by audiossl.bin.finetune_utterance)")
    return model.eval()


@torch.no_grad()
def utterance_outputs(model, data: UtteranceDataset, batch_seconds: float, embed: bool,
                      progress: bool = False) -> dict[str, np.ndarray]:
    """``{utt: (C,) logits}`` (or ``(E,)`` unit-length embeddings with ``embed``) of every utterance of
    ``data`` (waveforms), in length-sorted batches of at most ``batch_seconds`` of padded audio."""
    outputs = {}
    for batch in tqdm(sorted_batches(data, batch_seconds), desc=f"{'embed' if embed else 'classify'} {data.data_dir}", disable=not progress):
        values = model.embed(batch.inputs, batch.lengths, normalize=True) if embed else \
            model.classify(batch.inputs, batch.lengths)
        outputs.update(zip(batch.utterances, values.float().numpy()))
    return outputs


def layer_weights(model) -> dict[str, list]:
    """The featurizer's layers (0: the front end's projection) and their softmax weights."""
    featurizer = model.featurizer
    return {"layers": list(featurizer.layers), "weights": [float(w) for w in featurizer.layer_weights()]}


def plot_layer_weights(weights: dict[str, list], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(5, 3))
    axes.bar(range(len(weights["layers"])), weights["weights"], tick_label=[str(i) for i in weights["layers"]])
    axes.set_xlabel("hidden state (0: input of the first layer)")
    axes.set_ylabel("weight (softmax)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def plot_confusion(matrix: np.ndarray, classes: list[str], path: Path) -> None:
    """Row-normalised confusion matrix (labels down, predictions across); class names up to 40 classes."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    size = min(4 + 0.25 * len(classes), 16)
    figure, axes = pyplot.subplots(figsize=(size, size))
    rates = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 40:
        axes.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
        axes.set_yticks(range(len(classes)), classes, fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("label")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def single_label_results(logits: dict[str, np.ndarray], targets: dict[str, list[int]], classes: list[str],
                         out_dir: Path) -> dict:
    """Accuracy and error; ``predictions`` and confusion.png in ``out_dir``."""
    from sklearn.metrics import confusion_matrix

    utts = sorted(logits)
    labels = np.array([targets[u][0] for u in utts])
    predicted = np.array([int(np.argmax(logits[u])) for u in utts])
    write_text_atomic(out_dir / "predictions", "".join(f"{u} {classes[t]} {classes[p]}\n"
                                                       for u, t, p in zip(utts, labels, predicted)))
    plot_confusion(confusion_matrix(labels, predicted, labels=list(range(len(classes)))), classes,
                   out_dir / "confusion.png")
    accuracy = float(np.mean(labels == predicted))
    return {"accuracy": accuracy, "error": 1.0 - accuracy}


def multilabel_results(logits: dict[str, np.ndarray], targets: dict[str, list[int]], classes: list[str],
                       out_dir: Path) -> dict:
    """Macro ROC-AUC and mAP over the classes with positives and negatives, LRAP; ``predictions`` in ``out_dir``."""
    from sklearn.metrics import average_precision_score, label_ranking_average_precision_score, roc_auc_score

    utts = sorted(logits)
    scores = np.stack([logits[u] for u in utts])
    truth = np.zeros_like(scores, dtype=bool)
    for row, utt in enumerate(utts):
        truth[row, targets[utt]] = True
    write_text_atomic(out_dir / "predictions", "".join(
        " ".join([u] + [classes[i] for i in np.flatnonzero(s > 0)]) + "\n" for u, s in zip(utts, scores)))
    positives = truth.sum(0)
    scored = np.flatnonzero((positives > 0) & (positives < len(utts)))  # never empty: classify checked the tags vary
    return {"roc_auc_macro": float(roc_auc_score(truth[:, scored], scores[:, scored], average="macro")),
            "map_macro": float(average_precision_score(truth[:, scored], scores[:, scored], average="macro")),
            "lrap": float(label_ranking_average_precision_score(truth, scores)),
            "classes_scored": len(scored),
            "classes_unscored": [classes[i] for i in np.flatnonzero((positives == 0) | (positives == len(utts)))]}


def classify(model, checkpoint: str, data_dir: str, out_dir: Path, label_table: str, classes_path: str | None,
             batch_seconds: float, progress: bool) -> dict:
    """Score ``model`` (read from ``checkpoint``) on ``data_dir``; returns what results.json holds."""
    saved = Path(checkpoint).parent / CLASSES_FILE
    classes_path = Path(classes_path or saved)
    classes = read_class_list(classes_path)
    if len(classes) != model.num_classes:
        raise UserError(f"{classes_path}: {len(classes)} classes, the model of {checkpoint} has {model.num_classes}")
    if classes_path != saved and saved.is_file() and read_class_list(saved) != classes:
        raise UserError(f"{classes_path}: not the classes of {saved} (the model's) in their order; "
                        "leave --classes out, or give it that list")
    targets = class_targets(data_dir, label_table, classes, model.multilabel)
    if model.multilabel:
        check_tags_vary(targets, len(classes), f"{data_dir}/{label_table}")
    data = utterance_audio(data_dir, model, targets, f"{data_dir}/{label_table}")
    logits = utterance_outputs(model, data, batch_seconds, embed=False, progress=progress)
    start_output(out_dir)
    kind = "multilabel" if model.multilabel else "classify"
    figures = (multilabel_results if model.multilabel else single_label_results)(logits, targets, classes, out_dir)
    return {"task": kind, "checkpoint": str(checkpoint), "data": str(data_dir), "label_table": label_table,
            "utterances": len(logits), "classes": len(classes), **figures}


def verify(model, checkpoint: str, data_dir: str, out_dir: Path, trials_path: str | None, batch_seconds: float,
           progress: bool) -> dict:
    """Cosine-score the trials with ``model``'s embeddings (read from ``checkpoint``); returns what results.json
    holds."""
    trials_path = Path(trials_path or Path(data_dir) / "trials")
    trials = read_trials(trials_path)
    data = utterance_audio(data_dir, model)
    check_trials(trials, data.utterances, trials_path)
    embeddings = utterance_outputs(model, data, batch_seconds, embed=True, progress=progress)
    start_output(out_dir)
    _, is_target, metrics = score_trials(trials, embeddings, out_dir / "scores")
    return {"task": "verify", "checkpoint": str(checkpoint), "data": str(data_dir), "trials": str(trials_path),
            "num_trials": len(trials), "num_targets": int(is_target.sum()), "embedding_dim": model.embedding_dim,
            **metrics}


# ---------------------------------------------------------------------------- RESULTS.md

def model_facts(model_dir: Path, eval_name: str) -> dict:
    """A model's eval results (``<eval_name>/results.json``, with the figures of its task) and its training
    facts (:func:`training_facts`)."""
    path = model_dir / eval_name / "results.json"
    text = path.read_text()
    kind = parse_record(text, str(path), ("task",))["task"]
    if kind not in FIGURES:
        raise ResultsError(f"{path}: task '{kind}' is not an utterance evaluation ({', '.join(FIGURES)})")
    results = parse_record(text, str(path), ("data", *(key for key, _, _, _ in FIGURES[kind])))
    return {"results": results, **training_facts(model_dir)}


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo), the vector instructions torch uses on it (AVX2,
    AVX512: the same model name covers both) and the core count."""
    name = "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name} ({torch.backends.cpu.get_cpu_capability()}), {os.cpu_count()} cores"


def results_lines(pretrained_dir: Path, scratch_dir: Path, eval_name: str, pretrained: str, command: str) -> list[str]:
    """The Markdown lines of a pretrained-vs-scratch section."""
    facts = {"pretrained": model_facts(pretrained_dir, eval_name), "scratch": model_facts(scratch_dir, eval_name)}
    kind = facts["pretrained"]["results"]["task"]
    if facts["scratch"]["results"]["task"] != kind:
        raise ResultsError(f"{pretrained_dir / eval_name} and {scratch_dir / eval_name} hold different evaluations")
    figures = FIGURES[kind]
    results, theirs = facts["pretrained"]["results"], facts["scratch"]["results"]
    inputs = ("data", "trials", "num_trials") if kind == "verify" else ("data", "label_table", "utterances")
    differ = [f"{key} {results.get(key)!r} and {theirs.get(key)!r}"
              for key in inputs if results.get(key) != theirs.get(key)]
    if differ:
        raise ResultsError(f"{pretrained_dir / eval_name} and {scratch_dir / eval_name} were evaluated on other "
                           "inputs: " + "; ".join(differ))
    header = ["Upstream", *[title for _, title, _, _ in figures], "Updates (best.pt at)", "Dev figures at best.pt",
              "Training time (m:ss)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for init, run in facts.items():
        values = [shown(run["results"][key], scale) for key, _, scale, _ in figures]
        dev = ", ".join(f"{k} {v:.3f}" for k, v in run["dev"].items() if k != "update")
        time = minutes(run["train_seconds"]) if run["train_seconds"] is not None else "?"
        cells = [init, *values, f"{run['updates']} ({run['best_update']})", dev, time]
        lines.append("| " + " | ".join(cells) + " |")
    key, title, scale, higher = figures[0]
    ours, theirs = facts["pretrained"]["results"][key], facts["scratch"]["results"][key]
    if shown(ours, scale) == shown(theirs, scale):
        verdict = f"Pretrained and scratch are level on {title}: {shown(ours, scale)}."
    else:
        winner = "pretrained" if (ours > theirs) == higher else "scratch"
        unit = " points" if scale == 100 else ""
        verdict = (f"**{winner.capitalize()} is better** on {title}: {shown(ours, scale)} (pretrained) vs "
                   f"{shown(theirs, scale)} (scratch), a difference of {shown(abs(ours - theirs), scale)}{unit}.")
    where = f"`{results['data']}`" + (f", trials `{results['trials']}`" if kind == "verify" else
                                      f", labels from `{results['label_table']}`")
    precision = {run["precision"] for run in facts.values() if run["precision"]}
    config = facts["pretrained"]["config"]
    upstream = f"{config['upstream_family']}, {config['head']['kind']} head"
    count = f"{results['num_trials']} trials" if kind == "verify" else f"{results['utterances']} utterances"
    lines += ["", verdict, "",
              f"Evaluated on {where} ({count}). Pretrained upstream: `{pretrained}` ({upstream}); the scratch "
              "control has the same architecture, head and fine-tuning config, with random weights. Training time: "
              f"wall clock with validation and checkpoints, {'/'.join(sorted(precision)) or '?'}, on {cpu_name()}.",
              "", f"Produced by `{command}`."]
    return lines


def save_evaluation(model, results: dict, out_dir: Path) -> None:
    """Add ``model``'s layer weights to ``results``; write them to results.json and layer_weights.png in ``out_dir``."""
    results["layer_weights"] = layer_weights(model)
    plot_layer_weights(results["layer_weights"], out_dir / "layer_weights.png")
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    figures = {k: v for k, v in results.items() if isinstance(v, float)}
    logging.info("%s: %s", out_dir, " ".join(f"{k}={v:.4f}" for k, v in figures.items()))


def write_results(path: str | os.PathLike, section: str, lines: list[str]) -> None:
    """Set ``section`` of the Markdown file ``path`` to ``lines`` (a new file starts with the page head)."""
    write_section(path, section, lines, PAGE_HEAD)
    logging.info("%s: section '%s' written", path, section)
