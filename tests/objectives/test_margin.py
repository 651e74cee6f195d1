"""AAM-softmax against ArcFace's formula written out, its limits (m = 0, easy margin) and its gradients."""
from __future__ import annotations

import math

import pytest
import torch

from audiossl.objectives.margin import AAMSoftmax, additive_angular_margin


def direct_logit(cosine: float, target: bool, margin: float, scale: float, easy_margin: bool) -> float:
    """One logit from the angle: ``s cos(θ + m)`` for the target while θ + m stays within π (with
    ``easy_margin``: while cos θ > 0), else ``s (cos θ - m sin m)`` (with ``easy_margin``: ``s cos θ``)."""
    if not target:
        return scale * cosine
    theta = math.acos(cosine)
    if easy_margin:
        return scale * (math.cos(theta + margin) if cosine > 0 else cosine)
    return scale * (math.cos(theta + margin) if theta + margin < math.pi else cosine - margin * math.sin(margin))


COSINES = torch.tensor([[0.9, -0.2, 0.1], [-0.3, 0.5, 0.0], [0.2, 0.4, -0.995], [-0.7, -0.99, 0.6]])
LABELS = torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize("easy_margin", [False, True])
@pytest.mark.parametrize("margin", [0.2, 0.5])
def test_margin_logits_equal_the_formula(margin, easy_margin):
    logits = additive_angular_margin(COSINES, LABELS, margin, 30.0, easy_margin)
    expected = torch.tensor([[direct_logit(float(c), j == int(label), margin, 30.0, easy_margin)
                              for j, c in enumerate(row)] for row, label in zip(COSINES, LABELS)])
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-5)
    # row 2's target is past pi - m (the fallback), row 3's (cos -0.99) too for both margins
    assert COSINES[2, 2] < math.cos(math.pi - margin) and COSINES[3, 1] < math.cos(math.pi - margin)


def test_target_logit_falls_with_the_angle_everywhere():
    theta = torch.linspace(0.0, math.pi, 2001)
    cosine = torch.stack([theta.cos(), torch.zeros_like(theta)], dim=1)
    target = additive_angular_margin(cosine, torch.zeros(len(theta), dtype=torch.long), 0.3, 1.0)[:, 0]
    assert bool((target[1:] < target[:-1]).all())
    assert bool((target <= cosine[:, 0] + 1e-6).all())  # the margin never helps the target


def test_zero_margin_is_the_scaled_cosine_softmax():
    torch.manual_seed(0)
    head = AAMSoftmax(8, 5, margin=0.0, scale=16.0)
    embeddings, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    loss, logits = head(embeddings, labels)
    cosine = torch.nn.functional.normalize(embeddings, dim=-1) @ torch.nn.functional.normalize(head.weight, dim=-1).T
    torch.testing.assert_close(logits, 16.0 * cosine)
    torch.testing.assert_close(additive_angular_margin(cosine, labels, 0.0, 16.0), 16.0 * cosine)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(16.0 * cosine, labels))
    torch.testing.assert_close(head.logits(embeddings), logits)


def test_loss_is_cross_entropy_of_margin_logits_and_exceeds_zero_margin():
    torch.manual_seed(1)
    head = AAMSoftmax(8, 5, margin=0.2, scale=30.0)
    embeddings, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    loss, logits = head(embeddings, labels)
    cosine = logits.detach() / 30.0
    expected = torch.tensor([[direct_logit(float(c), j == int(label), 0.2, 30.0, False) for j, c in enumerate(row)]
                             for row, label in zip(cosine, labels)])
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(expected, labels), atol=1e-4, rtol=1e-5)
    assert float(loss.detach()) > float(torch.nn.functional.cross_entropy(logits.detach(), labels))


def test_gradients_stay_finite_on_a_class_weight():
    head = AAMSoftmax(4, 3, margin=0.2, scale=30.0)
    embeddings = torch.cat([head.weight.detach()[:1] * 3.0, -head.weight.detach()[1:2]]).requires_grad_()
    loss, _ = head(embeddings, torch.tensor([0, 1]))  # cos θ = 1 and cos θ = -1 exactly
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(embeddings.grad).all() and torch.isfinite(head.weight.grad).all()


def test_learns_to_separate_classes():
    torch.manual_seed(0)
    centres = torch.randn(4, 6)
    labels = torch.arange(4).repeat(10)
    embeddings = centres[labels] + 0.3 * torch.randn(40, 6)
    head = AAMSoftmax(6, 4, margin=0.2, scale=30.0)
    assert float((head.logits(embeddings).argmax(-1) == labels).float().mean()) < 0.5
    optimizer = torch.optim.SGD(head.parameters(), lr=0.2)
    for _ in range(20):
        loss, logits = head(embeddings, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert bool((logits.argmax(-1) == labels).all())
