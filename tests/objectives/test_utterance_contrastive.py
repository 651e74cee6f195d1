import math

import torch

from audiossl.objectives.utterance_contrastive import utterance_contrastive


def test_labels_follow_the_utterance_and_the_loss_is_the_mean_bce():
    generator = torch.Generator().manual_seed(0)
    anchors, quantized = torch.randn(12, 8), torch.randn(12, 8)
    utterance = torch.tensor([0] * 5 + [1] * 7)
    out = utterance_contrastive(anchors, quantized, utterance, 6, 0.1, torch.Generator().manual_seed(0))
    samples = torch.randint(12, (12, 6), generator=generator)  # the same draws
    unit, targets = (torch.nn.functional.normalize(t, dim=-1) for t in (anchors, quantized))
    own = (unit * targets).sum(-1, keepdim=True)
    logits = torch.cat([own, (unit[:, None] * targets[samples]).sum(-1)], 1) / 0.1
    labels = torch.cat([torch.ones(12, 1), (utterance[samples] == utterance[:, None]).float()], 1)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert math.isclose(out.loss.item(), expected.item(), rel_tol=1e-5)
    assert out.slots == 12 * 7 and out.correct == ((logits > 0) == labels.bool()).sum()


def test_utterance_identity_is_learnable():
    """States that carry their utterance's identity score near-perfectly; shuffled ones at chance."""
    utterance = torch.arange(4).repeat_interleave(30)
    identity = torch.nn.functional.one_hot(utterance, 4).float() * 4 - 1  # cosine -1/3 across utterances
    noise = torch.randn(120, 4, generator=torch.Generator().manual_seed(1)) * 0.1
    good = utterance_contrastive(identity + noise, identity, utterance, 50, 0.1, torch.Generator().manual_seed(0))
    bad = utterance_contrastive(torch.randn(120, 4), torch.randn(120, 4), utterance, 50, 0.1,
                                torch.Generator().manual_seed(0))
    assert good.correct / good.slots > 0.99 and good.loss < 0.05
    assert bad.loss > 1.0


def test_no_masked_frames_is_a_zero_loss():
    anchors = torch.zeros(0, 8, requires_grad=True)
    out = utterance_contrastive(anchors, anchors, torch.zeros(0, dtype=torch.long), 5, 0.1, torch.Generator())
    out.loss.backward()
    assert out.loss.item() == 0.0 and out.slots == 0
