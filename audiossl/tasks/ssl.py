"""Self-supervised pretraining by masked prediction of frame targets (HuBERT and kin)."""
from __future__ import annotations

from torch import nn

from audiossl.data.dataset import Batch
from audiossl.tasks.base import StepOutput, Task


class MaskedPredictionTask(Task):
    """Batches of (inputs, frame targets) → the model's masked-prediction loss.

    The model's ``forward(inputs, lengths, targets, generator)`` returns a loss and per-batch
    means and counts (``loss_masked``, ``acc_masked``, ``num_masked_frames``, ...).
    """

    find_unused_parameters = True  # layer drop leaves different layers unused on each rank

    def __init__(self, family: str = "hubert"):
        self.family = family

    def train_step(self, model: nn.Module, batch: Batch, generator) -> StepOutput:
        out = model(batch.inputs, batch.lengths, batch.targets, generator)
        m = out.metrics
        sums = {
            "masked_frames": m["num_masked_frames"],
            "unmasked_frames": m["num_unmasked_frames"],
            "loss_masked": m["loss_masked"] * m["num_masked_frames"],
            "loss_unmasked": m["loss_unmasked"] * m["num_unmasked_frames"],
            "correct_masked": m["acc_masked"] * m["num_masked_frames"],
            "correct_unmasked": m["acc_unmasked"] * m["num_unmasked_frames"],
            "loss": float(out.loss.detach()) * batch.size,
            "utterances": float(batch.size),
        }
        return StepOutput(out.loss, sums)

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        masked = max(sums.get("masked_frames", 0.0), 1.0)
        unmasked = max(sums.get("unmasked_frames", 0.0), 1.0)
        return {
            "loss": sums["loss"] / max(sums["utterances"], 1.0),
            "acc_masked": sums["correct_masked"] / masked,
            "acc_unmasked": sums["correct_unmasked"] / unmasked,
            "loss_masked": sums["loss_masked"] / masked,
        }

    def valid_score(self, summary: dict[str, float]) -> float:
        return summary["loss_masked"]
