"""Build WavLM from its config: every part (front end, encoder, heads) is built here from a
:class:`WavLMConfig`; the model keeps the config for its checkpoint and its objective's settings."""
from __future__ import annotations

from audiossl.models.hubert.factory import masked_prediction_parts
from audiossl.models.wavlm.config import WavLMConfig
from audiossl.models.wavlm.model import WavLMModel


def build_wavlm(config: WavLMConfig) -> WavLMModel:
    """Validate ``config`` and assemble a randomly initialised :class:`WavLMModel`."""
    return WavLMModel(**masked_prediction_parts(config))
