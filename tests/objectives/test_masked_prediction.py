import pytest
import torch

from audiossl.objectives.masked_prediction import MaskedPredictionHead, PredictionCollapseMonitor


def hand_built_head(temp=0.5):
    head = MaskedPredictionHead(dim=2, final_dim=2, num_classes=3, logit_temp=temp)
    with torch.no_grad():
        head.final_proj.weight.copy_(torch.eye(2))
        head.final_proj.bias.zero_()
        head.label_embeddings.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]))
    return head


def test_hand_built_accuracies_counts_and_loss():
    head = hand_built_head(temp=0.5)
    # frame directions: +x -> class 0, +y -> class 1, -x -> class 2
    hidden = torch.tensor(
        [
            [[1.0, 0.0], [0.0, 5.0], [-2.0, 0.0], [0.0, 1.0], [9.0, 9.0]],
            [[0.0, 3.0], [4.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
        ]
    )
    targets = torch.tensor([[0, 1, 0, 1, 2], [1, 2, 2, -100, -100]])
    mask = torch.tensor([[True, True, True, False, False], [False, False, True, True, False]])
    padding = torch.tensor([[False, False, False, False, False], [False, False, False, True, True]])
    out = head(hidden, targets, mask, padding, unmasked_weight=0.0)
    m = out.sums
    # masked valid frames: (0,0) ok, (0,1) ok, (0,2) wrong, (1,2) ok ; (1,3) is padding
    assert m["masked_frames"] == 4 and m["unmasked_frames"] == 4
    assert m["correct_masked"] == 3
    # unmasked valid frames: (0,3) ok, (0,4) wrong (ties class 0 and 1, target 2), (1,0) ok, (1,1) wrong
    assert m["correct_unmasked"] == 2
    # the masked targets 0, 1, 0, 2: always naming 0 scores 2
    assert m["correct_commonest"] == 2

    def ce(vec, target):
        v = torch.tensor(vec) / torch.tensor(vec).norm()
        labels = torch.nn.functional.normalize(head.label_embeddings.detach(), dim=-1)
        logits = labels @ v / 0.5
        return -torch.log_softmax(logits, 0)[target].item()

    masked_ce = [ce([1.0, 0.0], 0), ce([0.0, 5.0], 1), ce([-2.0, 0.0], 0), ce([-1.0, 0.0], 2)]
    unmasked_ce = [ce([0.0, 1.0], 1), ce([9.0, 9.0], 2), ce([0.0, 3.0], 1), ce([4.0, 0.0], 2)]
    assert m["loss_masked"] == pytest.approx(sum(masked_ce), rel=1e-5)
    assert m["loss_unmasked"] == pytest.approx(sum(unmasked_ce), rel=1e-5)
    assert out.loss.item() == pytest.approx(sum(masked_ce) / 4, rel=1e-5)
    weighted = head(hidden, targets, mask, padding, unmasked_weight=0.5)
    assert weighted.loss.item() == pytest.approx((sum(masked_ce) + 0.5 * sum(unmasked_ce)) / 4, rel=1e-5)


def test_loss_decreases_on_separable_toy_problem():
    torch.manual_seed(0)
    num_classes, dim = 8, 16
    centers = torch.randn(num_classes, dim) * 3
    targets = torch.randint(0, num_classes, (4, 50))
    hidden = centers[targets] + 0.1 * torch.randn(4, 50, dim)
    mask = torch.rand(4, 50) < 0.5
    padding = torch.zeros(4, 50, dtype=torch.bool)
    head = MaskedPredictionHead(dim, 12, num_classes, logit_temp=0.1)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    first = head(hidden, targets, mask, padding, 0.0)
    for _ in range(30):
        out = head(hidden, targets, mask, padding, 0.0)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    last = head(hidden, targets, mask, padding, 0.0)
    assert last.loss.item() < 0.3 * first.loss.item()
    assert last.sums["correct_masked"] == last.sums["masked_frames"] > 0
    # unmasked frames get no gradient with weight 0, yet share the classes and are predicted too
    assert last.sums["correct_unmasked"] > 0.9 * last.sums["unmasked_frames"]


def test_unmasked_frames_get_no_gradient_when_weight_is_zero():
    torch.manual_seed(0)
    head = MaskedPredictionHead(4, 4, 5, 0.1)
    hidden = torch.randn(1, 6, 4, requires_grad=True)
    mask = torch.tensor([[True, False, True, False, False, False]])
    out = head(hidden, torch.randint(0, 5, (1, 6)), mask, torch.zeros(1, 6, dtype=torch.bool), 0.0)
    out.loss.backward()
    assert (hidden.grad[0, ~mask[0]] == 0).all()
    assert (hidden.grad[0, mask[0]] != 0).any()


def test_logits_stay_fp32_under_bf16_autocast():
    head = MaskedPredictionHead(8, 4, 3, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head.logits(torch.randn(2, 5, 8))
    assert logits.dtype == torch.float32 and logits.shape == (2, 5, 3)
    assert logits.abs().max() <= 10.0 + 1e-4  # |cos| / 0.1


def test_rejects_bad_targets_and_shapes():
    head = MaskedPredictionHead(4, 4, 5, 0.1)
    hidden = torch.randn(1, 3, 4)
    ok = torch.zeros(1, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        head(hidden, torch.tensor([[0, 5, 1]]), ok, ok, 0.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        head(hidden, torch.tensor([[0, 1]]), ok, ok, 0.0)
    # targets under padding are ignored
    out = head(hidden, torch.tensor([[0, 1, -100]]), ok, torch.tensor([[False, False, True]]), 0.0)
    assert out.sums["unmasked_frames"] == 2 and out.sums["masked_frames"] == 0


def test_prediction_collapse_is_named_after_patience_intervals_and_the_count_restarts():
    monitor = PredictionCollapseMonitor(patience=3)
    collapsed = {"acc_masked": 0.041, "acc_commonest": 0.045}
    healthy = {"acc_masked": 0.098, "acc_commonest": 0.045}
    assert monitor.check(collapsed) == [] and monitor.check(collapsed) == []
    warning, = monitor.check(collapsed)
    assert "0.0410" in warning and "0.0450" in warning and "3 log intervals" in warning
    assert monitor.check(healthy) == []
    assert monitor.check(collapsed) == []  # counted from 1 again
