"""HuBERT: masked prediction of frame-level cluster targets (Hsu et al., 2021)."""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from audiossl.models.encoder import FrontendTransformer
from audiossl.models.hubert.config import HubertConfig
from audiossl.nn.augment import random_warp_factors, warp_frequency_axis
from audiossl.nn.frontends import FeatureProjection, valid_mask
from audiossl.nn.transformer import TransformerEncoder
from audiossl.objectives.output import ObjectiveOutput
from audiossl.objectives.masked_prediction import MASKED_PREDICTION_METRICS, MaskedPredictionHead

IGNORE_INDEX = -100


class HubertModel(FrontendTransformer):
    """Front end → feature projection → (mask embedding) → transformer → prediction head.

    Built by :func:`audiossl.models.hubert.factory.build_hubert`. The parts arrive built;
    ``config`` is kept for checkpoints and supplies the scalar training settings
    (``mask``, ``unmasked_weight``, ``feature_grad_mult``, ``frequency_warp``).

    Args:
        config: the config the parts were built from.
        frontend, feature_projection, encoder: see :class:`~audiossl.models.encoder.FrontendTransformer`.
        head: the masked-prediction head (fairseq ``final_proj``, ``label_embs_concat``).
    """

    metrics = MASKED_PREDICTION_METRICS
    valid_metric = "loss_masked"

    def __init__(self, config: HubertConfig, frontend: nn.Module, feature_projection: FeatureProjection,
                 encoder: TransformerEncoder, head: MaskedPredictionHead) -> None:
        super().__init__(config, frontend, feature_projection, encoder, config.feature_grad_mult)
        self.head = head

    def forward(
        self, inputs: Tensor, lengths: Tensor, targets: Tensor, generator: torch.Generator
    ) -> ObjectiveOutput:
        """One masked-prediction step.

        Args:
            inputs, lengths, targets, generator: as :meth:`masked_encode`.

        Returns:
            Loss and metric sums of :class:`~audiossl.objectives.masked_prediction.MaskedPredictionHead`
            (figures: :attr:`metrics`).
        """
        hidden_states, targets, mask, padding_mask = self.masked_encode(inputs, lengths, targets, generator)
        return self.head(hidden_states[-1], targets, mask, padding_mask, self.config.unmasked_weight)

    def masked_encode(self, inputs: Tensor, lengths: Tensor, targets: Tensor,
                      generator: torch.Generator) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
        """Draw a span mask and encode the masked inputs.

        Args:
            inputs, lengths: as :meth:`encode`.
            targets: ``(B, T_t)`` long cluster ids; item ``b`` holds exactly
                ``num_frames(lengths)[b]`` labels followed by ``-100`` padding (``T_t`` may
                exceed the frame grid by padding only).
            generator: draws the span mask (``config.mask``), the layer drop and, in training
                mode, the frequency warp (``config.frequency_warp``).

        Returns:
            Every hidden state ``(B, T, D)``, the targets ``(B, T)``, the mask and the padding mask ``(B, T)``.

        Raises:
            ValueError: an item's target count differs from its frame count.
        """
        lengths = lengths.to(inputs.device)
        frame_lengths = self.num_frames(lengths)
        time = int(self.num_frames(lengths.new_tensor([inputs.shape[1]])))
        targets = align_frame_targets(targets, frame_lengths, time, inputs.shape)
        mask = self.span_mask((inputs.shape[0], time), frame_lengths, generator)
        if self.training and self.config.frequency_warp > 0.0:
            factors = random_warp_factors(inputs.shape[0], self.config.frequency_warp, generator)
            inputs = warp_frequency_axis(inputs, factors)
        hidden_states, frame_lengths = self.encode(inputs, lengths, mask, generator)
        return hidden_states, targets, mask, ~valid_mask(frame_lengths, time)

    def encoder_only(self) -> HubertModel:
        self.head = None
        return self

    def reset_targets(self, num_classes: int) -> None:
        """New random label embeddings for ``num_classes`` targets (next HuBERT iteration).

        The encoder and the head's projection are kept; ``config.num_classes`` is updated.
        Rebuild the optimizer afterwards: the old table's parameter is gone.
        """
        self.head.reset_classes(num_classes)
        self.config = dataclasses.replace(self.config, num_classes=num_classes)


def align_frame_targets(targets: Tensor, frame_lengths: Tensor, time: int, input_shape: torch.Size) -> Tensor:
    """Check ``(B, T_t)`` (or ``(B, T_t, K)`` codebooks) frame targets against ``(B,)`` frame counts and
    pad/crop them to ``time`` frames.

    Item ``b`` must hold exactly ``frame_lengths[b]`` labels followed by ``-100`` padding.

    Raises:
        ValueError: naming the batch items whose target count differs from their frame count.
    """
    batch = frame_lengths.shape[0]
    if targets.ndim not in (2, 3) or targets.shape[0] != batch:
        raise ValueError(f"targets must be (B, T) or (B, T, K) with B={batch}, got {tuple(targets.shape)}")
    targets = targets.to(frame_lengths.device)
    width = max(targets.shape[1], time)
    padding = (0, 0) * (targets.ndim - 2) + (0, width - targets.shape[1])
    padded = nn.functional.pad(targets, padding, value=IGNORE_INDEX)
    labelled = padded != IGNORE_INDEX
    if labelled.ndim == 3:
        labelled = labelled.all(dim=2)
    ok = (labelled == valid_mask(frame_lengths, width)).all(dim=1)
    if not bool(ok.all()):
        bad = (~ok).nonzero().flatten().tolist()
        raise ValueError(
            f"target length differs from num_frames for batch items {bad}: "
            f"targets {labelled.sum(dim=1)[bad].tolist()} vs frames {frame_lengths[bad].tolist()} "
            f"(targets shape {tuple(targets.shape)}, inputs shape {tuple(input_shape)}); each item needs "
            f"num_frames(lengths) labels followed by {IGNORE_INDEX} padding"
        )
    return padded[:, :time]
