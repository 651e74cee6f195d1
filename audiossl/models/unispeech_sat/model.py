"""UniSpeech-SAT: HuBERT's masked prediction plus an utterance-wise contrastive term (Chen et al., 2022)."""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from audiossl.models.hubert.model import HubertModel
from audiossl.models.unispeech_sat.config import UniSpeechSatConfig, contrasted_layer
from audiossl.nn.frontends import FeatureProjection
from audiossl.nn.quantizer import GumbelProductQuantizer, annealed_temperature
from audiossl.nn.transformer import TransformerEncoder
from audiossl.objectives.masked_prediction import MASKED_PREDICTION_METRICS, MaskedPredictionHead
from audiossl.objectives.output import ObjectiveOutput
from audiossl.objectives.utterance_contrastive import UTTERANCE_CONTRASTIVE_METRICS, utterance_contrastive


class UniSpeechSatModel(HubertModel):
    """HuBERT with a quantizer and two projections on a middle layer's states (the reference's names).

    Built by :func:`audiossl.models.unispeech_sat.factory.build_unispeech_sat`. At masked frames,
    the contrasted layer's output (layer-normed first in the pre-norm layout, whose hidden states
    are not) gives the anchor through ``speaker_proj`` and, quantized and through ``project_q``,
    the vectors anchors are scored against (:func:`~audiossl.objectives.utterance_contrastive.utterance_contrastive`).

    Args:
        config, frontend, feature_projection, encoder, head: as :class:`~audiossl.models.hubert.model.HubertModel`.
        utterance_norm: the layer norm of the contrasted states (reference ``layer_norm_for_extract``),
            or ``nn.Identity`` in the post-norm layout.
        quantizer: Gumbel product quantizer of the contrasted states.
        project_q: quantized vectors → the comparison space.
        speaker_proj: contrasted states → the comparison space.
    """

    metrics = {**MASKED_PREDICTION_METRICS, **UTTERANCE_CONTRASTIVE_METRICS,
               "code_perplexity": ("code_perplexity", "batches"), "diversity_loss": ("diversity_loss", "batches"),
               "temperature": ("temperature", "batches")}

    def __init__(self, config: UniSpeechSatConfig, frontend: nn.Module, feature_projection: FeatureProjection,
                 encoder: TransformerEncoder, head: MaskedPredictionHead, utterance_norm: nn.Module,
                 quantizer: GumbelProductQuantizer, project_q: nn.Linear, speaker_proj: nn.Linear) -> None:
        super().__init__(config, frontend, feature_projection, encoder, head)
        self.utterance_norm = utterance_norm
        self.quantizer = quantizer
        self.project_q = project_q
        self.speaker_proj = speaker_proj
        self.temperature = config.max_temperature

    def set_num_updates(self, num_updates: int) -> None:
        """Anneal the Gumbel temperature to ``max(max_temperature * decay ** n, min_temperature)``."""
        config = self.config
        self.temperature = annealed_temperature(num_updates, config.max_temperature, config.min_temperature,
                                                config.temperature_decay)

    def forward(self, inputs: Tensor, lengths: Tensor, targets: Tensor, generator: torch.Generator) -> ObjectiveOutput:
        """One step: masked prediction of ``targets`` and the utterance-wise contrastive term.

        Args:
            inputs, lengths, targets, generator: as :meth:`masked_encode`; the generator also
                draws the Gumbel noise (training mode) and the contrasted samples.

        Returns:
            The loss ``masked prediction + utterance_weight * utterance-wise BCE + diversity_weight
            * (GV - prob perplexity) / GV`` and the sums of :attr:`metrics`.
        """
        config = self.config
        hidden_states, targets, mask, padding_mask = self.masked_encode(inputs, lengths, targets, generator)
        prediction = self.head(hidden_states[-1], targets, mask, padding_mask, config.unmasked_weight)
        states = self.utterance_norm(hidden_states[contrasted_layer(config)][mask])  # (N, D)
        quantized = self.quantizer(states, self.temperature, generator)
        contrast = utterance_contrastive(self.speaker_proj(states), self.project_q(quantized.vectors),
                                         mask.nonzero()[:, 0], config.utterance_samples, config.logit_temp, generator)
        num_codes = config.codebook_groups * config.codebook_entries
        diversity = (num_codes - quantized.prob_perplexity) / num_codes
        loss = prediction.loss + config.utterance_weight * contrast.loss + config.diversity_weight * diversity
        anchors = states.shape[0]
        with torch.no_grad():
            stats = torch.stack([contrast.loss.detach() * anchors, contrast.correct.float(), quantized.code_perplexity,
                                 diversity.detach()]).tolist()
        names = ("utterance_loss", "utterance_correct", "code_perplexity", "diversity_loss")
        sums = {**prediction.sums, **dict(zip(names, stats)), "utterance_anchors": float(anchors),
                "utterance_slots": float(contrast.slots), "temperature": self.temperature, "batches": 1.0}
        return ObjectiveOutput(loss, sums)

    def encoder_only(self) -> UniSpeechSatModel:
        self.head = self.utterance_norm = self.quantizer = self.project_q = self.speaker_proj = None
        return self

    def truncated(self, num_layers: int) -> UniSpeechSatModel:
        """Keep the first ``num_layers`` layers; a contrasted layer beyond them reverts to the default (the middle)."""
        super().truncated(num_layers)
        if self.config.utterance_layer > num_layers:
            self.config = dataclasses.replace(self.config, utterance_layer=0)
        return self
