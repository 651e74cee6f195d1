"""One table across upstreams and tasks: ``results.csv`` and a section of ``RESULTS.md``, best per column in bold."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from audiossl.atomic import write_text_atomic
from audiossl.eval.results import ResultsError, write_section
from audiossl.eval.superb.tasks import TASK_NAMES

# task → (column title, scale of the figure in the table); SUPERB's columns first, then MARBLE's
COLUMNS = {"pr": ("PR PER % ↓", 100), "asr": ("ASR WER % ↓", 100), "ks": ("KS Acc % ↑", 100),
           "ic": ("IC Acc % ↑", 100), "sid": ("SID Acc % ↑", 100), "asv": ("ASV EER % ↓", 100),
           "instrument": ("Instrument Acc % ↑", 100), "pitch": ("Pitch Acc % ↑", 100),
           "tagging": ("Tagging ROC-AUC ↑", 1), "key": ("Key score ↑", 1)}

PAGE_HEAD = ["# SUPERB-style evaluation: frozen upstreams, learned weighted sum of layers, light heads", "",
             "The audio is synthetic (speech engines with shifted pitch, formants and tempo; a General MIDI "
             "soundfont): figures on it compare upstreams on these sets only and do not transfer to real speech "
             "or music.", ""]


def collect(exp_dir: str | os.PathLike) -> dict[str, dict[str, dict]]:
    """``{upstream: {task: results}}`` of every ``<exp_dir>/<upstream>/<task>/results.json``."""
    found: dict[str, dict[str, dict]] = {}
    for path in sorted(Path(exp_dir).glob("*/*/results.json")):
        results = json.loads(path.read_text())
        if results.get("task") not in TASK_NAMES:
            raise ResultsError(f"{path}: not a SUPERB task's results")
        found.setdefault(results["upstream"], {})[results["task"]] = results
    if not found:
        raise ResultsError(f"{exp_dir}: no <upstream>/<task>/results.json")
    return found


def shown(task: str, value: float) -> str:
    """A figure as the table shows it: percentages with one decimal, others with three."""
    scale = COLUMNS[task][1]
    return f"{scale * value:.{1 if scale == 100 else 3}f}"


def table_rows(found: dict[str, dict[str, dict]]) -> tuple[list[str], list[list[str]], list[list[float | None]]]:
    """Header, Markdown cells (the best shown figure of each column bold, with two upstreams or more)
    and raw values of the tasks any upstream has."""
    tasks = [t for t in TASK_NAMES if any(t in r for r in found.values())]
    values = [[found[u][t]["value"] if t in found[u] else None for t in tasks] for u in found]
    cells = [[shown(t, v) if v is not None else "–" for t, v in zip(tasks, row)] for row in values]
    for column, task in enumerate(tasks):
        present = [row[column] for row in values if row[column] is not None]
        higher = next(found[u][task]["higher_is_better"] for u in found if task in found[u])
        best = shown(task, max(present) if higher else min(present))
        for row in cells:
            if row[column] == best and len(found) > 1:
                row[column] = f"**{best}**"
    return ["Upstream", *(COLUMNS[t][0] for t in tasks)], cells, values


def write_table(exp_dir: str | os.PathLike, results_md: str | os.PathLike, csv_path: str | os.PathLike,
                section: str, command: str, cpu: str) -> list[str]:
    """Write the table of every upstream under ``exp_dir`` to ``csv_path`` and to ``section`` of ``results_md``;
    returns the section's lines."""
    found = collect(exp_dir)
    header, cells, values = table_rows(found)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["upstream", *header[1:]])
    for upstream, row in zip(found, values):
        writer.writerow([upstream, *("" if v is None else f"{v:.6f}" for v in row)])
    write_text_atomic(csv_path, buffer.getvalue())
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([upstream, *row]) + " |" for upstream, row in zip(found, cells)]
    seconds = {u: sum(r["hidden_state_seconds"] + r["train_seconds"] for r in tasks.values())
               for u, tasks in found.items()}
    times = ", ".join(f"{u} {s / 60:.1f} min" for u, s in seconds.items())
    lines += ["", "Each figure is the test set's, of the probe state with the best dev figure (results.json "
              "names it). Time per upstream, hidden states and probe training over all its tasks (without "
              f"data preparation): {times}, on {cpu}.", "", f"Produced by `{command}`."]
    path = Path(results_md)
    if not path.exists() or not path.read_text().strip():
        write_text_atomic(path, "\n".join(PAGE_HEAD))
    write_section(path, section, lines)
    return lines
