"""The Hugging Face ``transformers`` layout of the wav2vec 2.0 body that HuBERT, wav2vec 2.0 and
WavLM share: weight names and config keys of the CNN, the feature projection and the transformer
(WavLM's gated relative position bias included: :data:`POSITION_BIAS_NAMES`).

Pure functions over plain dicts and state dicts (no file I/O, no ``transformers`` import); each
family's ``interop.py`` adds its own parts (heads, quantizer) and its config's other keys.
"""
from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from audiossl.config_fields import checked_value
from audiossl.errors import ConfigError, InteropError
from audiossl.models.components import EncoderConfig, FrontendConfig

# (Hugging Face name prefix, audiossl name prefix); {i} stands for a layer index.
BODY_NAMES: tuple[tuple[str, str], ...] = (
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
# WavLM's relative position bias: HF keeps the bucket table in layer 0's attention, a gate in every layer's.
POSITION_BIAS_NAMES: tuple[tuple[str, str], ...] = (
    ("encoder.layers.0.attention.rel_attn_embed.", "encoder.position_bias.embedding."),
    ("encoder.layers.{i}.attention.gru_rel_pos_linear.", "encoder.layers.{i}.attention.gate.linear."),
    ("encoder.layers.{i}.attention.gru_rel_pos_const", "encoder.layers.{i}.attention.gate.const"),
)
# Older transformers versions (and fairseq) store the weight-normalised positional conv as g and v.
_LEGACY_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}

SAMPLE_RATE = 16000  # of the audio of every Hugging Face and torchaudio speech model
SETTING_TYPES: dict[str, Any] = {
    **dict.fromkeys(("model_type", "feat_extract_norm", "hidden_act", "feat_extract_activation"), str),
    "architectures": list[str],
    **dict.fromkeys(("conv_dim", "conv_kernel", "conv_stride"), list[int]),
    **dict.fromkeys(("conv_bias", "do_stable_layer_norm", "feat_proj_layer_norm", "conv_pos_batch_norm"), bool),
    **dict.fromkeys(("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
                     "num_conv_pos_embeddings", "num_conv_pos_embedding_groups", "num_buckets", "max_bucket_distance",
                     "proj_codevector_dim", "num_codevector_groups", "num_codevectors_per_group", "codevector_dim",
                     "num_negatives"), int),
    **dict.fromkeys(("hidden_dropout", "attention_dropout", "activation_dropout", "layerdrop", "feat_proj_dropout",
                     "feat_quantizer_dropout", "contrastive_logits_temperature", "diversity_loss_weight",
                     "layer_norm_eps"), float),
}
"""The config.json keys that the families' converters read, by type."""


def checked_settings(hf: Any, source: str) -> dict[str, Any]:
    """A config.json's dict with each key of :data:`SETTING_TYPES` checked against its type (a null counts
    as absent); :class:`~audiossl.errors.InteropError` names ``source`` and the key."""
    if not isinstance(hf, dict):
        raise InteropError(f"{source}: holds a {type(hf).__name__}, not a mapping of settings")
    checked = {}
    for key, value in hf.items():
        if value is not None and key in SETTING_TYPES:
            try:
                checked[key] = checked_value(value, SETTING_TYPES[key], f"{source}: {key}")
            except ConfigError as err:
                raise InteropError(str(err)) from None
        elif value is not None:
            checked[key] = value
    return checked


def _prefix_pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(re.escape("{i}"), r"(\d+)"))


