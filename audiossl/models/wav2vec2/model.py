"""wav2vec 2.0: contrastive prediction of quantized front-end features at masked frames (Baevski et al., 2020)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from audiossl.models.encoder import FrontendTransformer
from audiossl.models.wav2vec2.config import Wav2Vec2Config
from audiossl.nn.frontends import FeatureProjection, valid_mask
from audiossl.nn.quantizer import GumbelProductQuantizer, annealed_temperature
from audiossl.nn.transformer import TransformerEncoder
from audiossl.objectives.contrastive import (CONTRASTIVE_METRICS, CollapseMonitor, contrastive_logits,
                                             sample_distractors)
from audiossl.objectives.output import ObjectiveOutput


class Wav2Vec2Model(FrontendTransformer):
    """Front end → feature projection → (mask embedding) → transformer; quantizer on the front end.

    Built by :func:`audiossl.models.wav2vec2.factory.build_wav2vec2`. The quantizer sees the
    layer-normed front-end features (fairseq's ``unmasked_features``); the transformer output at
    masked frames must pick their quantized vector among distractors.

    Args:
        config: the config the parts were built from (scalar training settings come from it).
        frontend, feature_projection, encoder: see :class:`~audiossl.models.encoder.FrontendTransformer`.
        feature_dropout: on the quantizer's input (fairseq ``dropout_features``).
        quantizer: the Gumbel product quantizer (fairseq ``quantizer``).
        project_q: quantized vectors → the comparison space (fairseq ``project_q``).
        final_proj: transformer output → the comparison space (fairseq ``final_proj``).
        collapse_monitor: names a collapsing run from the logged figures.
    """

    metrics = CONTRASTIVE_METRICS
    valid_metric = "contrastive_loss"

    def __init__(self, config: Wav2Vec2Config, frontend: nn.Module, feature_projection: FeatureProjection,
                 encoder: TransformerEncoder, feature_dropout: nn.Module, quantizer: GumbelProductQuantizer,
                 project_q: nn.Linear, final_proj: nn.Linear, collapse_monitor: CollapseMonitor) -> None:
        super().__init__(config, frontend, feature_projection, encoder, config.feature_grad_mult)
        self.feature_dropout = feature_dropout
        self.quantizer = quantizer
        self.project_q = project_q
        self.final_proj = final_proj
        self.collapse_monitor = collapse_monitor
        self.temperature = config.max_temperature

    def set_num_updates(self, num_updates: int) -> None:
        """Anneal the Gumbel temperature to ``max(max_temperature * decay ** n, min_temperature)``."""
        config = self.config
        self.temperature = annealed_temperature(num_updates, config.max_temperature, config.min_temperature,
                                                config.temperature_decay)

    def health_warnings(self, figures: dict[str, float]) -> list[str]:
        return self.collapse_monitor.check(figures)

    def encoder_only(self) -> Wav2Vec2Model:
        self.feature_dropout = self.quantizer = self.project_q = self.final_proj = None
        return self

    def forward(self, inputs: Tensor, lengths: Tensor, targets: Tensor | None,
                generator: torch.Generator) -> ObjectiveOutput:
        """One contrastive step.

        Args:
            inputs, lengths: as :meth:`encode`.
            targets: must be None: the targets are the model's own quantized features.
            generator: draws the span mask (``config.mask``), the layer drop, the Gumbel noise
                (training mode) and the distractors.

        Returns:
            The loss ``contrastive CE mean + diversity_weight * (GV - prob perplexity) / GV +
            feature_penalty_weight * mean squared front-end output`` and sums of :data:`CONTRASTIVE_METRICS`.
        """
        if targets is not None:
            raise ValueError("wav2vec 2.0 makes its own targets: pass targets=None")
        config = self.config
        features, frame_lengths = self.frontend_features(inputs, lengths)  # (B, T, C)
        valid = valid_mask(frame_lengths, features.shape[1])
        penalty = features.float().pow(2).masked_fill(~valid[..., None], 0.0).sum() / (valid.sum() * features.shape[2])
        normed = self.feature_projection.layer_norm(features)
        x = self.feature_projection.dropout(self.feature_projection.projection(normed))
        mask = self.span_mask(tuple(valid.shape), frame_lengths, generator)
        hidden, _ = self.encode_features(x, frame_lengths, mask, generator)
        quantized = self.quantizer(self.feature_dropout(normed)[mask], self.temperature, generator)
        item = mask.nonzero()[:, 0]  # the utterance of each masked frame, in order
        distractors, scored = sample_distractors(item, config.num_distractors, generator)
        logits = contrastive_logits(self.final_proj(hidden[-1][mask]), self.project_q(quantized.vectors),
                                    distractors, config.logit_temp)[scored]
        zeros = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        ce = nn.functional.cross_entropy(logits, zeros, reduction="sum")
        num_codes = config.codebook_groups * config.codebook_entries
        diversity = (num_codes - quantized.prob_perplexity) / num_codes
        num_scored = scored.sum()
        loss = (ce / num_scored.clamp(min=1) + config.diversity_weight * diversity
                + config.feature_penalty_weight * penalty)
        with torch.no_grad():
            correct = (logits.argmax(-1) == 0).sum()
            stats = torch.stack([ce.detach(), correct.float(), num_scored.float(), quantized.code_perplexity,
                                 quantized.prob_perplexity.detach(), diversity.detach(), penalty.detach()]).tolist()
        names = ("contrastive_loss", "contrastive_correct", "scored_frames", "code_perplexity", "prob_perplexity",
                 "diversity_loss", "feature_penalty")
        return ObjectiveOutput(loss, {**dict(zip(names, stats)), "temperature": self.temperature, "batches": 1.0})
