"""Training curves: the figures a run logs (``updates.jsonl``, ``valid.jsonl``) against the update, as a PNG.

The trainer redraws ``<exp_dir>/training_curves.png`` at each validation and at the end of a run;
``python -m audiossl.bin.plot_curves`` draws several runs on the same axes (pretrained against
scratch, one family against another). One panel per figure (loss first), training as a moving
average over ``smoothing`` updates over the raw values in a lighter line (learning rates as they
are), validation as points.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from audiossl.atomic import atomic_path
from audiossl.errors import UserError

COLUMNS = 3


def read_log(path: Path) -> list[dict[str, float]]:
    """The JSON lines of a run's ``updates.jsonl`` or ``valid.jsonl`` ([] where there is none); a last
    line cut short (a run killed while writing it) is left out."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number < len(lines):
                raise UserError(f"{path}:{number}: not a JSON record ({err.msg})") from None
    return records


def _figures(records: list[dict[str, float]]) -> list[str]:
    """The logged figures in order of appearance, ``update`` left out."""
    return list(dict.fromkeys(key for record in records for key in record if key != "update"))


def _series(records: list[dict[str, float]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(updates, values)`` of ``key`` where it was logged (non-finite values are gaps)."""
    points = [(r["update"], r[key]) for r in records if key in r]
    updates = np.array([p[0] for p in points], dtype=float)
    values = np.array([p[1] if p[1] is not None and math.isfinite(p[1]) else np.nan for p in points], dtype=float)
    return updates, values


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last ``window`` finite values at each point (fewer at the start)."""
    finite = np.isfinite(values)
    sums = np.cumsum(np.where(finite, values, 0.0))
    counts = np.cumsum(finite)
    sums[window:], counts[window:] = sums[window:] - sums[:-window], counts[window:] - counts[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def plot_curves(runs: dict[str, Path], path: str | Path, smoothing: int = 25) -> Path:
    """Draw the runs' curves (``{label: exp_dir}``) into the PNG ``path``, atomically; returns ``path``.

    Raises:
        UserError: no run has logged an update yet, or a log holds a line that is not JSON.
    """
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    logs = {label: (read_log(Path(d) / "updates.jsonl"), read_log(Path(d) / "valid.jsonl")) for label, d in runs.items()}
    figures = _figures([r for train, valid in logs.values() for r in train + valid])
    if not figures:
        raise UserError(f"no updates logged in {', '.join(str(d) for d in runs.values())}")
    figures.sort(key=lambda key: key != "loss")  # loss first, the rest as logged
    rows = math.ceil(len(figures) / COLUMNS)
    figure, axes = pyplot.subplots(rows, COLUMNS, figsize=(4.2 * COLUMNS, 2.8 * rows), squeeze=False)
    colors = pyplot.rcParams["axes.prop_cycle"].by_key()["color"]
    for panel, key in zip(axes.flat, figures):
        for (label, (train, valid)), color in zip(logs.items(), colors * len(logs)):
            updates, values = _series(train, key)
            if updates.size and key.startswith("lr"):  # a schedule, not a noisy measurement
                panel.plot(updates, values, color=color, linewidth=1.2, label=f"{label} train")
            elif updates.size:
                panel.plot(updates, values, color=color, alpha=0.25, linewidth=0.6)
                panel.plot(updates, _moving_average(values, smoothing), color=color, linewidth=1.2, label=f"{label} train")
            updates, values = _series(valid, key)
            if updates.size:
                panel.plot(updates, values, color=color, marker="o", markersize=3, linestyle="--", linewidth=1,
                           label=f"{label} valid")
        panel.set_title(key, fontsize=9)
        panel.tick_params(labelsize=7)
        panel.grid(alpha=0.3)
    for panel in axes.flat[len(figures):]:
        panel.axis("off")
    axes.flat[0].legend(fontsize=7)
    for panel in axes[-1]:
        panel.set_xlabel("update", fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format="png")
    pyplot.close(figure)
    return Path(path)
