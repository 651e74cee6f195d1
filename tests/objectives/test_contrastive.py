"""wav2vec 2.0's contrastive task: distractors from the same utterance, logits, collapse warnings."""
from __future__ import annotations

import pytest
import torch

from audiossl.objectives.contrastive import CollapseMonitor, contrastive_logits, sample_distractors


def test_distractors_come_from_the_same_utterance_and_never_the_frame_itself():
    item = torch.tensor([0] * 5 + [1] * 3 + [2] * 1 + [3] * 6)
    indices, scored = sample_distractors(item, 200, torch.Generator().manual_seed(0))
    assert indices.shape == (15, 200)
    assert scored.tolist() == [True] * 8 + [False] + [True] * 6
    frames = torch.arange(15)
    assert bool((item[indices] == item[:, None]).all())
    assert not bool((indices[scored] == frames[scored, None]).any())
    assert indices[8].eq(8).all()  # a lone masked frame points at itself and is not scored
    for frame in (0, 9):  # every other frame of the utterance is drawn, about uniformly
        others = (item == item[frame]) & (frames != frame)
        counts = torch.bincount(indices[frame], minlength=15)
        assert bool((counts[others] > 0).all()) and counts[~others].sum() == 0
    again, _ = sample_distractors(item, 200, torch.Generator().manual_seed(0))
    assert torch.equal(indices, again)


def test_logits_put_the_target_first_and_rule_out_copies_of_it():
    context = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    targets = torch.tensor([[2.0, 0.0], [0.0, 3.0], [2.0, 0.0]])  # frames 0 and 2 share a quantized vector
    distractors = torch.tensor([[1, 2], [0, 2], [0, 1]])
    logits = contrastive_logits(context, targets, distractors, logit_temp=0.5)
    assert logits.shape == (3, 3) and logits.dtype == torch.float32
    assert logits[0, 0].item() == pytest.approx(2.0) and logits[0, 1].item() == pytest.approx(0.0)
    assert logits[0, 2].item() == float("-inf") and logits[2, 1].item() == float("-inf")
    assert logits[2, 0].item() == pytest.approx(2 * 2 ** -0.5, rel=1e-5)
    loss = torch.nn.functional.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    assert torch.isfinite(loss)


def test_collapse_is_named_after_patience_intervals():
    monitor = CollapseMonitor(num_codes=640, num_distractors=100, min_fraction=0.02, patience=3)
    healthy = {"code_perplexity": 300.0, "acc": 0.4}
    collapsed = {"code_perplexity": 4.0, "acc": 0.4}
    assert monitor.check(collapsed) == [] and monitor.check(collapsed) == []
    warning, = monitor.check(collapsed)
    assert "codebook collapse" in warning and "diversity_weight" in warning
    assert monitor.check(healthy) == []  # the count starts again
    chance = {"code_perplexity": 300.0, "acc": 0.012}
    assert monitor.check(chance) == [] and monitor.check(chance) == []
    warning, = monitor.check(chance)
    assert "at chance" in warning and "lr" in warning
