"""Evaluate a fine-tuned utterance model, and put a pretrained-vs-scratch pair into RESULTS.md.

    python -m audiossl.bin.eval_utterance classify --label-table utt2family [--classes FILE] \\
        <checkpoint> <data-dir> <out-dir>
    python -m audiossl.bin.eval_utterance verify [--trials FILE] <checkpoint> <data-dir> <out-dir>
    python -m audiossl.bin.eval_utterance results --pretrained-dir DIR --scratch-dir DIR --eval-name NAME \\
        --pretrained CKPT --command '...' --section TITLE <RESULTS.md>

classify: the model's classes on every utterance of <data-dir>, against its <label-table>
mapped through the class list saved beside the checkpoint (``classes.txt``). Single-label heads:
``accuracy`` and ``error`` (fractions) in results.json, ``predictions`` (``<utt> <label>
<predicted>`` lines) and confusion.png (rows: labels, columns: predictions). Multilabel heads:
ROC-AUC and average precision, each the macro mean over the classes that have positive and
negative utterances in <data-dir> (``roc_auc_macro``, ``map_macro``; sklearn), ``lrap``, and
``predictions`` (``<utt>`` then the tags of probability above 0.5).

verify: unit-length embeddings of every utterance of <data-dir>, the cosine score of each trial of
<trials> (default <data-dir>/trials) written to ``scores`` (``<enroll> <test> <score>`` lines),
and ``eer``, ``min_dcf_0.01`` and ``min_dcf_0.05`` (p_target; c_miss = c_fa = 1) in results.json.

Both write the learned weights of the upstream's layers (``layer_weights`` in results.json and
layer_weights.png). results: reads <dir>/<eval-name>/results.json and the checkpoints of both
models and sets the section <section> of the Markdown file.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from audiossl.atomic import write_text_atomic
from audiossl.checkpoint import CheckpointError, load_checkpoint, load_model
from audiossl.data.dataset import BucketBatchSampler, UtteranceDataset, collate, input_rate
from audiossl.errors import UserError
from audiossl.eval.results import ResultsError, minutes, parse_record, read_json, train_state, write_section
from audiossl.eval.verification import check_trials, cosine_scores, read_trials, verification_metrics, write_scores
from audiossl.tasks.utterance import CLASSES_FILE, class_targets, read_class_list

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
    sampler = BucketBatchSampler(data.lengths, int(batch_seconds * input_rate(data.input_kind)), shuffle=False)
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler.epoch_batches(0), collate_fn=collate)
    outputs = {}
    for batch in tqdm(loader, desc=f"{'embed' if embed else 'classify'} {data.data_dir}", disable=not progress):
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
    scored = np.flatnonzero((positives > 0) & (positives < len(utts)))
    if not len(scored):
        raise UserError(f"{out_dir}: no class has both positive and negative utterances: ROC-AUC is undefined")
    return {"roc_auc_macro": float(roc_auc_score(truth[:, scored], scores[:, scored], average="macro")),
            "map_macro": float(average_precision_score(truth[:, scored], scores[:, scored], average="macro")),
            "lrap": float(label_ranking_average_precision_score(truth, scores)),
            "classes_scored": len(scored),
            "classes_unscored": [classes[i] for i in np.flatnonzero((positives == 0) | (positives == len(utts)))]}


def classify(model, checkpoint: str, data_dir: str, out_dir: Path, label_table: str, classes_path: str | None,
             batch_seconds: float, progress: bool) -> dict:
    """Score ``model`` (read from ``checkpoint``) on ``data_dir``; returns what results.json holds."""
    classes_path = Path(classes_path or Path(checkpoint).parent / CLASSES_FILE)
    classes = read_class_list(classes_path)
    if len(classes) != model.num_classes:
        raise UserError(f"{classes_path}: {len(classes)} classes, the model of {checkpoint} has {model.num_classes}")
    targets = class_targets(data_dir, label_table, classes, model.multilabel)
    data = UtteranceDataset(data_dir, "waveform", targets, targets_name=f"{data_dir}/{label_table}")
    logits = utterance_outputs(model, data, batch_seconds, embed=False, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    data = UtteranceDataset(data_dir, "waveform")
    check_trials(trials, data.utterances, trials_path)
    embeddings = utterance_outputs(model, data, batch_seconds, embed=True, progress=progress)
    scores = cosine_scores(trials, embeddings)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_scores(out_dir / "scores", ((e, t, float(s)) for (e, t, _), s in zip(trials, scores)))
    is_target = np.array([t[2] for t in trials])
    return {"task": "verify", "checkpoint": str(checkpoint), "data": str(data_dir), "trials": str(trials_path),
            "num_trials": len(trials), "num_targets": int(is_target.sum()), "embedding_dim": model.embedding_dim,
            **verification_metrics(scores, is_target)}


def evaluate(args) -> None:
    out_dir = Path(args.out_dir)
    progress = not args.no_progress and sys.stderr.isatty()
    model = utterance_model(args.checkpoint)
    if args.mode == "classify":
        results = classify(model, args.checkpoint, args.data_dir, out_dir, args.label_table, args.classes,
                           args.batch_seconds, progress)
    else:
        results = verify(model, args.checkpoint, args.data_dir, out_dir, args.trials, args.batch_seconds, progress)
    results["layer_weights"] = layer_weights(model)
    plot_layer_weights(results["layer_weights"], out_dir / "layer_weights.png")
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    shown = {k: v for k, v in results.items() if isinstance(v, float)}
    logging.info("%s: %s", out_dir, " ".join(f"{k}={v:.4f}" for k, v in shown.items()))


# ---------------------------------------------------------------------------- RESULTS.md

def model_facts(model_dir: Path, eval_name: str) -> dict:
    """A model's eval results, its updates, the update of best.pt and its dev figures, and training time."""
    best_pt, last_pt = model_dir / "checkpoints" / "best.pt", model_dir / "checkpoints" / "last.pt"
    best_checkpoint = load_checkpoint(best_pt)
    best, last = train_state(best_checkpoint, best_pt), train_state(load_checkpoint(last_pt), last_pt)
    dev = {}
    valid_log = model_dir / "valid.jsonl"
    if valid_log.exists():
        records = [parse_record(line, f"{valid_log}:{number}", ("update",))
                   for number, line in enumerate(valid_log.read_text().splitlines(), 1)]
        dev = next((r for r in records if r["update"] == best["update"]), {})
    return {"results": read_json(model_dir / eval_name / "results.json", "task"), "updates": last["update"],
            "best_update": best["update"], "dev": dev, "train_seconds": last.get("train_seconds"),
            "precision": last.get("precision"), "config": best_checkpoint["config"]}


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo) and core count."""
    name = "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"{name}, {os.cpu_count()} cores"


def shown(value: float, scale: int) -> str:
    """A figure as the table shows it: percentages with one decimal, others with three."""
    return f"{scale * value:.{1 if scale == 100 else 3}f}"


def results_lines(pretrained_dir: Path, scratch_dir: Path, eval_name: str, pretrained: str, command: str) -> list[str]:
    """The Markdown lines of a pretrained-vs-scratch section."""
    facts = {"pretrained": model_facts(pretrained_dir, eval_name), "scratch": model_facts(scratch_dir, eval_name)}
    kind = facts["pretrained"]["results"]["task"]
    if facts["scratch"]["results"]["task"] != kind:
        raise ResultsError(f"{pretrained_dir / eval_name} and {scratch_dir / eval_name} hold different evaluations")
    figures = FIGURES[kind]
    results = facts["pretrained"]["results"]
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


def write_results(args) -> None:
    path = Path(args.results)
    lines = results_lines(Path(args.pretrained_dir), Path(args.scratch_dir), args.eval_name, args.pretrained,
                          args.command)
    if not path.exists() or not path.read_text().strip():
        write_text_atomic(path, "\n".join(PAGE_HEAD))
    write_section(path, args.section, lines)
    logging.info("%s: section '%s' written", path, args.section)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="audiossl.bin.eval_utterance", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="mode", required=True)
    for name in ("classify", "verify"):
        sub = commands.add_parser(name)
        if name == "classify":
            sub.add_argument("--label-table", required=True, help="the data dir's table of labels, e.g. utt2family")
            sub.add_argument("--classes", help=f"class list (default: {CLASSES_FILE} beside the checkpoint)")
        else:
            sub.add_argument("--trials", help="trial list (default: <data-dir>/trials)")
        sub.add_argument("--batch-seconds", type=float, default=60.0, help="padded audio per batch (default 60)")
        sub.add_argument("--no-progress", action="store_true")
        sub.add_argument("checkpoint")
        sub.add_argument("data_dir")
        sub.add_argument("out_dir")
    sub = commands.add_parser("results")
    sub.add_argument("--pretrained-dir", required=True, help="exp dir of the fine-tuned pretrained model")
    sub.add_argument("--scratch-dir", required=True, help="exp dir of the scratch control")
    sub.add_argument("--eval-name", required=True, help="the eval dir in each, e.g. eval_sid_test")
    sub.add_argument("--pretrained", required=True, help="the pretrained checkpoint (named in the text)")
    sub.add_argument("--command", required=True, help="the command the section names")
    sub.add_argument("--section", required=True, help="section title")
    sub.add_argument("results", help="Markdown file (RESULTS.md)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        if args.mode == "results":
            write_results(args)
        else:
            evaluate(args)
    except (UserError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
