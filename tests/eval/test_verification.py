"""Verification metrics against hand-computed answers and scikit-learn's ROC; trial and score files."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from audiossl.eval.verification import (TrialsError, check_trials, cosine_scores, equal_error_rate, error_rates,
                                        min_dcf, read_scores, read_trials, score_file_metrics, trial_scores,
                                        verification_metrics, write_scores, write_trials)

# Sorted: 0.1 n, 0.3 n, 0.4 T, 0.5 n, 0.6 n, 0.8 T, 0.9 T. Accepting scores >= threshold:
#   threshold  0.1   0.3   0.4   0.5   0.6   0.8   0.9   inf
#   FNR        0     0     0     1/3   1/3   1/3   2/3   1
#   FPR        1     3/4   1/2   1/2   1/4   0     0     0
# FNR = FPR between 0.5 and 0.6: 2/3 of the way, at 1/3 (0.6 is nearer: |1/12| < |-1/6|).
HAND_SCORES = [0.9, 0.5, 0.1, 0.4, 0.3, 0.8, 0.6]
HAND_TARGETS = [True, False, False, True, False, True, False]


def test_error_rates_by_hand():
    fnr, fpr, thresholds = error_rates(HAND_SCORES, HAND_TARGETS)
    np.testing.assert_allclose(fnr, [0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(fpr, [1, 3 / 4, 1 / 2, 1 / 2, 1 / 4, 0, 0, 0])
    np.testing.assert_allclose(thresholds, [0.1, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9, np.inf])


def test_equal_error_rate_by_hand():
    eer, threshold = equal_error_rate(HAND_SCORES, HAND_TARGETS)
    assert eer == pytest.approx(1 / 3)
    assert threshold == 0.6


@pytest.mark.parametrize("p_target,c_miss,c_fa,expected,threshold", [
    (0.5, 1, 1, 1 / 3, 0.8),      # FNR + FPR, least at 0.8
    (0.9, 1, 1, 1 / 2, 0.4),      # (0.9 FNR + 0.1 FPR) / 0.1 = 9 FNR + FPR, least at 0.4
    (0.01, 1, 1, 1 / 3, 0.8),     # FNR + 99 FPR
    (0.5, 1, 3, 1 / 3, 0.8),      # (0.5 FNR + 1.5 FPR) / 0.5
    (0.5, 10, 1, 1 / 2, 0.4),     # (5 FNR + 0.5 FPR) / 0.5 = 10 FNR + FPR
])
def test_min_dcf_by_hand(p_target, c_miss, c_fa, expected, threshold):
    assert min_dcf(HAND_SCORES, HAND_TARGETS, p_target, c_miss, c_fa) == (pytest.approx(expected), threshold)


def test_perfect_and_reversed_scores():
    targets = np.array([False] * 5 + [True] * 3)
    scores = np.arange(8.0)
    assert equal_error_rate(scores, targets) == (0.0, 5.0)
    assert min_dcf(scores, targets, 0.01) == (0.0, 5.0)
    assert equal_error_rate(-scores, targets)[0] == 1.0
    assert min_dcf(-scores, targets, 0.01)[0] == 1.0
    assert min_dcf(-scores, targets, 0.01)[1] == np.inf   # reject everything


def test_tied_scores_form_one_operating_point():
    # Thresholds 0, 1, inf: (FNR, FPR) = (0, 1), (0, 1/2), (1, 0); the segment from the second
    # to the third crosses FNR = FPR at 1/3. Splitting the tie would give 0 or 1/2 instead.
    assert equal_error_rate([1, 1, 1, 0], [True, True, False, False]) == (pytest.approx(1 / 3), 1.0)
    assert equal_error_rate([1, 1], [True, False]) == (pytest.approx(0.5), 1.0)
    assert min_dcf([1, 1, 1, 0], [True, True, False, False], 0.5) == (pytest.approx(0.5), 1.0)
    assert equal_error_rate(np.zeros(6), [True, False] * 3)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(6))
def test_against_sklearn_roc_curve(seed):
    rng = np.random.default_rng(seed)
    num_targets, num_nontargets = rng.integers(5, 300, size=2)
    scores = np.concatenate([rng.normal(rng.uniform(0, 2), 1, num_targets), rng.normal(0, 1, num_nontargets)])
    if seed % 2:
        scores = np.round(scores, 1)                           # many ties
    targets = np.arange(len(scores)) < num_targets
    order = rng.permutation(len(scores))
    scores, targets = scores[order], targets[order]

    fpr, tpr, _ = roc_curve(targets, scores)
    expected_eer = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    eer, threshold = equal_error_rate(scores, targets)
    assert eer == pytest.approx(expected_eer, abs=1e-9)
    accepted = scores >= threshold                           # the returned threshold is near the EER
    step = 1 / min(num_targets, num_nontargets)
    assert abs((~accepted[targets]).mean() - eer) <= max(step, 0.05)
    assert abs(accepted[~targets].mean() - eer) <= max(step, 0.05)

    fpr, tpr, sk_thresholds = roc_curve(targets, scores, drop_intermediate=False)
    for p_target in (0.01, 0.05, 0.5):
        costs = (p_target * (1 - tpr) + (1 - p_target) * fpr) / min(p_target, 1 - p_target)
        value, threshold = min_dcf(scores, targets, p_target)
        assert value == pytest.approx(costs.min(), abs=1e-12)
        assert costs[sk_thresholds == threshold][0] == pytest.approx(value, abs=1e-12)


def test_error_rates_need_both_kinds_of_trial():
    with pytest.raises(ValueError, match="both target and nontarget"):
        equal_error_rate([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="one length"):
        min_dcf([0.1, 0.2], [True], 0.01)
    with pytest.raises(ValueError, match="p_target"):
        min_dcf([0.1, 0.2], [True, False], 1.0)


def test_cosine_scores_and_metrics():
    embeddings = {"a1": np.array([1.0, 0.0]), "a2": np.array([2.0, 0.1]), "b1": np.array([0.0, 3.0])}
    trials = [("a1", "a2", True), ("a1", "b1", False), ("a2", "b1", False)]
    scores = cosine_scores(trials, embeddings)
    np.testing.assert_allclose(scores, [2 / np.hypot(2, 0.1), 0.0, 0.1 / np.hypot(2, 0.1)])
    assert verification_metrics(scores, [t[2] for t in trials]) == {"eer": 0.0, "min_dcf_0.01": 0.0,
                                                                      "min_dcf_0.05": 0.0}


# ------------------------------------------------------------------ files

def test_trials_and_scores_round_trip(tmp_path):
    trials = [("spk1-u2", "spk1-u1", True), ("spk1-u1", "spk2-u1", False), ("spk2-u2", "spk2-u1", True)]
    write_trials(tmp_path / "trials", trials)
    assert (tmp_path / "trials").read_text().splitlines()[1] == "spk1-u1 spk2-u1 nontarget"
    assert read_trials(tmp_path / "trials") == trials
    write_scores(tmp_path / "scores", [(e, t, s) for (e, t, _), s in zip(trials, (0.75, -0.125, 0.5))])
    scores = read_scores(tmp_path / "scores")
    assert scores == {("spk1-u2", "spk1-u1"): 0.75, ("spk1-u1", "spk2-u1"): -0.125, ("spk2-u2", "spk2-u1"): 0.5}
    values, targets = trial_scores(trials, scores, tmp_path / "scores")
    assert values.tolist() == [0.75, -0.125, 0.5] and targets.tolist() == [True, False, True]
    assert score_file_metrics(tmp_path / "trials", tmp_path / "scores")["eer"] == 0.0


def test_trials_and_scores_saved_with_a_byte_order_mark_read_as_without(tmp_path):
    """A list saved by a Windows editor: the mark was read into the first utterance, unseen in the message
    that named it missing from the data dir."""
    (tmp_path / "trials").write_text("spk1-u2 spk1-u1 target\nspk1-u1 spk2-u1 nontarget\n", encoding="utf-8-sig")
    (tmp_path / "scores").write_text("spk1-u2 spk1-u1 0.5\nspk1-u1 spk2-u1 0.25\n", encoding="utf-8-sig")
    trials = read_trials(tmp_path / "trials")
    assert trials == [("spk1-u2", "spk1-u1", True), ("spk1-u1", "spk2-u1", False)]
    check_trials(trials, ["spk1-u1", "spk1-u2", "spk2-u1"], tmp_path / "trials")
    assert read_scores(tmp_path / "scores") == {("spk1-u2", "spk1-u1"): 0.5, ("spk1-u1", "spk2-u1"): 0.25}


@pytest.mark.parametrize("text,message", [
    ("a b target\na b\n", r"trials:2: expected '<enroll-utt> <test-utt> target\|nontarget'"),
    ("a b target\nc d nontarget\ne f same\n", r"trials:3: unknown label 'same'"),
])
def test_bad_trial_lines_are_named(tmp_path, text, message):
    (tmp_path / "trials").write_text(text)
    with pytest.raises(TrialsError, match=message):
        read_trials(tmp_path / "trials")


def test_check_trials_names_the_line(tmp_path):
    trials = [("a1", "a2", True), ("a1", "b9", False)]
    check_trials([*trials[:1], ("a1", "b1", False)], ["a1", "a2", "b1"], "data/trials")
    with pytest.raises(TrialsError, match=r"data/trials:2: utterance 'b9' is not in the data dir"):
        check_trials(trials, ["a1", "a2", "b1"], "data/trials")
    with pytest.raises(TrialsError, match=r"data/trials:1: utterance 'a1' is both enrollment and test"):
        check_trials([("a1", "a1", True)], ["a1"], "data/trials")
    with pytest.raises(TrialsError, match=r"data/trials:3: trial 'a1 a2' repeats line 1"):
        check_trials([("a1", "a2", True), ("a1", "b1", False), ("a1", "a2", True)], ["a1", "a2", "b1"], "data/trials")


@pytest.mark.parametrize("trials, counts", [([], "0 target and 0 nontarget"),
                                            ([("a1", "a2", True)], "1 target and 0 nontarget"),
                                            ([("a1", "b1", False), ("a2", "b1", False)], "0 target and 2 nontarget")])
def test_trials_without_both_kinds_are_refused_before_scoring(trials, counts):
    with pytest.raises(TrialsError, match=rf"^data/trials: {counts} trials; EER and minDCF need both$"):
        check_trials(trials, ["a1", "a2", "b1"], "data/trials")


@pytest.mark.parametrize("text,message", [
    ("a b 0.5\na c\n", r"scores:2: expected '<enroll-utt> <test-utt> <score>'"),
    ("a b high\n", r"scores:1: expected"),
    ("a b nan\n", r"scores:1: score 'nan' is not a finite number"),
    ("a b 0.5\na b 0.7\n", r"scores:2: trial 'a b' scored twice"),
])
def test_bad_score_lines_are_named(tmp_path, text, message):
    (tmp_path / "scores").write_text(text)
    with pytest.raises(TrialsError, match=message):
        read_scores(tmp_path / "scores")


def test_a_trial_without_score_is_named(tmp_path):
    with pytest.raises(TrialsError, match=r"scores: no score for trial 'a c'"):
        trial_scores([("a", "b", True), ("a", "c", False)], {("a", "b"): 1.0}, tmp_path / "scores")
