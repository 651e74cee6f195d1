"""HuBERT weights and configs to and from the Hugging Face ``transformers`` layout.

Pure functions over plain dicts and state dicts: no file I/O, no ``transformers`` import
(:mod:`audiossl.interop.huggingface` reads and writes model directories). Only the
waveform front end has a Hugging Face counterpart; HF's ``HubertModel`` has no
masked-prediction head, so the head is left out on export and freshly initialised on
import (a new pretraining iteration or continued pretraining learns a new one anyway).

Weight names map one to one, prefix by prefix (``_NAMES``).
"""
from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from audiossl.errors import InteropError
from audiossl.models.components import EncoderConfig, FrontendConfig, MaskConfig
from audiossl.models.hubert.config import HubertConfig

# (Hugging Face name prefix, audiossl name prefix); {i} stands for a layer index.
_NAMES: tuple[tuple[str, str], ...] = (
    ("masked_spec_embed", "mask_embedding"),
    ("feature_extractor.conv_layers.{i}.conv.", "frontend.blocks.{i}.conv."),
    ("feature_extractor.conv_layers.{i}.layer_norm.", "frontend.blocks.{i}.norm."),
    ("feature_projection.", "feature_projection."),
    ("encoder.pos_conv_embed.conv.", "encoder.pos_embedding.conv."),
    ("encoder.layer_norm.", "encoder.layer_norm."),
    ("encoder.layers.{i}.attention.", "encoder.layers.{i}.attention."),
    ("encoder.layers.{i}.layer_norm.", "encoder.layers.{i}.attention_layer_norm."),
    ("encoder.layers.{i}.final_layer_norm.", "encoder.layers.{i}.final_layer_norm."),
    ("encoder.layers.{i}.feed_forward.intermediate_dense.", "encoder.layers.{i}.feed_forward.fc1."),
    ("encoder.layers.{i}.feed_forward.output_dense.", "encoder.layers.{i}.feed_forward.fc2."),
)
# Older transformers versions (and fairseq) store the weight-normalised positional conv as g and v.
_LEGACY_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
_HEAD_PREFIX = "head."


