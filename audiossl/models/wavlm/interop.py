"""WavLM weights and configs to and from the Hugging Face ``transformers`` layout (``WavLMModel``,
``WavLMForCTC``): HuBERT's body names plus the relative position bias
(:data:`audiossl.models.hf_layout.POSITION_BIAS_NAMES`). Like HuBERT's, the masked-prediction head
has no HF counterpart: left out on export, freshly initialised on import.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from audiossl.models.hf_layout import BODY_NAMES, POSITION_BIAS_NAMES, body_to_hf
from audiossl.models.hubert.interop import (
    masked_prediction_config_from_hf,
    masked_prediction_state_from_hf,
    masked_prediction_state_to_hf,
)
from audiossl.models.wavlm.config import WavLMConfig

NAMES = POSITION_BIAS_NAMES + BODY_NAMES  # the specific names first: the first matching prefix wins


def config_from_hf(hf: dict[str, Any], num_classes: int = 100) -> WavLMConfig:
    """An audiossl :class:`WavLMConfig` from a Hugging Face ``WavLMConfig`` dict (config.json);
    ``num_classes`` sizes the new masked-prediction head."""
    return masked_prediction_config_from_hf(hf, WavLMConfig, "wavlm", num_classes)


def config_to_hf(config: WavLMConfig) -> dict[str, Any]:
    """The Hugging Face ``WavLMConfig`` dict (config.json) of an audiossl waveform WavLM."""
    return {"model_type": "wavlm", "architectures": ["WavLMModel"],
            **body_to_hf(config.frontend, config.encoder, config.dropout_input, position_bias="gated_relative"),
            "num_buckets": config.encoder.position_buckets, "max_bucket_distance": config.encoder.max_distance}


def state_dict_from_hf(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """audiossl WavLM weights (without the head) from a ``WavLMModel`` or ``WavLMForCTC`` state dict."""
    return masked_prediction_state_from_hf(hf_state, "wavlm.", NAMES)


def state_dict_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face ``WavLMModel`` state dict from audiossl WavLM weights (head dropped)."""
    return masked_prediction_state_to_hf(state, NAMES)
