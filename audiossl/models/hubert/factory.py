"""Build HuBERT from its config: every part (front end, encoder, heads) is built here from a
:class:`HubertConfig`; the model keeps the config for its checkpoint and its objective's settings."""
from __future__ import annotations

from typing import Any

from audiossl.models.components import build_body
from audiossl.models.hubert.config import HubertConfig
from audiossl.models.hubert.model import HubertModel
from audiossl.objectives.masked_prediction import MaskedPredictionHead


def masked_prediction_parts(config: HubertConfig) -> dict[str, Any]:
    """Validate ``config`` and build the parts of a masked-prediction model (HuBERT and the families
    built on it): ``config``, ``frontend``, ``feature_projection``, ``encoder`` and ``head``."""
    config.validate()
    return {
        "config": config,
        **build_body(config.frontend, config.encoder, config.dropout_input),
        "head": MaskedPredictionHead(config.encoder.dim, config.final_dim, config.num_classes, config.logit_temp),
    }


def build_hubert(config: HubertConfig) -> HubertModel:
    """Validate ``config`` and assemble a randomly initialised :class:`HubertModel`."""
    return HubertModel(**masked_prediction_parts(config))
