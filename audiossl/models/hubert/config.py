"""HuBERT configuration: one nested dataclass, named sizes derived from :meth:`HubertConfig.base`.

Field comments name the fairseq (``fairseq/models/hubert/hubert.py``) equivalent. A config
round-trips through plain JSON-able dicts (:meth:`HubertConfig.to_dict`,
:meth:`HubertConfig.from_dict`), which is what checkpoints store.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

ConvLayers = tuple[tuple[int, int, int], ...]

DEFAULT_CONV_LAYERS: ConvLayers = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
FRONTEND_KINDS = ("waveform", "fbank")
POSITION_BIASES = ("none", "alibi")
CONV_MODES = ("default", "layer_norm")


@dataclass
class FrontendConfig:
    """Front end producing 50 frames/s features.

    kind: ``"waveform"`` (:class:`~audiossl.nn.frontends.ConvWaveformEncoder`) or ``"fbank"``
        (:class:`~audiossl.nn.frontends.FbankSubsampler`).
    conv_layers: ``(channels, kernel, stride)`` per CNN layer (fairseq ``conv_feature_layers``).
    conv_mode: fairseq ``extractor_mode``: ``"default"`` (group norm in the first layer) or
        ``"layer_norm"`` (layer norm in every layer).
    conv_bias: fairseq ``conv_bias``.
    num_mel_bins: fbank dimension fed to the subsampler.
    subsampler_channels: channels of the fbank subsampler convolutions.
    subsampler_extra_layers: stride-1 convolutions after the stride-2 one.
    """

    kind: str = "waveform"
    conv_layers: ConvLayers = DEFAULT_CONV_LAYERS
    conv_mode: str = "default"
    conv_bias: bool = False
    num_mel_bins: int = 80
    subsampler_channels: int = 512
    subsampler_extra_layers: int = 1


@dataclass
class EncoderConfig:
    """Transformer encoder (fairseq names in brackets).

    num_layers [encoder_layers], dim [encoder_embed_dim], ffn_dim [encoder_ffn_embed_dim],
    num_heads [encoder_attention_heads], dropout [dropout], attention_dropout
    [attention_dropout], activation_dropout [activation_dropout], layer_drop
    [encoder_layerdrop], layer_norm_first [layer_norm_first], conv_pos [conv_pos],
    conv_pos_groups [conv_pos_groups].

    position_bias: ``"none"`` (fairseq and the paper: the positional convolution only) or
    ``"alibi"`` (:class:`~audiossl.nn.transformer.AlibiPositionBias` in every layer's attention,
    on top of the positional convolution; no fairseq or HF equivalent).
    """

    num_layers: int = 12
    dim: int = 768
    ffn_dim: int = 3072
    num_heads: int = 12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    layer_drop: float = 0.05
    layer_norm_first: bool = False
    conv_pos: int = 128
    conv_pos_groups: int = 16
    position_bias: str = "none"


@dataclass
class MaskConfig:
    """Span masking: prob [mask_prob], length [mask_length], min_masks [min_masks, 2 in HuBERT]."""

    prob: float = 0.8
    length: int = 10
    min_masks: int = 2


@dataclass
class HubertConfig:
    """HuBERT model.

    num_classes: target clusters (100 for iteration 1 on MFCC k-means, 500 afterwards).
    final_dim: projection size of the prediction head [final_dim].
    logit_temp: cosine-logit temperature [logit_temp].
    unmasked_weight: weight of the unmasked frames' loss [criterion ``pred_nomask_weight``].
    feature_grad_mult: gradient scale into the front end [feature_grad_mult]; 0 freezes it.
    dropout_input: dropout after the feature projection [dropout_input].
    frequency_warp: while pretraining, the fbank bin index of each utterance is scaled by a
        factor drawn uniformly from ``[1 - w, 1 + w]`` (:func:`~audiossl.nn.augment.warp_frequency_axis`)
        while its targets stay those of the unwarped audio, so that the encoder learns to map
        voices of other vocal tract lengths to the same units; 0 disables (fbank front end only).
    """

    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    num_classes: int = 100
    final_dim: int = 256
    logit_temp: float = 0.1
    unmasked_weight: float = 0.0
    feature_grad_mult: float = 0.1
    dropout_input: float = 0.1
    frequency_warp: float = 0.0

    @classmethod
    def base(cls, frontend: str = "waveform") -> HubertConfig:
        """The paper's BASE (fairseq ``hubert_base_librispeech``): 12 × 768, 95M parameters."""
        config = cls(frontend=FrontendConfig(kind=frontend))
        config.validate()
        return config

    @classmethod
    def small(cls, frontend: str = "waveform") -> HubertConfig:
        """BASE shrunk to 6 layers × 256 dim (1024 ffn, 4 heads) and 256 front-end channels.

        For CPU training speed, no attention dropout (dropout on the (T, T) attention maps
        cost 30 % of a training step) and a 32-tap positional convolution (the 128-tap one's
        backward cost another 15 %): 1.65x faster per step on this CPU.
        """
        config = cls.base(frontend)
        config.frontend.conv_layers = tuple((256, kernel, stride) for _, kernel, stride in config.frontend.conv_layers)
        config.frontend.subsampler_channels = 256
        config.encoder.num_layers = 6
        config.encoder.dim = 256
        config.encoder.ffn_dim = 1024
        config.encoder.num_heads = 4
        config.encoder.attention_dropout = 0.0
        config.encoder.conv_pos = 32
        config.validate()
        return config

    @classmethod
    def tiny(cls, frontend: str = "waveform") -> HubertConfig:
        """A 2 × 64 model with 32 front-end channels, for tests."""
        config = cls.base(frontend)
        config.frontend.conv_layers = tuple((32, kernel, stride) for _, kernel, stride in config.frontend.conv_layers)
        config.frontend.subsampler_channels = 32
        config.encoder.num_layers = 2
        config.encoder.dim = 64
        config.encoder.ffn_dim = 256
        config.encoder.num_heads = 4
        config.encoder.conv_pos = 16
        config.encoder.conv_pos_groups = 4
        config.final_dim = 32
        config.validate()
        return config

    def validate(self) -> None:
        """Check cross-field rules; raise ``ValueError`` naming every violated one."""
        errors = []
        fe, enc, mask = self.frontend, self.encoder, self.mask
        if fe.kind not in FRONTEND_KINDS:
            errors.append(f"frontend.kind must be one of {FRONTEND_KINDS}, got {fe.kind!r}")
        if enc.position_bias not in POSITION_BIASES:
            errors.append(f"encoder.position_bias must be one of {POSITION_BIASES}, got {enc.position_bias!r}")
        if fe.conv_mode not in CONV_MODES:
            errors.append(f"frontend.conv_mode must be one of {CONV_MODES}, got {fe.conv_mode!r}")
        if not fe.conv_layers or any(len(layer) != 3 or min(layer) < 1 for layer in fe.conv_layers):
            errors.append(f"frontend.conv_layers must be non-empty (channels, kernel, stride) >= 1: {fe.conv_layers}")
        if fe.num_mel_bins < 1 or fe.subsampler_channels < 1 or fe.subsampler_extra_layers < 0:
            errors.append("frontend.num_mel_bins and subsampler_channels must be >= 1, subsampler_extra_layers >= 0")
        if min(enc.num_layers, enc.dim, enc.ffn_dim, enc.num_heads, enc.conv_pos, enc.conv_pos_groups) < 1:
            errors.append("encoder sizes (num_layers, dim, ffn_dim, num_heads, conv_pos, conv_pos_groups) must be >= 1")
        else:
            if enc.dim % enc.num_heads:
                errors.append(f"encoder.dim {enc.dim} must be divisible by encoder.num_heads {enc.num_heads}")
            if enc.dim % enc.conv_pos_groups:
                errors.append(f"encoder.dim {enc.dim} must be divisible by conv_pos_groups {enc.conv_pos_groups}")
        for name in ("dropout", "attention_dropout", "activation_dropout", "layer_drop"):
            if not 0.0 <= getattr(enc, name) < 1.0:
                errors.append(f"encoder.{name} must be in [0, 1), got {getattr(enc, name)}")
        if not 0.0 <= self.dropout_input < 1.0:
            errors.append(f"dropout_input must be in [0, 1), got {self.dropout_input}")
        if not 0.0 <= mask.prob <= 1.0:
            errors.append(f"mask.prob must be in [0, 1], got {mask.prob}")
        if mask.length < 1 or mask.min_masks < 0:
            errors.append(f"mask.length must be >= 1 and mask.min_masks >= 0, got {mask.length}, {mask.min_masks}")
        if self.num_classes < 1 or self.final_dim < 1:
            errors.append(f"num_classes and final_dim must be >= 1, got {self.num_classes}, {self.final_dim}")
        if self.logit_temp <= 0.0:
            errors.append(f"logit_temp must be > 0, got {self.logit_temp}")
        if self.unmasked_weight < 0.0 or self.feature_grad_mult < 0.0:
            errors.append("unmasked_weight and feature_grad_mult must be >= 0")
        if not 0.0 <= self.frequency_warp < 0.5:
            errors.append(f"frequency_warp must be in [0, 0.5), got {self.frequency_warp}")
        if self.frequency_warp > 0.0 and fe.kind != "fbank":
            errors.append(f"frequency_warp needs the fbank front end, got frontend.kind {fe.kind!r}")
        if errors:
            raise ValueError("invalid HubertConfig:\n  " + "\n  ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of JSON types (tuples become lists)."""
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HubertConfig:
        """Inverse of :meth:`to_dict`; unknown keys are errors. The result is validated."""
        data = dict(data)
        sections = {"frontend": FrontendConfig, "encoder": EncoderConfig, "mask": MaskConfig}
        for name, section in sections.items():
            if name in data:
                data[name] = _build(section, data[name])
        frontend = data.get("frontend")
        if frontend is not None:
            frontend.conv_layers = tuple(tuple(layer) for layer in frontend.conv_layers)
        config = _build(cls, data)
        config.validate()
        return config


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(item) for item in value]
    return value


def _build(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}")
    return cls(**data)


NAMED_CONFIGS: dict[str, Callable[..., HubertConfig]] = {
    "base": HubertConfig.base,
    "small": HubertConfig.small,
    "tiny": HubertConfig.tiny,
}
