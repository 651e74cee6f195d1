"""HuBERT weights and configs to and from the Hugging Face ``transformers`` layout.

Pure functions over plain dicts and state dicts: no file I/O, no ``transformers`` import
(:mod:`audiossl.interop.huggingface` reads and writes model directories). Only the
waveform front end has a Hugging Face counterpart; HF's ``HubertModel`` has no
masked-prediction head, so the head is left out on export and freshly initialised on
import (a new pretraining iteration or continued pretraining learns a new one anyway).

Weight names map one to one, prefix by prefix (:data:`audiossl.models.hf_layout.BODY_NAMES`).
The ``masked_prediction_*`` functions serve the families built on HuBERT (WavLM).
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from audiossl.errors import ConfigError, InteropError
from audiossl.models.components import MaskConfig
from audiossl.models.hf_layout import BODY_NAMES, body_from_hf, body_to_hf, hf_weights, rename_weights
from audiossl.models.hubert.config import HubertConfig

_HEAD_PREFIX = "head."


def masked_prediction_config_from_hf(hf: dict[str, Any], config_class: type[HubertConfig], model_type: str,
                                     num_classes: int) -> HubertConfig:
    """A ``config_class`` config from a Hugging Face config dict of ``model_type`` (see :func:`config_from_hf`)."""
    if hf.get("model_type", model_type) != model_type:
        raise InteropError(f"not a {model_type} config: model_type {hf.get('model_type')!r}")
    position_bias = config_class().encoder.position_bias
    frontend, encoder = body_from_hf(hf, model_type, position_bias)
    try:
        config = config_class(frontend=frontend, encoder=encoder, mask=MaskConfig(), num_classes=num_classes,
                              dropout_input=hf.get("feat_proj_dropout", 0.0))
        config.validate()
    except ConfigError as err:
        raise InteropError(f"Hugging Face {model_type} config does not make a valid audiossl config: {err}") from err
    return config


def config_from_hf(hf: dict[str, Any], num_classes: int = 100) -> HubertConfig:
    """An audiossl :class:`HubertConfig` from a Hugging Face ``HubertConfig`` dict (config.json).

    Missing optional keys take Hugging Face's defaults. ``num_classes`` sizes the (new)
    masked-prediction head, which HF does not store. Raises :class:`InteropError` for a
    missing size or a setting with no exact audiossl equivalent.
    """
    return masked_prediction_config_from_hf(hf, HubertConfig, "hubert", num_classes)


def config_to_hf(config: HubertConfig) -> dict[str, Any]:
    """The Hugging Face ``HubertConfig`` dict (config.json) of an audiossl waveform HuBERT.

    The pretraining span mask is not exported: HF's ``mask_time_*`` settings are the
    fine-tuning SpecAugment (HF defaults), not HuBERT's pretraining mask.
    """
    return {"model_type": "hubert", "architectures": ["HubertModel"],
            **body_to_hf(config.frontend, config.encoder, config.dropout_input)}


def masked_prediction_state_from_hf(hf_state: dict[str, Tensor], base_prefix: str,
                                    names: tuple[tuple[str, str], ...]) -> dict[str, Tensor]:
    """audiossl weights (without the head) from an HF state dict whose task models use ``base_prefix``."""
    return rename_weights(hf_weights(hf_state, base_prefix, dropped=("lm_head.",)), names, to_hf=False,
                          source="Hugging Face")


def masked_prediction_state_to_hf(state: dict[str, Tensor], names: tuple[tuple[str, str], ...]) -> dict[str, Tensor]:
    """An HF base-model state dict from audiossl weights, the masked-prediction head dropped."""
    body = {name: tensor for name, tensor in state.items() if not name.startswith(_HEAD_PREFIX)}
    return rename_weights(body, names, to_hf=True, source="audiossl")


def state_dict_from_hf(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """audiossl HuBERT weights (without the head) from a Hugging Face ``HubertModel`` state dict.

    Accepts the ``hubert.`` prefix of ``HubertForCTC`` checkpoints (the CTC head is dropped)
    and the legacy ``weight_g``/``weight_v`` names of the positional convolution.
    Raises :class:`InteropError` naming any weight it does not know.
    """
    return masked_prediction_state_from_hf(hf_state, "hubert.", BODY_NAMES)


def state_dict_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face ``HubertModel`` state dict from audiossl HuBERT weights (head dropped)."""
    return masked_prediction_state_to_hf(state, BODY_NAMES)
