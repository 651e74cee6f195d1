"""Frame label tables: one Kaldi text table line per utterance, ``utt 12 12 5 ...``.

The format of fairseq HuBERT's ``.km`` files with the utterance id in front, so tables
sort, merge and check like any other data dir table. An utterance of zero frames is a
line holding only its id. Labels of K codebooks (residual VQ codes) write each frame's K ids
joined by commas, ``utt 12,7,3 12,9,0 ...``: read back as ``(frames, K)`` arrays.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from audiossl.data.kaldi_dir import DataDirError, check_complete, merge_tables, read_table, write_table
from audiossl.errors import UserError

_PREVIEW = 5


class LabelError(UserError, ValueError):
    """A label table problem; the message names the file and the utterance."""


def _preview(utts: list[str]) -> str:
    shown = ", ".join(f"'{u}'" for u in utts[:_PREVIEW])
    return shown + (f" and {len(utts) - _PREVIEW} more" if len(utts) > _PREVIEW else "")


def write_labels(path: str | os.PathLike, labels: dict[str, np.ndarray]) -> None:
    """Write ``{utt: labels (frames,) or (frames, K) int}`` sorted by utterance, atomically."""
    table = {}
    for utt, seq in labels.items():
        seq = np.asarray(seq)
        if seq.ndim not in (1, 2) or not np.issubdtype(seq.dtype, np.integer):
            raise LabelError(f"{path}: labels of utterance '{utt}' must be a 1-D or 2-D integer array, "
                             f"got shape {seq.shape} dtype {seq.dtype}")
        frames = seq.tolist() if seq.ndim == 1 else [",".join(map(str, frame)) for frame in seq.tolist()]
        table[utt] = " ".join(map(str, frames))
    write_table(path, table)


def read_labels(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a label table: ``{utt: labels (frames,) or (frames, K) int64}`` in file order.

    Every utterance of a file has the same codebook count K; one that differs is an error naming it.
    """
    try:
        return _parse_labels(read_table(path), path)
    except DataDirError as err:
        raise LabelError(str(err)) from err


def _parse_labels(table: dict[str, str], path) -> dict[str, np.ndarray]:
    labels = {}
    codebooks, first = None, None
    for utt, value in table.items():
        frames = value.split()
        try:
            if frames and "," in frames[0]:
                seq = np.array([frame.split(",") for frame in frames], dtype=np.int64)
            else:
                seq = np.array(frames, dtype=np.int64)
        except ValueError:
            raise LabelError(f"{path}: utterance '{utt}': labels must be integers, or the same number of "
                             f"comma-joined integers in every frame, got '{value[:40]}'") from None
        if frames:
            count = 1 if seq.ndim == 1 else seq.shape[1]
            if codebooks is None:
                codebooks, first = count, utt
            elif count != codebooks:
                raise LabelError(f"{path}: utterance '{utt}' has {count} codebook(s) per frame, utterance "
                                 f"'{first}' {codebooks}")
        labels[utt] = seq
    return labels


def num_codebooks(labels: dict[str, np.ndarray]) -> int:
    """K of a label table read by :func:`read_labels` (1 for plain labels)."""
    for seq in labels.values():
        if len(seq):
            return 1 if seq.ndim == 1 else seq.shape[1]
    return 1


def merge_label_files(paths) -> dict[str, np.ndarray]:
    """Union of per-job label tables; an utterance in two of them is an error naming both."""
    paths = list(paths)
    try:
        return _parse_labels(merge_tables(paths), ", ".join(map(str, paths)))
    except DataDirError as err:
        raise LabelError(str(err)) from err


def check_coverage(labels: dict[str, np.ndarray], utterances, source_name: str) -> None:
    """Raise :class:`LabelError` naming the ``utterances`` that ``labels`` (read from ``source_name``) lacks."""
    missing = sorted(set(utterances) - set(labels))
    if missing:
        raise LabelError(f"{source_name}: no labels for {len(missing)} utterance(s): {_preview(missing)}")


def check_label_lengths(labels: dict[str, np.ndarray], expected_frames: dict[str, int], source_name: str) -> None:
    """Require exactly ``expected_frames[utt]`` labels for every utterance of ``expected_frames``.

    Utterances of ``labels`` beyond ``expected_frames`` are allowed. Raises :class:`LabelError`
    naming ``source_name`` (the label file), the missing utterances, and for each mismatch
    the utterance and both lengths.
    """
    missing = sorted(u for u in expected_frames if u not in labels)
    wrong = [f"'{u}' has {len(labels[u])} labels, expected {expected_frames[u]} frames"
             for u in sorted(expected_frames) if u in labels and len(labels[u]) != expected_frames[u]]
    problems = []
    if wrong:
        more = f" (and {len(wrong) - _PREVIEW} more)" if len(wrong) > _PREVIEW else ""
        problems.append(f"{len(wrong)} utterance(s) of the wrong length: " + "; ".join(wrong[:_PREVIEW]) + more)
    if missing:
        problems.append(f"no labels for {len(missing)} utterance(s): {_preview(missing)}")
    if problems:
        raise LabelError(f"{source_name}: " + "; ".join(problems))


def read_frame_counts(path: str | os.PathLike) -> dict[str, int]:
    """Read a data dir's ``utt2num_frames`` table: ``{utt: frames}``."""
    try:
        check_complete(Path(path).parent)
        table = read_table(path)
    except DataDirError as err:
        raise LabelError(str(err)) from err
    counts = {}
    for utt, value in table.items():
        if not value.isdigit():
            raise LabelError(f"{path}: utterance '{utt}': expected a number of frames, got '{value}'")
        counts[utt] = int(value)
    return counts


def check_label_range(labels: dict[str, np.ndarray], num_classes: int, source_name: str = "labels") -> None:
    """Require every label id of ``labels`` (``(frames,)`` or ``(frames, K)`` each) in ``[0, num_classes)``.

    Raises :class:`LabelError` naming ``source_name``, the first utterance at fault, its id and the
    largest id of the table (the class count that would hold them all is one more).
    """
    bad = [utt for utt, seq in labels.items() if seq.size and (seq.min() < 0 or seq.max() >= num_classes)]
    if bad:
        seq = labels[bad[0]]
        largest = max(int(seq.max()) for seq in labels.values() if seq.size)
        raise LabelError(f"{source_name}: utterance '{bad[0]}' has label {seq.min() if seq.min() < 0 else seq.max()}, "
                         f"outside [0, {num_classes}) ({len(bad)} utterance(s) of such labels; the largest id is "
                         f"{largest})")


def label_counts(labels: dict[str, np.ndarray], num_clusters: int) -> np.ndarray:
    """Frames per cluster over all utterances: (num_clusters,) int64."""
    check_label_range(labels, num_clusters)
    counts = np.zeros(num_clusters, dtype=np.int64)
    for seq in labels.values():
        counts += np.bincount(seq, minlength=num_clusters)
    return counts


def describe_counts(counts: np.ndarray) -> str:
    """One log line of cluster usage: clusters used, frames per cluster, perplexity."""
    total = int(counts.sum())
    if total == 0:
        return f"0 of {len(counts)} clusters used (no frames)"
    p = counts[counts > 0] / total
    perplexity = float(np.exp(-(p * np.log(p)).sum()))
    return (f"{int((counts > 0).sum())} of {len(counts)} clusters used; frames per cluster "
            f"min {int(counts.min())} median {int(np.median(counts))} max {int(counts.max())}; "
            f"perplexity {perplexity:.1f}")
