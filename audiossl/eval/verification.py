"""Speaker verification: Kaldi-style trial lists and score files, equal error rate and minimum DCF.

A trial list has one ``<enroll-utt> <test-utt> target|nontarget`` line per trial (Kaldi's
``trials``, as in VoxCeleb's recipes); a score file one ``<enroll-utt> <test-utt> <score>``
line, a higher score meaning "more likely the same speaker".

Operating points: a trial is accepted when its score is at least the threshold. Every
distinct score is a threshold, plus +inf (reject everything); the miss rate (FNR) at a
threshold is the fraction of target trials scored below it, the false-alarm rate (FPR) the
fraction of nontarget trials scored at or above it. These are the points of
``sklearn.metrics.roc_curve`` (FNR = 1 - TPR), and tied scores stay in one point.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from audiossl.atomic import atomic_path
from audiossl.errors import UserError

LABELS = {"target": True, "nontarget": False}

Trial = tuple[str, str, bool]


class TrialsError(UserError, ValueError):
    """A malformed trial list or score file, or one naming unknown utterances; the message names file and line."""


def read_trials(path: str | os.PathLike) -> list[Trial]:
    """``[(enroll_utt, test_utt, is_target)]`` in file order from a Kaldi trial list."""
    trials = []
    with open(path, encoding="utf-8-sig") as f:   # a byte order mark is no part of the first utterance
        for number, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 3:
                raise TrialsError(f"{path}:{number}: expected '<enroll-utt> <test-utt> target|nontarget', "
                                  f"got {line.strip()!r}")
            enroll, test, label = fields
            if label not in LABELS:
                raise TrialsError(f"{path}:{number}: unknown label '{label}' (target or nontarget)")
            trials.append((enroll, test, LABELS[label]))
    return trials


def write_trials(path: str | os.PathLike, trials: Iterable[Trial]) -> None:
    """Write a Kaldi trial list, atomically, in the order given."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for enroll, test, is_target in trials:
            f.write(f"{enroll} {test} {'target' if is_target else 'nontarget'}\n")


def check_trials(trials: Sequence[Trial], utterances: Iterable[str], path: str | os.PathLike) -> None:
    """Raise :class:`TrialsError` naming ``path`` and the line of the first trial whose enrollment or
    test utterance is not in ``utterances`` (e.g. a data dir's), that compares an utterance with itself or
    that repeats a trial; or naming ``path`` when it lacks target or nontarget trials (EER and minDCF need both)."""
    known, lines = set(utterances), {}
    for number, (enroll, test, _) in enumerate(trials, 1):
        for utt in (enroll, test):
            if utt not in known:
                raise TrialsError(f"{path}:{number}: utterance '{utt}' is not in the data dir")
        if enroll == test:
            raise TrialsError(f"{path}:{number}: utterance '{enroll}' is both enrollment and test")
        if (enroll, test) in lines:  # it would weigh twice, and its scores file could not be read back
            raise TrialsError(f"{path}:{number}: trial '{enroll} {test}' repeats line {lines[enroll, test]}")
        lines[enroll, test] = number
    num_targets = sum(is_target for _, _, is_target in trials)
    if num_targets in (0, len(trials)):
        raise TrialsError(f"{path}: {num_targets} target and {len(trials) - num_targets} nontarget trials; "
                          "EER and minDCF need both")


def write_scores(path: str | os.PathLike, scores: Iterable[tuple[str, str, float]]) -> None:
    """Write ``<enroll-utt> <test-utt> <score>`` lines, atomically, in the order given."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for enroll, test, score in scores:
            f.write(f"{enroll} {test} {score:.6g}\n")


def read_scores(path: str | os.PathLike) -> dict[tuple[str, str], float]:
    """``{(enroll_utt, test_utt): score}`` in file order; a malformed, non-finite or repeated pair is an error."""
    scores: dict[tuple[str, str], float] = {}
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            try:
                enroll, test, value = fields
                score = float(value)
            except ValueError:
                raise TrialsError(f"{path}:{number}: expected '<enroll-utt> <test-utt> <score>', "
                                  f"got {line.strip()!r}") from None
            if not math.isfinite(score):
                raise TrialsError(f"{path}:{number}: score '{value}' is not a finite number")
            if (enroll, test) in scores:
                raise TrialsError(f"{path}:{number}: trial '{enroll} {test}' scored twice")
            scores[enroll, test] = score
    return scores


def trial_scores(trials: Sequence[Trial], scores: dict[tuple[str, str], float],
                 path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, is_target)``, each (num_trials,), in trial order; a trial without a score in
    ``scores`` (read from ``path``) is an error naming it."""
    values = []
    for enroll, test, _ in trials:
        if (enroll, test) not in scores:
            raise TrialsError(f"{path}: no score for trial '{enroll} {test}'")
        values.append(scores[enroll, test])
    return np.asarray(values, dtype=np.float64), np.asarray([t[2] for t in trials], dtype=bool)


