"""UniSpeech-SAT weights and configs to and from the Hugging Face ``transformers`` layout
(``UniSpeechSatModel``, ``UniSpeechSatForCTC``, ``UniSpeechSatForPreTraining``; ``model_type``
``unispeech-sat``): HuBERT's body names.

audiossl's pretraining parts (the masked-prediction head, the utterance quantizer, its projections and
layer norm) are left out on export and new on import, the quantizer sized by HF's codevector settings;
``UniSpeechSatForPreTraining``'s own (its quantizer and projections, of HF's contrastive objective) are
dropped on import.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from torch import Tensor

from audiossl.errors import ConfigError, InteropError
from audiossl.models.hf_layout import BODY_NAMES, body_to_hf
from audiossl.models.hubert.interop import (
    masked_prediction_config_from_hf,
    masked_prediction_state_from_hf,
    masked_prediction_state_to_hf,
)
from audiossl.models.unispeech_sat.config import UniSpeechSatConfig

MODEL_TYPE = "unispeech-sat"
PRETRAINING_PARTS = ("head.", "utterance_norm.", "quantizer.", "project_q.", "speaker_proj.")
HF_PRETRAINING_PARTS = ("label_embeddings_concat", "quantizer.", "project_q.", "project_hid.", "speaker_proj.",
                        "layer_norm_for_extract.")  # UniSpeechSatForPreTraining's, outside its base model
QUANTIZER_SETTINGS = {"codebook_groups": "num_codevector_groups", "codebook_entries": "num_codevectors_per_group",
                      "codebook_dim": "codevector_dim"}  # audiossl field: HF key


def config_from_hf(hf: dict[str, Any], num_classes: int = 100) -> UniSpeechSatConfig:
    """An audiossl :class:`UniSpeechSatConfig` from a Hugging Face ``UniSpeechSatConfig`` dict (config.json);
    ``num_classes`` sizes the new masked-prediction head."""
    config = masked_prediction_config_from_hf(hf, UniSpeechSatConfig, MODEL_TYPE, num_classes)
    try:
        config = dataclasses.replace(config, **{field: hf[key] for field, key in QUANTIZER_SETTINGS.items()
                                                if hf.get(key) is not None})
        config.validate()
    except (ConfigError, TypeError) as err:
        raise InteropError(f"Hugging Face {MODEL_TYPE} codevector settings do not make a valid audiossl "
                           f"config: {err}") from None
    return config


def config_to_hf(config: UniSpeechSatConfig) -> dict[str, Any]:
    """The Hugging Face ``UniSpeechSatConfig`` dict (config.json) of an audiossl waveform UniSpeech-SAT."""
    return {"model_type": MODEL_TYPE, "architectures": ["UniSpeechSatModel"],
            **body_to_hf(config.frontend, config.encoder, config.dropout_input),
            **{key: getattr(config, field) for field, key in QUANTIZER_SETTINGS.items()}}


def state_dict_from_hf(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """audiossl UniSpeech-SAT weights (without the pretraining parts) from a ``UniSpeechSatModel``,
    ``UniSpeechSatForCTC`` or ``UniSpeechSatForPreTraining`` state dict."""
    body = {name: tensor for name, tensor in hf_state.items() if not name.startswith(HF_PRETRAINING_PARTS)}
    return masked_prediction_state_from_hf(body, "unispeech_sat.", BODY_NAMES)


def state_dict_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face ``UniSpeechSatModel`` state dict from audiossl UniSpeech-SAT weights (pretraining parts dropped)."""
    return masked_prediction_state_to_hf({name: tensor for name, tensor in state.items()
                                          if not name.startswith(PRETRAINING_PARTS)}, BODY_NAMES)
