"""UniSpeech-SAT's utterance-wise contrastive objective (Chen et al., 2022), reusable by other families.

Each masked frame's projected transformer state (the anchor) is scored against quantized
states: its own and ``num_samples`` drawn from every masked frame of the batch. A sample of the
same utterance is a positive, one of another utterance a negative, so the states learn what
stays constant within an utterance (the speaker, the channel). As the released code
(``microsoft/UniSpeech``, ``UniSpeech-SAT/fairseq/models/unispeech-sat``) the logits are cosine
similarities over a temperature, scored by a binary cross entropy per slot (several positives
per anchor, not a softmax over one).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from audiossl.objectives.output import MetricRatios

UTTERANCE_CONTRASTIVE_METRICS: MetricRatios = {
    "utt_loss": ("utterance_loss", "utterance_anchors"),
    "utt_acc": ("utterance_correct", "utterance_slots"),
}


@dataclass
class UtteranceContrastiveOutput:
    """loss: mean over anchors of the mean binary cross entropy over their slots (scalar);
    correct: slots whose logit sign matches their label; slots: scored slots (anchors x (1 + samples))."""

    loss: Tensor
    correct: Tensor
    slots: int


def utterance_contrastive(anchors: Tensor, quantized: Tensor, utterance: Tensor, num_samples: int,
                          logit_temp: float, generator: torch.Generator) -> UtteranceContrastiveOutput:
    """Score each anchor against its own quantized vector and ``num_samples`` drawn ones.

    Args:
        anchors: ``(N, F)`` projected states of the batch's masked frames.
        quantized: ``(N, F)`` projected quantized states of the same frames.
        utterance: ``(N,)`` the batch item of each frame.
        num_samples: draws per anchor, uniform over all ``N`` frames (with replacement; a draw
            may be the anchor's own frame, a positive, as in the reference).
        logit_temp: cosine-logit temperature.
        generator: draws the samples (on its device; moved to the anchors').

    Returns:
        The loss (fp32, even under autocast) and the slot accuracy's parts.
    """
    count = anchors.shape[0]
    if count == 0:
        return UtteranceContrastiveOutput(anchors.sum() * 0.0, anchors.new_zeros(()), 0)
    samples = torch.randint(count, (count, num_samples), generator=generator, device=generator.device)
    samples = samples.to(anchors.device)
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        similarity = nn.functional.normalize(anchors.float(), dim=-1) @ nn.functional.normalize(quantized.float(), dim=-1).t()
        logits = torch.cat([similarity.diagonal()[:, None], similarity.gather(1, samples)], dim=1) / logit_temp
    labels = torch.cat([torch.ones_like(samples[:, :1], dtype=torch.bool), utterance[samples] == utterance[:, None]], 1)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), reduction="none").mean(1).mean()
    correct = ((logits > 0) == labels).sum()
    return UtteranceContrastiveOutput(loss, correct, logits.numel())
