"""Masked prediction of frame-level discrete targets (HuBERT), reusable by other families."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiossl.objectives.output import MetricRatios, ObjectiveOutput

# the additive sums of :meth:`MaskedPredictionHead.forward`, in this order
_SUM_NAMES = ("loss_masked", "loss_unmasked", "correct_masked", "correct_unmasked", "correct_commonest",
              "masked_frames", "unmasked_frames")

# logged figures: top-1 accuracy on masked and unmasked frames, the accuracy at masked frames of always
# naming each batch's commonest target id (acc_masked above it: the model has learned more than how often
# each id occurs), mean cross entropy per masked frame
MASKED_PREDICTION_METRICS: MetricRatios = {
    "acc_masked": ("correct_masked", "masked_frames"),
    "acc_unmasked": ("correct_unmasked", "unmasked_frames"),
    "acc_commonest": ("correct_commonest", "masked_frames"),
    "loss_masked": ("loss_masked", "masked_frames"),
}


class MaskedPredictionHead(nn.Module):
    """Projection, label embeddings and cosine-similarity logits, as fairseq HuBERT.

    ``logits[b, t, c] = cos(final_proj(hidden[b, t]), label_embeddings[c]) / logit_temp``,
    computed in fp32 even under autocast, scored with cross entropy.

    Args:
        dim: encoder dimension ``D`` (fairseq ``encoder_embed_dim``).
        final_dim: projection size (fairseq ``final_dim``).
        num_classes: number of target classes (the size of fairseq's dictionary).
        logit_temp: fairseq ``logit_temp`` (0.1).
    """

    def __init__(self, dim: int, final_dim: int, num_classes: int, logit_temp: float) -> None:
        super().__init__()
        self.logit_temp = logit_temp
        self.final_proj = nn.Linear(dim, final_dim)
        self.label_embeddings = nn.Parameter(torch.empty(num_classes, final_dim).uniform_())

    @property
    def num_classes(self) -> int:
        return self.label_embeddings.shape[0]

    def reset_classes(self, num_classes: int) -> None:
        """A new random label table for ``num_classes`` targets (the projection is kept).
        Rebuild the optimizer afterwards: the old table's parameter is gone."""
        old = self.label_embeddings
        self.label_embeddings = nn.Parameter(
            torch.empty(num_classes, old.shape[1], dtype=old.dtype, device=old.device).uniform_()
        )

    def logits(self, hidden: Tensor) -> Tensor:
        """``(..., D)`` → ``(..., num_classes)`` fp32 cosine logits."""
        projected = self.final_proj(hidden)
        with torch.autocast(device_type=projected.device.type, enabled=False):
            projected = nn.functional.normalize(projected.float(), dim=-1)
            labels = nn.functional.normalize(self.label_embeddings.float(), dim=-1)
            return projected @ labels.t() / self.logit_temp

    def forward(
        self, hidden: Tensor, targets: Tensor, mask: Tensor, padding_mask: Tensor, unmasked_weight: float
    ) -> ObjectiveOutput:
        """Score the valid frames.

        The loss follows fairseq's ``hubert`` criterion:
        ``(sum of CE over masked frames + unmasked_weight * sum of CE over unmasked valid
        frames) / number of masked frames`` (at least 1), i.e. the mean over predicted
        (masked) frames when ``unmasked_weight`` (fairseq ``pred_nomask_weight``) is 0.

        Args:
            hidden: ``(B, T, D)`` encoder output.
            targets: ``(B, T)`` long class ids in ``[0, num_classes)`` at valid frames.
            mask: ``(B, T)`` bool, True at masked frames.
            padding_mask: ``(B, T)`` bool, True at padded frames (their targets are ignored).
            unmasked_weight: weight of the unmasked frames' cross entropy.

        Returns:
            The loss and sums over valid frames: ``loss_masked`` / ``loss_unmasked`` (cross
            entropy), ``correct_masked`` / ``correct_unmasked`` (top-1 hits), ``correct_commonest``
            (masked frames whose target is the commonest among the batch's masked targets),
            ``masked_frames`` / ``unmasked_frames`` (see :data:`MASKED_PREDICTION_METRICS`).
        """
        if not (targets.shape == mask.shape == padding_mask.shape == hidden.shape[:2]):
            raise ValueError(
                f"shape mismatch: hidden {tuple(hidden.shape)}, targets {tuple(targets.shape)}, "
                f"mask {tuple(mask.shape)}, padding_mask {tuple(padding_mask.shape)}"
            )
        valid = ~padding_mask
        labels = targets[valid]
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"targets at valid frames must lie in [0, {self.num_classes}), "
                f"got [{int(labels.min())}, {int(labels.max())}]"
            )
        masked = mask[valid]
        logits = self.logits(hidden[valid])
        ce = nn.functional.cross_entropy(logits, labels, reduction="none")
        correct = (logits.argmax(dim=-1) == labels).float()

        num_masked = masked.sum()
        num_unmasked = masked.numel() - num_masked
        ce_masked = (ce * masked).sum()
        ce_unmasked = (ce * ~masked).sum()
        loss = (ce_masked + unmasked_weight * ce_unmasked) / num_masked.clamp(min=1)

        with torch.no_grad():
            commonest = torch.bincount(labels[masked], minlength=1).max()
            stats = torch.stack([ce_masked.detach(), ce_unmasked.detach(), (correct * masked).sum(),
                                 (correct * ~masked).sum(), commonest.float(), num_masked.float(),
                                 num_unmasked.float()]).tolist()
        return ObjectiveOutput(loss=loss, sums=dict(zip(_SUM_NAMES, stats)))


class PredictionCollapseMonitor:
    """Names a masked-prediction run that predicts no better than each batch's commonest target id.

    A model that has learned only how often each target id occurs (its masked loss at the unigram
    floor) names the commonest ids at every masked frame, so its masked accuracy is at most that of
    always naming the batch's commonest id (``acc_commonest``; chosen on the batch's own targets, an
    upper bound of what any fixed-frequency predictor scores); one that has learned from the frames
    does better. The sign, held for ``patience`` log intervals in a row: ``acc_masked`` at most
    ``acc_commonest``. A run may show it for a while before it starts learning.

    Args:
        patience: consecutive intervals before warning.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.collapsed = 0

    def check(self, figures: dict[str, float]) -> list[str]:
        """Warnings for this interval's ``figures`` (``acc_masked``, ``acc_commonest``); empty while healthy."""
        accuracy, commonest = figures["acc_masked"], figures["acc_commonest"]
        self.collapsed = self.collapsed + 1 if accuracy <= commonest else 0
        if self.collapsed < self.patience:
            return []
        return [f"masked predictions collapsed: masked accuracy {accuracy:.4f} has been no better than always naming "
                f"the batch's commonest target id ({commonest:.4f}) for {self.collapsed} log intervals: so far the "
                f"model predicts how often each id occurs, not the frames; if it lasts, remedies: shorter mask spans "
                f"(mask.length) so that masked frames have visible neighbours, a lower lr or a longer warmup, larger "
                f"batches and more updates, fewer codes"]