def _rename(name: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    """``name`` with its first matching prefix replaced; ``None`` if no prefix matches."""
    for pattern, target in table:
        match = pattern.match(name)
        if match:
            index = match.group(1) if match.groups() else ""
            return target.replace("{i}", index) + name[match.end():]
    return None


def rename_weights(state: dict[str, Tensor], names: tuple[tuple[str, str], ...], to_hf: bool,
                   source: str) -> dict[str, Tensor]:
    """``state`` renamed by ``names`` (HF prefix, audiossl prefix) pairs, towards HF when ``to_hf``.

    A weight no pair names is an :class:`~audiossl.errors.InteropError` naming it (``source``: whose weights).
    """
    pairs = [(ours, hf) if to_hf else (hf, ours) for hf, ours in names]
    table = [(_prefix_pattern(old), new) for old, new in pairs]
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


def hf_weights(hf_state: dict[str, Tensor], base_prefix: str, dropped: tuple[str, ...] = ()) -> dict[str, Tensor]:
    """An HF state dict without the task model's ``base_prefix`` (``"hubert."``, ``"wav2vec2."``), the
    weights starting with ``dropped`` (task heads audiossl does not keep), legacy weight-norm names modernised."""
    state = {}
    for name, tensor in hf_state.items():
        if name.startswith(dropped):
            continue
        name = name.removeprefix(base_prefix)
        for legacy, current in _LEGACY_WEIGHT_NORM.items():
            if name.endswith(f"pos_conv_embed.conv.{legacy}"):
                name = name.replace(legacy, current)
        state[name] = tensor
    return state


def body_from_hf(hf: dict[str, Any], family: str, position_bias: str = "none") -> tuple[FrontendConfig, EncoderConfig]:
    """The front-end and encoder configs of a Hugging Face config dict (config.json) of ``family``,
    whose attention has ``position_bias`` (``"gated_relative"``: WavLM's ``num_buckets`` and
    ``max_bucket_distance``).

    Missing optional keys take Hugging Face's defaults; a missing size or a setting with no exact
    audiossl equivalent is an :class:`~audiossl.errors.InteropError`.
    """
    unsupported = {
        "hidden_act": ("gelu", hf.get("hidden_act", "gelu")),
        "feat_extract_activation": ("gelu", hf.get("feat_extract_activation", "gelu")),
        "feat_proj_layer_norm": (True, hf.get("feat_proj_layer_norm", True)),
        "conv_pos_batch_norm": (False, hf.get("conv_pos_batch_norm", False)),
        "layer_norm_eps": (1e-5, hf.get("layer_norm_eps", 1e-5)),
    }
    wrong = [f"{name}={got!r} (need {need!r})" for name, (need, got) in unsupported.items() if got != need]
    if wrong:
        raise InteropError(f"unsupported Hugging Face {family} settings: " + ", ".join(wrong))
    norm = hf.get("feat_extract_norm", "group")
    if norm not in ("group", "layer"):
        raise InteropError(f"unknown feat_extract_norm {norm!r}")
    if not len(hf.get("conv_dim", ())) == len(hf.get("conv_kernel", ())) == len(hf.get("conv_stride", ())):
        raise InteropError(f"Hugging Face {family} config's conv_dim, conv_kernel and conv_stride differ in length")
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
            position_bias=position_bias,
            position_buckets=hf.get("num_buckets", 320),
            max_distance=hf.get("max_bucket_distance", 800),
        )
    except KeyError as err:
        raise InteropError(f"Hugging Face {family} config lacks {err}") from err
    return frontend, encoder


def body_to_hf(frontend: FrontendConfig, encoder: EncoderConfig, dropout_input: float,
               position_bias: str = "none") -> dict[str, Any]:
    """The Hugging Face config keys of a front end, an encoder and the projection's dropout.

    Only the waveform front end at 16 kHz has an HF equivalent, and only the attention position bias of the
    HF class written (``position_bias``: ``"none"``, or ``"gated_relative"`` for WavLM).
    """
    if frontend.kind != "waveform":
        raise InteropError(f"only the waveform front end has a Hugging Face equivalent, not {frontend.kind!r}")
    if encoder.kind != "transformer":
        raise InteropError(f"only the transformer encoder has a Hugging Face equivalent, not {encoder.kind!r}")
    if frontend.sample_rate != SAMPLE_RATE:  # neither config.json nor torchaudio's model has a sample rate
        raise InteropError(f"only {SAMPLE_RATE} Hz models have a Hugging Face or torchaudio equivalent (neither "
                           f"records a sample rate); this model takes {frontend.sample_rate} Hz")
    if encoder.position_bias != position_bias:
        raise InteropError(f"this Hugging Face class has attention position bias {position_bias!r}, "
                           f"the model has {encoder.position_bias!r}")
    channels, kernels, strides = (list(column) for column in zip(*frontend.conv_layers))
    return {
        "conv_dim": channels,
        "conv_kernel": kernels,
        "conv_stride": strides,
        "num_feat_extract_layers": len(channels),
        "conv_bias": frontend.conv_bias,
        "feat_extract_norm": "group" if frontend.conv_mode == "default" else "layer",
        "feat_extract_activation": "gelu",
        "feat_proj_layer_norm": True,
        "feat_proj_dropout": dropout_input,
        "hidden_size": encoder.dim,
        "num_hidden_layers": encoder.num_layers,
        "num_attention_heads": encoder.num_heads,
        "intermediate_size": encoder.ffn_dim,
        "hidden_act": "gelu",
        "hidden_dropout": encoder.dropout,
        "attention_dropout": encoder.attention_dropout,
        "activation_dropout": encoder.activation_dropout,
        "layerdrop": encoder.layer_drop,
        "do_stable_layer_norm": encoder.layer_norm_first,
        "num_conv_pos_embeddings": encoder.conv_pos,
        "num_conv_pos_embedding_groups": encoder.conv_pos_groups,
        "layer_norm_eps": 1e-5,
    }