def error_rates(scores, is_target) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fnr, fpr, thresholds)``, each (num_distinct_scores + 1,), thresholds ascending and ending at +inf.

    Args:
        scores: (num_trials,) float, higher for "same speaker".
        is_target: (num_trials,) bool; both kinds must be present.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_target = np.asarray(is_target, dtype=bool)
    if scores.shape != is_target.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {is_target.shape} must be 1-D and of one length")
    num_targets = int(is_target.sum())
    if num_targets in (0, len(is_target)):
        raise ValueError("both target and nontarget trials are needed")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    thresholds, first = np.unique(scores, return_inverse=True)
    targets_per_value = np.bincount(first, weights=is_target, minlength=len(thresholds))
    trials_per_value = np.bincount(first, minlength=len(thresholds))
    targets_below = np.concatenate([[0.0], np.cumsum(targets_per_value)])
    nontargets_below = np.concatenate([[0.0], np.cumsum(trials_per_value - targets_per_value)])
    num_nontargets = len(is_target) - num_targets
    fnr = targets_below / num_targets
    fpr = 1.0 - nontargets_below / num_nontargets
    return fnr, fpr, np.append(thresholds, np.inf)


def equal_error_rate(scores, is_target) -> tuple[float, float]:
    """``(eer, threshold)``: the rate at which miss and false-alarm rates are equal.

    The point is interpolated linearly between the two operating points whose
    FNR - FPR changes sign (the crossing of the ROC's straight segments with FNR = FPR);
    ``threshold`` is the threshold of whichever of the two is nearer to equal rates.
    Perfectly separated scores give 0, perfectly reversed ones 1.
    """
    fnr, fpr, thresholds = error_rates(scores, is_target)
    gap = fnr - fpr                                   # rises from -1 to 1
    i = int(np.flatnonzero(gap >= 0)[0])
    if gap[i] == 0:
        return float(fnr[i]), float(thresholds[i])
    share = -gap[i - 1] / (gap[i] - gap[i - 1])
    eer = fnr[i - 1] + share * (fnr[i] - fnr[i - 1])
    nearer = i if gap[i] < -gap[i - 1] else i - 1
    return float(eer), float(thresholds[nearer])


def min_dcf(scores, is_target, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """``(min_dcf, threshold)``: the lowest normalized detection cost over all thresholds.

    The cost ``c_miss * p_target * FNR + c_fa * (1 - p_target) * FPR`` is divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of always accepting or always
    rejecting, as in NIST SRE and Kaldi's ``compute_min_dcf.py``; so it lies in [0, 1].
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
    fnr, fpr, thresholds = error_rates(scores, is_target)
    cost = c_miss * p_target * fnr + c_fa * (1.0 - p_target) * fpr
    best = int(np.argmin(cost))
    return float(cost[best] / min(c_miss * p_target, c_fa * (1.0 - p_target))), float(thresholds[best])


def verification_metrics(scores, is_target, p_targets: Sequence[float] = (0.01, 0.05)) -> dict[str, float]:
    """``{"eer": ..., "min_dcf_0.01": ..., ...}``: EER and minimum DCF (c_miss = c_fa = 1) at each p_target."""
    metrics = {"eer": equal_error_rate(scores, is_target)[0]}
    for p_target in p_targets:
        metrics[f"min_dcf_{p_target:g}"] = min_dcf(scores, is_target, p_target)[0]
    return metrics


def cosine_scores(trials: Sequence[Trial], embeddings: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine similarity of each trial's two embeddings; (num_trials,). ``embeddings``: utt → (dim,)."""
    utts = sorted({u for enroll, test, _ in trials for u in (enroll, test)})
    index = {u: i for i, u in enumerate(utts)}
    matrix = np.stack([np.asarray(embeddings[u], dtype=np.float64) for u in utts])
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    enroll = matrix[[index[e] for e, _, _ in trials]]
    test = matrix[[index[t] for _, t, _ in trials]]
    return np.einsum("ij,ij->i", enroll, test)


def score_trials(trials: Sequence[Trial], embeddings: dict[str, np.ndarray], scores_path: str | os.PathLike | None = None
                 ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Cosine scores ``(num_trials,)``, target flags ``(num_trials,)`` and :func:`verification_metrics` of
    ``trials`` with ``embeddings`` (utt → ``(dim,)``); the scores are also written to ``scores_path`` if given."""
    scores = cosine_scores(trials, embeddings)
    if scores_path is not None:
        write_scores(scores_path, ((enroll, test, float(score)) for (enroll, test, _), score in zip(trials, scores)))
    is_target = np.array([target for _, _, target in trials], dtype=bool)
    return scores, is_target, verification_metrics(scores, is_target)


def score_file_metrics(trials_path: str | os.PathLike, scores_path: str | os.PathLike,
                       p_targets: Sequence[float] = (0.01, 0.05)) -> dict[str, float]:
    """:func:`verification_metrics` of a score file against a trial list (every trial must be scored)."""
    trials = read_trials(trials_path)
    scores, is_target = trial_scores(trials, read_scores(scores_path), Path(scores_path))
    return verification_metrics(scores, is_target, p_targets)
