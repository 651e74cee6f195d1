"""Train one task's probe on a frozen upstream's cached hidden states and score it.

:func:`run_task` reads the labels of the task's three sets first (so bad labels stop it before
any compute), gets the hidden states from the cache (:mod:`audiossl.eval.superb.cache`), trains
the :class:`~audiossl.eval.superb.heads.Probe` with AdamW for the task's fixed budget, evaluates
on dev every ``valid_interval`` updates, keeps the best dev state and scores it on test. Its
directory gets ``results.json``, ``layer_weights.png``, ``probe.pt``, ``train.jsonl`` and the
task's own files (``confusion.png`` and ``predictions``, ``scores`` for ASV, ``hyp.txt`` for CTC);
``results.json`` is removed as a run starts writing there and written last, so a run that stops
leaves no earlier figures beside its own files.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from audiossl.atomic import write_text_atomic
from audiossl.config_fields import dataclass_from_dict
from audiossl.errors import ConfigError
from audiossl.eval.superb.cache import HiddenStates, hidden_states
from audiossl.eval.superb.heads import Probe
from audiossl.eval.superb.tasks import TASK_NAMES, ProbeTask, TaskSettings, build_task, head_option_error
from audiossl.eval.superb.upstreams import Upstream
from audiossl.nn.pooling import LayerWeightedSum
from audiossl.train.config import load_run_config

logger = logging.getLogger("audiossl.superb")


def read_settings(path: str | os.PathLike) -> dict[str, TaskSettings]:
    """The ``tasks`` section of a SUPERB config: ``{task: TaskSettings}`` for every task of
    :data:`TASK_NAMES`, each value checked by type and range."""
    config = load_run_config(path)
    section = config.get("tasks") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: tasks: expected a mapping of task sections, got {section!r}")
    unknown = sorted(set(config) - {"tasks"}) + sorted(set(section) - set(TASK_NAMES))
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown} (a 'tasks' section with {', '.join(TASK_NAMES)})")
    settings = {}
    for name in TASK_NAMES:
        task = dataclass_from_dict(TaskSettings, section.get(name) or {}, f"{path}: tasks.{name}")
        low = [key for key in ("updates", "batch_size", "valid_interval") if getattr(task, key) < 1]
        low += ["lr"] if task.lr <= 0 else []
        if low:
            raise ConfigError(f"{path}: tasks.{name}: {', '.join(low)} must be more than 0, got "
                              + ", ".join(str(getattr(task, key)) for key in low))
        wrong = [error for key, value in task.head.items() if (error := head_option_error(key, value))]
        if wrong:
            raise ConfigError(f"{path}: tasks.{name}.head: {'; '.join(wrong)}")
        settings[name] = task
    return settings


class FeatureSet:
    """The cached hidden states of one set (read into memory) with the targets of its utterances, served as batches."""

    def __init__(self, states: HiddenStates, targets: dict) -> None:
        self.utterances = states.utterances
        self.lengths = states.lengths
        self.offsets = states.offsets
        self.kind = states.kind
        self.num_states, self.dim = states.num_states, states.dim
        self.states = torch.from_numpy(np.array(states.states))
        self.targets = targets

    def __len__(self) -> int:
        return len(self.utterances)

    def batch(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor, list]:
        """The stacked hidden states of ``rows``, ``(B, T, L, D)`` (``(B, L, D)`` for means) float32,
        their ``(B,)`` frames, and their targets."""
        targets = [self.targets.get(self.utterances[i]) for i in rows]
        if self.kind == "mean":
            return self.states[rows].float(), torch.ones(len(rows), dtype=torch.long), targets
        items = [self.states[self.offsets[i]:self.offsets[i] + self.lengths[i]] for i in rows]
        padded = nn.utils.rnn.pad_sequence(items, batch_first=True).float()
        return padded, torch.tensor([int(self.lengths[i]) for i in rows]), targets

    def training_batches(self, batch_size: int, generator: torch.Generator):
        """Endless batches of ``batch_size`` rows: each epoch shuffled, then cut into pools of 32
        batches whose rows are sorted by length (less padding), the batches shuffled again."""
        pool = 32 * batch_size
        while True:
            order = torch.randperm(len(self), generator=generator).tolist()
            batches = []
            for start in range(0, len(order), pool):
                rows = sorted(order[start:start + pool], key=lambda i: int(self.lengths[i]))
                batches += [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
            for b in torch.randperm(len(batches), generator=generator).tolist():
                yield batches[b]

    def ordered_batches(self, batch_size: int):
        """Every utterance once, by length (less padding), ``batch_size`` a batch."""
        order = np.argsort(self.lengths, kind="stable").tolist()
        for start in range(0, len(order), batch_size):
            yield order[start:start + batch_size]


def predict(task: ProbeTask, probe: Probe, data: FeatureSet, batch_size: int) -> dict:
    """``{utt: output}`` of the probe (eval mode) on every utterance of ``data``."""
    probe.eval()
    outputs = {}
    with torch.inference_mode():
        for rows in data.ordered_batches(batch_size):
            states, lengths, _ = data.batch(rows)
            values = task.outputs(probe.head, probe.features(states), lengths)
            outputs.update(zip((data.utterances[i] for i in rows), values))
    probe.train()
    return outputs


def better(task: ProbeTask, value: float, best: float | None) -> bool:
    """Whether dev figure ``value`` improves on ``best`` (None: nothing yet)."""
    return best is None or (value > best if task.dev_higher_is_better else value < best)


def train_probe(task: ProbeTask, train: FeatureSet, dev: FeatureSet, seed: int, log_path: Path,
                progress: bool) -> tuple[Probe, dict]:
    """Train a probe for ``task.settings``; returns it at its best dev figure and ``{"update", "value"}`` of that."""
    settings = task.settings
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    probe = Probe(LayerWeightedSum(train.num_states), task.head(train.dim))
    optimizer = torch.optim.AdamW(probe.parameters(), lr=settings.lr)
    warmup = max(1, settings.updates // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: min(1.0, (update + 1) / warmup))
    best, best_state, history = None, None, []
    batches = train.training_batches(settings.batch_size, generator)
    log_path.unlink(missing_ok=True)
    running = []
    for update in tqdm(range(1, settings.updates + 1), desc=task.name, disable=not progress, unit="update"):
        states, lengths, targets = train.batch(next(batches))
        loss = task.loss(probe.head, probe.features(states), lengths, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(float(loss.detach()))
        if update % settings.valid_interval == 0 or update == settings.updates:
            value = task.dev_figure(predict(task, probe, dev, settings.batch_size), dev.targets)
            record = {"update": update, "train_loss": float(np.mean(running)), f"dev_{task.dev_metric}": value}
            running = []
            history.append(record)
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            logger.info("%s update %d: train loss %.4f, dev %s %.4f", task.name, update, record["train_loss"],
                        task.dev_metric, value)
            if better(task, value, best):
                best, best_state = value, {"update": update, "value": value,
                                           "state": copy.deepcopy(probe.state_dict())}
    probe.load_state_dict(best_state.pop("state"))
    probe.eval()
    return probe, best_state


def sets_at_rate(sets: tuple[str, ...], data_root: Path, sample_rate: int) -> tuple[str, ...]:
    """A task's ``16k/...`` sets at ``sample_rate`` where the data has them (mini_music's ``24k/`` dirs for a
    24 kHz upstream); the others stay and are resampled as they are read (with a note in the log)."""
    prefix = f"{sample_rate // 1000}k/"
    return tuple(prefix + s[4:] if s.startswith("16k/") and (data_root / (prefix + s[4:])).is_dir() else s
                 for s in sets)


def check_inputs(upstream: str, tasks: list[str], data_root: Path, allow_empty_classes: bool = False) -> None:
    """Open ``upstream`` and read every task's label set, labels and trials; the first problem is raised
    (naming the path, file and line) before anything is trained."""
    from audiossl.eval.superb.upstreams import open_upstream

    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown:
        raise ConfigError(f"unknown SUPERB tasks {unknown}; known: {', '.join(TASK_NAMES)}")
    opened = open_upstream(upstream)
    for name in tasks:
        task = build_task(name, TaskSettings())
        task.sets = sets_at_rate(task.sets, data_root, opened.sample_rate)
        task.prepare(data_root, allow_empty_classes)
        for data_dir in task.sets:
            task.targets(data_root / data_dir)
        logger.info("%s: %s", name, ", ".join(f"{s}" for s in task.sets))
    logger.info("upstream %s: %d hidden states of sizes %s at %g frames/s; the inputs of %s are readable", upstream,
                opened.num_states, sorted(set(opened.hidden_sizes)), opened.frame_rate, ", ".join(tasks))


def run_task(name: str, settings: TaskSettings, upstream: Upstream, upstream_name: str, data_root: str | os.PathLike,
             cache_root: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0,
             allow_empty_classes: bool = False, progress: bool = False) -> dict:
    """Train and score task ``name`` on ``upstream``; writes ``out_dir`` and returns what results.json holds."""
    from audiossl.eval.utterance import cpu_name, plot_layer_weights, start_output

    task = build_task(name, settings)
    data_root, out_dir = Path(data_root), Path(out_dir)
    task.sets = sets_at_rate(task.sets, data_root, upstream.sample_rate)
    task.prepare(data_root, allow_empty_classes)
    dirs = [data_root / s for s in task.sets]
    targets = [task.targets(d) for d in dirs]  # label errors surface before any compute
    started = time.time()
    train, dev, test = (FeatureSet(hidden_states(cache_root, upstream, d, task.level, progress=progress), t)
                        for d, t in zip(dirs, targets))
    cached = time.time()
    start_output(out_dir)
    probe, chosen = train_probe(task, train, dev, seed, out_dir / "train.jsonl", progress)
    trained = time.time()
    figures = task.evaluate(predict(task, probe, test, settings.batch_size), test.targets, dirs[2], out_dir)
    weights = {"layers": list(probe.featurizer.layers), "weights": [float(w) for w in probe.featurizer.layer_weights()]}
    plot_layer_weights(weights, out_dir / "layer_weights.png")
    torch.save(probe.state_dict(), out_dir / "probe.pt")
    results = {"task": name, "title": task.title, "upstream": upstream_name, "upstream_path": upstream.name,
               "upstream_identity": upstream.identity, "metric": task.metric, "value": figures[task.metric],
               "higher_is_better": task.higher_is_better,
               "dev": {"metric": task.dev_metric, "value": chosen["value"], "update": chosen["update"]},
               "figures": figures, "sets": [str(d) for d in dirs], "settings": asdict(settings), "seed": seed,
               "layer_weights": weights, "hidden_state_seconds": round(cached - started, 1),
               "train_seconds": round(trained - cached, 1), "cpu": cpu_name()}
    write_text_atomic(out_dir / "results.json", json.dumps(results, indent=1) + "\n")
    logger.info("%s on %s: test %s %.4f (dev %s %.4f at update %d)", name, upstream_name, task.metric,
                figures[task.metric], task.dev_metric, chosen["value"], chosen["update"])
    return results