def config_from_hf(hf: dict[str, Any], num_classes: int = 100) -> HubertConfig:
    """An audiossl :class:`HubertConfig` from a Hugging Face ``HubertConfig`` dict (config.json).

    Missing optional keys take Hugging Face's defaults. ``num_classes`` sizes the (new)
    masked-prediction head, which HF does not store. Raises :class:`InteropError` for a
    missing size or a setting with no exact audiossl equivalent.
    """
    if hf.get("model_type", "hubert") != "hubert":
        raise InteropError(f"not a HuBERT config: model_type {hf.get('model_type')!r}")
    unsupported = {
        "hidden_act": ("gelu", hf.get("hidden_act", "gelu")),
        "feat_extract_activation": ("gelu", hf.get("feat_extract_activation", "gelu")),
        "feat_proj_layer_norm": (True, hf.get("feat_proj_layer_norm", True)),
        "conv_pos_batch_norm": (False, hf.get("conv_pos_batch_norm", False)),
        "layer_norm_eps": (1e-5, hf.get("layer_norm_eps", 1e-5)),
    }
    wrong = [f"{name}={got!r} (need {need!r})" for name, (need, got) in unsupported.items() if got != need]
    if wrong:
        raise InteropError("unsupported Hugging Face HuBERT settings: " + ", ".join(wrong))
    norm = hf.get("feat_extract_norm", "group")
    if norm not in ("group", "layer"):
        raise InteropError(f"unknown feat_extract_norm {norm!r}")
    try:
        frontend = FrontendConfig(
            kind="waveform",
            conv_layers=tuple(zip(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"])),
            conv_mode="default" if norm == "group" else "layer_norm",
            conv_bias=bool(hf.get("conv_bias", False)),
        )
        encoder = EncoderConfig(
            num_layers=hf["num_hidden_layers"],
            dim=hf["hidden_size"],
            ffn_dim=hf["intermediate_size"],
            num_heads=hf["num_attention_heads"],
            dropout=hf.get("hidden_dropout", 0.1),
            attention_dropout=hf.get("attention_dropout", 0.1),
            activation_dropout=hf.get("activation_dropout", 0.1),
            layer_drop=hf.get("layerdrop", 0.1),
            layer_norm_first=bool(hf.get("do_stable_layer_norm", False)),
            conv_pos=hf["num_conv_pos_embeddings"],
            conv_pos_groups=hf["num_conv_pos_embedding_groups"],
        )
        config = HubertConfig(frontend=frontend, encoder=encoder, mask=MaskConfig(), num_classes=num_classes,
                              dropout_input=hf.get("feat_proj_dropout", 0.0))
        config.validate()
    except KeyError as err:
        raise InteropError(f"Hugging Face HuBERT config lacks {err}") from err
    except ValueError as err:
        raise InteropError(f"Hugging Face HuBERT config does not make a valid audiossl config: {err}") from err
    return config


def config_to_hf(config: HubertConfig) -> dict[str, Any]:
    """The Hugging Face ``HubertConfig`` dict (config.json) of an audiossl waveform HuBERT.

    The pretraining span mask is not exported: HF's ``mask_time_*`` settings are the
    fine-tuning SpecAugment (HF defaults), not HuBERT's pretraining mask.
    """
    fe, enc = config.frontend, config.encoder
    if fe.kind != "waveform":
        raise InteropError(f"only the waveform front end has a Hugging Face equivalent, not {fe.kind!r}")
    if enc.position_bias != "none":
        raise InteropError(f"Hugging Face HuBERT has no attention position bias ({enc.position_bias!r})")
    channels, kernels, strides = (list(column) for column in zip(*fe.conv_layers))
    return {
        "model_type": "hubert",
        "architectures": ["HubertModel"],
        "conv_dim": channels,
        "conv_kernel": kernels,
        "conv_stride": strides,
        "num_feat_extract_layers": len(channels),
        "conv_bias": fe.conv_bias,
        "feat_extract_norm": "group" if fe.conv_mode == "default" else "layer",
        "feat_extract_activation": "gelu",
        "feat_proj_layer_norm": True,
        "feat_proj_dropout": config.dropout_input,
        "hidden_size": enc.dim,
        "num_hidden_layers": enc.num_layers,
        "num_attention_heads": enc.num_heads,
        "intermediate_size": enc.ffn_dim,
        "hidden_act": "gelu",
        "hidden_dropout": enc.dropout,
        "attention_dropout": enc.attention_dropout,
        "activation_dropout": enc.activation_dropout,
        "layerdrop": enc.layer_drop,
        "do_stable_layer_norm": enc.layer_norm_first,
        "num_conv_pos_embeddings": enc.conv_pos,
        "num_conv_pos_embedding_groups": enc.conv_pos_groups,
        "layer_norm_eps": 1e-5,
    }


def _prefix_pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(re.escape("{i}"), r"(\d+)"))


_FROM_HF = tuple((_prefix_pattern(hf), ours) for hf, ours in _NAMES)
_TO_HF = tuple((_prefix_pattern(ours), hf) for hf, ours in _NAMES)


def _rename(name: str, table: tuple[tuple[re.Pattern, str], ...]) -> str | None:
    """``name`` with its first matching prefix replaced; ``None`` if no prefix matches."""
    for pattern, target in table:
        match = pattern.match(name)
        if match:
            index = match.group(1) if match.groups() else ""
            return target.replace("{i}", index) + name[match.end():]
    return None


def _renamed(state: dict[str, Tensor], table: tuple[tuple[re.Pattern, str], ...], source: str) -> dict[str, Tensor]:
    """``state`` with every name renamed by ``table``; an unknown name is an error naming it."""
    out, unknown = {}, []
    for name, tensor in state.items():
        new = _rename(name, table)
        if new is None:
            unknown.append(name)
        else:
            out[new] = tensor
    if unknown:
        raise InteropError(f"{source} weights with no equivalent: {unknown}")
    return out


def state_dict_from_hf(hf_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """audiossl HuBERT weights (without the head) from a Hugging Face ``HubertModel`` state dict.

    Accepts the ``hubert.`` prefix of ``HubertForCTC`` checkpoints (the CTC head is dropped)
    and the legacy ``weight_g``/``weight_v`` names of the positional convolution.
    Raises :class:`InteropError` naming any weight it does not know.
    """
    state = {}
    for name, tensor in hf_state.items():
        if name.startswith("lm_head."):
            continue
        name = name.removeprefix("hubert.")
        for legacy, current in _LEGACY_WEIGHT_NORM.items():
            if name.endswith(f"pos_conv_embed.conv.{legacy}"):
                name = name.replace(legacy, current)
        state[name] = tensor
    return _renamed(state, _FROM_HF, "Hugging Face")


def state_dict_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Hugging Face ``HubertModel`` state dict from audiossl HuBERT weights (head dropped)."""
    body = {name: tensor for name, tensor in state.items() if not name.startswith(_HEAD_PREFIX)}
    return _renamed(body, _TO_HF, "audiossl")
