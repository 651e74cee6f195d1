"""One table across upstreams and tasks: ``results.csv`` and a section of ``RESULTS.md``, best per column in bold."""
from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from audiossl.atomic import write_text_atomic
from audiossl.eval.results import ResultsError, read_json, shown, write_section
from audiossl.eval.superb.tasks import TASK_NAMES

logger = logging.getLogger(__name__)

# task → (column title, scale of the figure in the table); SUPERB's columns first, then MARBLE's
COLUMNS = {"pr": ("PR PER % ↓", 100), "asr": ("ASR WER % ↓", 100), "ks": ("KS Acc % ↑", 100),
           "ic": ("IC Acc % ↑", 100), "sid": ("SID Acc % ↑", 100), "asv": ("ASV EER % ↓", 100),
           "instrument": ("Instrument Acc % ↑", 100), "pitch": ("Pitch Acc % ↑", 100),
           "tagging": ("Tagging ROC-AUC ↑", 1), "key": ("Key score ↑", 1)}
TIME_COLUMNS = ["minutes", "cpu"]

PAGE_HEAD = ["# SUPERB-style evaluation: frozen upstreams, learned weighted sum of layers, light heads", "",
             "The audio is synthetic (speech engines with shifted pitch, formants and tempo; a General MIDI "
             "soundfont): figures on it compare upstreams on these sets only and do not transfer to real speech "
             "or music.", ""]


@dataclass
class Row:
    """One upstream's test figures by task, and the minutes its hidden states and probes took on ``cpu``."""
    values: dict[str, float]
    minutes: float
    cpu: str


def higher_is_better(task: str) -> bool:
    """Whether a higher figure of ``task`` is better (its column title's arrow)."""
    return COLUMNS[task][0].endswith("↑")


def collect(exp_dir: str | os.PathLike, cpu: str) -> dict[str, Row]:
    """``{upstream: Row}`` of every ``<exp_dir>/<upstream>/<task>/results.json`` (``cpu`` where one does not name its CPU)."""
    found: dict[str, dict[str, dict]] = {}
    origin: dict[tuple[str, str], Path] = {}
    for path in sorted(Path(exp_dir).glob("*/*/results.json")):
        results = read_json(path, "task", "upstream", "value", "hidden_state_seconds", "train_seconds")
        if results["task"] not in TASK_NAMES:
            raise ResultsError(f"{path}: not a SUPERB task's results")
        key = results["upstream"], results["task"]
        if key in origin:  # one cell, two figures (an upstream named alike in two dirs)
            raise ResultsError(f"{path}: results of {key[1]} for upstream '{key[0]}', as {origin[key]}")
        origin[key] = path
        found.setdefault(results["upstream"], {})[results["task"]] = results
    return {upstream: Row({t: r["value"] for t, r in tasks.items()},
                          sum(r["hidden_state_seconds"] + r["train_seconds"] for r in tasks.values()) / 60,
                          next(iter(tasks.values())).get("cpu", cpu))
            for upstream, tasks in found.items()}


def read_csv(path: str | os.PathLike) -> dict[str, Row]:
    """``{upstream: Row}`` of a ``results.csv`` this module wrote (none when the file does not exist)."""
    path = Path(path)
    if not path.exists():
        return {}
    titles = {title: task for task, (title, _) in COLUMNS.items()}
    rows = {}
    for line, record in enumerate(csv.DictReader(io.StringIO(path.read_text())), start=2):
        unknown = sorted(set(record) - {"upstream", *titles, *TIME_COLUMNS})
        if unknown or not set(TIME_COLUMNS) <= set(record):
            raise ResultsError(f"{path}: columns {sorted(record)} are not those of a SUPERB table "
                               f"(upstream, task titles, {', '.join(TIME_COLUMNS)})")
        try:
            values = {titles[k]: float(v) for k, v in record.items() if k in titles and v}
            rows[record["upstream"]] = Row(values, float(record["minutes"]), record["cpu"])
        except ValueError as error:
            raise ResultsError(f"{path}:{line}: {error}") from None
    return rows


def table_rows(rows: dict[str, Row]) -> tuple[list[str], list[str], list[list[str]]]:
    """Tasks any upstream has, their column titles and the Markdown cells (the best shown figure of each
    column bold, with two upstreams or more)."""
    tasks = [t for t in TASK_NAMES if any(t in r.values for r in rows.values())]
    cells = [[shown(r.values[t], COLUMNS[t][1]) if t in r.values else "–" for t in tasks] for r in rows.values()]
    for column, task in enumerate(tasks):
        present = [r.values[task] for r in rows.values() if task in r.values]
        best = shown(max(present) if higher_is_better(task) else min(present), COLUMNS[task][1])
        for row in cells:
            if row[column] == best and len(rows) > 1:
                row[column] = f"**{best}**"
    return tasks, [COLUMNS[t][0] for t in tasks], cells


def write_table(exp_dir: str | os.PathLike, results_md: str | os.PathLike, csv_path: str | os.PathLike,
                section: str, command: str, cpu: str) -> list[str]:
    """Write the table of every upstream under ``exp_dir``, and of every other upstream already in
    ``csv_path`` (earlier runs, other machines), to ``csv_path`` and to ``section`` of ``results_md``;
    returns the section's lines."""
    kept = read_csv(csv_path)
    found = collect(exp_dir, cpu)
    if not found and not kept:
        raise ResultsError(f"{exp_dir}: no <upstream>/<task>/results.json, and no rows in {csv_path}")
    for upstream in sorted(set(kept) - set(found)):
        logger.info("%s: kept from %s (not under %s)", upstream, csv_path, exp_dir)
    rows = dict(sorted({**kept, **found}.items()))
    tasks, titles, cells = table_rows(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["upstream", *titles, *TIME_COLUMNS])
    for upstream, row in rows.items():
        writer.writerow([upstream, *(f"{row.values[t]:.6f}" if t in row.values else "" for t in tasks),
                         f"{row.minutes:.1f}", row.cpu])
    write_text_atomic(csv_path, buffer.getvalue())
    lines = ["| " + " | ".join(["Upstream", *titles]) + " |", "|" + "---|" * (len(titles) + 1)]
    lines += ["| " + " | ".join([upstream, *row]) + " |" for upstream, row in zip(rows, cells)]
    by_cpu: dict[str, list[str]] = {}
    for upstream, row in rows.items():
        by_cpu.setdefault(row.cpu, []).append(f"{upstream} {row.minutes:.1f} min")
    times = "; ".join(f"{', '.join(names)}, on {name}" for name, names in by_cpu.items())
    lines += ["", "Each figure is the test set's, of the probe state with the best dev figure (results.json "
              "names it). Time per upstream, hidden states and probe training over all its tasks (without "
              f"data preparation): {times}.", "", f"Produced by `{command}`."]
    write_section(results_md, section, lines, PAGE_HEAD)
    return lines
