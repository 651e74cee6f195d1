"""wav2vec 2.0's contrastive task: pick each masked frame's quantized target among distractors.

Masked frames are handled flat, ``(N, ...)`` in batch order (item by item), with ``item`` ``(N,)``
naming the utterance of each; items may have different numbers of masked frames.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiossl.objectives.output import MetricRatios

# logged figures: accuracy and mean cross entropy of the contrastive task over scored frames; per
# batch means of the codebook perplexities (max G x V), diversity loss, feature penalty, temperature
CONTRASTIVE_METRICS: MetricRatios = {
    "acc": ("contrastive_correct", "scored_frames"),
    "contrastive_loss": ("contrastive_loss", "scored_frames"),
    "code_perplexity": ("code_perplexity", "batches"),
    "prob_perplexity": ("prob_perplexity", "batches"),
    "diversity_loss": ("diversity_loss", "batches"),
    "feature_penalty": ("feature_penalty", "batches"),
    "temperature": ("temperature", "batches"),
}


def sample_distractors(item: Tensor, num_distractors: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """For each masked frame, ``num_distractors`` other masked frames of its own utterance.

    Drawn uniformly with replacement among the utterance's other masked frames, never the frame
    itself (fairseq ``sample_negatives`` with ``n_negatives``; no cross-utterance distractors).

    Args:
        item: ``(N,)`` long, the utterance of each masked frame, non-decreasing.
        num_distractors: K (fairseq ``num_negatives``, 100).
        generator: the only source of randomness.

    Returns:
        ``(N, K)`` long indices into the N frames, and ``(N,)`` bool: frames whose utterance has at
        least two masked frames (the others have no distractor: their rows point at the frame itself).
    """
    device = item.device
    counts = torch.bincount(item)  # masked frames per utterance
    starts = torch.cumsum(counts, 0) - counts
    first = starts[item]  # (N,) index of the utterance's first masked frame
    local = torch.arange(item.numel(), device=device) - first
    others = (counts[item] - 1).clamp(min=1)  # choices per frame
    uniform = torch.rand(item.numel(), num_distractors, generator=generator, device=generator.device).to(device)
    draws = (uniform * others[:, None]).long().clamp(max=(others - 1)[:, None])
    draws = draws + (draws >= local[:, None]).long()  # skip the frame itself
    valid = counts[item] > 1
    return first[:, None] + draws * valid[:, None], valid


def contrastive_logits(context: Tensor, targets: Tensor, distractors: Tensor, logit_temp: float) -> Tensor:
    """Cosine similarity of each context vector to its target (column 0) and its distractors, over ``logit_temp``.

    A distractor equal to the target (the same quantized vector) gets ``-inf``, as in fairseq.

    Args:
        context: ``(N, F)`` projected encoder outputs at masked frames (fairseq ``final_proj``).
        targets: ``(N, F)`` projected quantized targets (fairseq ``project_q``).
        distractors: ``(N, K)`` indices into ``targets``.

    Returns:
        ``(N, 1 + K)`` fp32 logits.
    """
    negatives = targets[distractors]  # (N, K, F)
    candidates = torch.cat([targets[:, None], negatives], dim=1).float()  # (N, 1 + K, F)
    logits = nn.functional.cosine_similarity(context.float()[:, None], candidates, dim=-1) / logit_temp
    same = (negatives == targets[:, None]).all(-1)  # (N, K)
    return torch.cat([logits[:, :1], logits[:, 1:].masked_fill(same, float("-inf"))], dim=1)


class CollapseMonitor:
    """Names a collapsing wav2vec 2.0 run in the log, from the figures of each log interval.

    Two signs, each held for ``patience`` intervals in a row: codebook perplexity below
    ``min_fraction`` of the G x V entries (the quantizer uses a handful of codes), or contrastive
    accuracy at most twice chance (``1 / (1 + K)``: the encoder does not tell targets apart).

    Args:
        num_codes: G x V.
        num_distractors: K.
        min_fraction: perplexity threshold as a fraction of ``num_codes``.
        patience: consecutive intervals before warning.
    """

    def __init__(self, num_codes: int, num_distractors: int, min_fraction: float, patience: int) -> None:
        self.min_perplexity = min_fraction * num_codes
        self.num_codes = num_codes
        self.chance = 1.0 / (1 + num_distractors)
        self.patience = patience
        self.low_perplexity = 0
        self.at_chance = 0

    def check(self, figures: dict[str, float]) -> list[str]:
        """Warnings for this interval's ``figures`` (``code_perplexity``, ``acc``); empty while healthy."""
        warnings = []
        self.low_perplexity = self.low_perplexity + 1 if figures["code_perplexity"] < self.min_perplexity else 0
        if self.low_perplexity >= self.patience:
            warnings.append(
                f"codebook collapse: code perplexity {figures['code_perplexity']:.1f} of {self.num_codes} entries "
                f"has stayed below {self.min_perplexity:.1f} for {self.low_perplexity} log intervals; remedies: a "
                f"larger diversity_weight, a lower lr or a longer warmup, a lower feature_grad_mult")
        self.at_chance = self.at_chance + 1 if figures["acc"] <= 2 * self.chance else 0
        if self.at_chance >= self.patience:
            warnings.append(
                f"contrastive accuracy {figures['acc']:.3f} has stayed at chance ({self.chance:.3f}) for "
                f"{self.at_chance} log intervals; remedies: a lower lr or a longer warmup, check the audio and "
                f"the mask (mask.prob, mask.length), larger batches")
        return warnings
