"""Parts that every transformer family composes: front-end, encoder and mask configs, their
builders, and the config plumbing (plain-dict round trips, validation).

As fairseq2 builds HuBERT from wav2vec 2.0's parts and torchaudio's ``components.py`` serves
wav2vec 2.0, HuBERT and WavLM alike, a family's config nests :class:`FrontendConfig`,
:class:`EncoderConfig` and :class:`MaskConfig`, and its factory calls :func:`build_frontend`
and :func:`build_encoder`. Field comments name the fairseq equivalents.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from audiossl.config_fields import dataclass_from_dict, plain
from audiossl.errors import ConfigError
from audiossl.nn.mamba import BiMambaBlock, BiMambaEncoder, BiMambaLayer
from audiossl.nn.frontends import ConvBlock, ConvWaveformEncoder, FbankFrames, FbankSubsampler, FeatureProjection
from audiossl.nn.transformer import (
    AlibiPositionBias,
    ConvPositionalEmbedding,
    DynamicChunks,
    EncoderLayer,
    FeedForward,
    PositionBiasGate,
    RelativePositionBias,
    SelfAttention,
    TransformerEncoder,
    init_bert_params,
)

ConvLayers = tuple[tuple[int, int, int], ...]

DEFAULT_CONV_LAYERS: ConvLayers = ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
FRONTEND_KINDS = ("waveform", "fbank", "frames")
POSITION_BIASES = ("none", "alibi", "gated_relative")
ENCODER_KINDS = ("transformer", "bimamba")
CONV_MODES = ("default", "layer_norm")


@dataclass
class FrontendConfig:
    """Front end producing 50 frames/s features (100 for ``"frames"``).

    kind: ``"waveform"`` (:class:`~audiossl.nn.frontends.ConvWaveformEncoder`) or ``"fbank"``
        (:class:`~audiossl.nn.frontends.FbankSubsampler`), or ``"frames"``
        (:class:`~audiossl.nn.frontends.FbankFrames`: normalised fbank at 100 frames/s, TERA's input).
    conv_layers: ``(channels, kernel, stride)`` per CNN layer (fairseq ``conv_feature_layers``).
    conv_mode: fairseq ``extractor_mode``: ``"default"`` (group norm in the first layer) or
        ``"layer_norm"`` (layer norm in every layer).
    conv_bias: fairseq ``conv_bias``.
    num_mel_bins: fbank dimension fed to the subsampler.
    subsampler_channels: channels of the fbank subsampler convolutions.
    subsampler_extra_layers: stride-1 convolutions after the stride-2 one.
    sample_rate: of the waveforms (fairseq task ``sample_rate``): 16 kHz, or MERT's 24 kHz for the
        CNN (fbank front ends take 16 kHz audio).
    """

    kind: str = "waveform"
    conv_layers: ConvLayers = DEFAULT_CONV_LAYERS
    conv_mode: str = "default"
    conv_bias: bool = False
    num_mel_bins: int = 80
    subsampler_channels: int = 512
    subsampler_extra_layers: int = 1
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        self.conv_layers = tuple(tuple(layer) for layer in self.conv_layers)

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = []
        if self.kind not in FRONTEND_KINDS:
            errors.append(f"frontend.kind must be one of {FRONTEND_KINDS}, got {self.kind!r}")
        if self.conv_mode not in CONV_MODES:
            errors.append(f"frontend.conv_mode must be one of {CONV_MODES}, got {self.conv_mode!r}")
        if not self.conv_layers or any(len(layer) != 3 or min(layer) < 1 for layer in self.conv_layers):
            errors.append(f"frontend.conv_layers must be non-empty (channels, kernel, stride) >= 1: {self.conv_layers}")
        if self.num_mel_bins < 1 or self.subsampler_channels < 1 or self.subsampler_extra_layers < 0:
            errors.append("frontend.num_mel_bins and subsampler_channels must be >= 1, subsampler_extra_layers >= 0")
        if self.sample_rate < 1 or (self.kind != "waveform" and self.sample_rate != 16000):
            errors.append(f"frontend.sample_rate must be >= 1, and 16000 for fbank front ends, got {self.sample_rate}")
        return errors


@dataclass
class EncoderConfig:
    """The encoder: a transformer (fairseq names in brackets) or a bidirectional Mamba stack.

    kind: ``"transformer"`` (:class:`~audiossl.nn.transformer.TransformerEncoder`) or ``"bimamba"``
    (:class:`~audiossl.nn.mamba.BiMambaEncoder`: pre-norm bidirectional Mamba-2 layers, SSAMBA /
    Vision Mamba style, no positional embedding; it uses ``num_layers``, ``dim``, ``dropout``,
    ``layer_drop`` and the ``state_dim``, ``expand``, ``head_dim``, ``conv_kernel``, ``chunk_size``
    fields below (mamba-ssm ``d_state``, ``expand``, ``headdim``, ``d_conv``, ``chunk_size``),
    ``segment_frames`` and ``segment_above``, and none of the attention fields).

    segment_frames, segment_above: bimamba layers run sequences longer than ``segment_above`` frames
    in segments of ``segment_frames`` (a multiple of ``chunk_size``; 0: never), recomputed in the
    backward pass (:class:`~audiossl.nn.mamba.SegmentedLayer`, where the chunked scan runs, not
    mamba-ssm's CUDA kernel): activation memory of one segment instead of the whole sequence, for
    about 1.5-1.6 times the layer's time (``bench/mamba.py``); shorter sequences keep the faster
    unsegmented layer. Longer segments are faster and take more memory.

    num_layers [encoder_layers], dim [encoder_embed_dim], ffn_dim [encoder_ffn_embed_dim],
    num_heads [encoder_attention_heads], dropout [dropout], attention_dropout
    [attention_dropout], activation_dropout [activation_dropout], layer_drop
    [encoder_layerdrop], layer_norm_first [layer_norm_first], conv_pos [conv_pos],
    conv_pos_groups [conv_pos_groups].

    position_bias: an attention bias on top of the positional convolution: ``"none"`` (wav2vec 2.0,
    HuBERT), ``"gated_relative"`` (WavLM: :class:`~audiossl.nn.transformer.RelativePositionBias`
    over ``position_buckets`` buckets up to ``max_distance`` frames, gated per query in every
    layer by a :class:`~audiossl.nn.transformer.PositionBiasGate`) or ``"alibi"``
    (:class:`~audiossl.nn.transformer.AlibiPositionBias`; no fairseq or HF equivalent).
    position_buckets [num_buckets], max_distance [max_distance]: used by ``"gated_relative"`` only.

    dynamic_chunks: ``(min, max)`` frames: chunkwise attention in training (GigaAM, WeNet's dynamic
    chunks), each batch attending within chunks of a size drawn from that range (full left context, no
    look-ahead past the chunk), or with probability ``full_context_prob`` over the whole utterance;
    ``()`` (the default): always full context. Transformer only; inference chooses its chunk with
    :meth:`~audiossl.models.encoder.SpeechEncoder.set_attention_chunk`.
    """

    kind: str = "transformer"
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
    position_buckets: int = 320
    max_distance: int = 800
    dynamic_chunks: tuple[int, ...] = ()
    full_context_prob: float = 0.5
    state_dim: int = 16
    expand: int = 2
    head_dim: int = 64
    conv_kernel: int = 4
    chunk_size: int = 64
    segment_frames: int = 1024
    segment_above: int = 8192

    def __post_init__(self) -> None:
        self.dynamic_chunks = tuple(self.dynamic_chunks)

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = []
        if self.kind not in ENCODER_KINDS:
            errors.append(f"encoder.kind must be one of {ENCODER_KINDS}, got {self.kind!r}")
        elif self.kind == "bimamba":
            return errors + self._mamba_errors()
        if self.dynamic_chunks and (len(self.dynamic_chunks) != 2 or not 1 <= self.dynamic_chunks[0] <= self.dynamic_chunks[1]):
            errors.append(f"encoder.dynamic_chunks must be () or (min, max) frames with 1 <= min <= max, "
                          f"got {list(self.dynamic_chunks)}")
        if not 0.0 <= self.full_context_prob <= 1.0:
            errors.append(f"encoder.full_context_prob must be in [0, 1], got {self.full_context_prob}")
        if self.position_bias not in POSITION_BIASES:
            errors.append(f"encoder.position_bias must be one of {POSITION_BIASES}, got {self.position_bias!r}")
        buckets_ok = self.position_buckets >= 4 and not self.position_buckets % 4 and self.max_distance > self.position_buckets // 4
        if self.position_bias == "gated_relative" and not buckets_ok:
            errors.append(f"encoder.position_buckets must be a multiple of 4 (>= 4) and max_distance > "
                          f"position_buckets / 4, got {self.position_buckets}, {self.max_distance}")
        sizes = (self.num_layers, self.dim, self.ffn_dim, self.num_heads, self.conv_pos, self.conv_pos_groups)
        if min(sizes) < 1:
            errors.append("encoder sizes (num_layers, dim, ffn_dim, num_heads, conv_pos, conv_pos_groups) must be >= 1")
        else:
            if self.dim % self.num_heads:
                errors.append(f"encoder.dim {self.dim} must be divisible by encoder.num_heads {self.num_heads}")
            if self.dim % self.conv_pos_groups:
                errors.append(f"encoder.dim {self.dim} must be divisible by conv_pos_groups {self.conv_pos_groups}")
        return errors + self._rate_errors(("dropout", "attention_dropout", "activation_dropout", "layer_drop"))

    def _mamba_errors(self) -> list[str]:
        errors = []
        if self.position_bias != "none":
            errors.append(f"encoder.position_bias must be 'none' for a bimamba encoder, got {self.position_bias!r}")
        if self.dynamic_chunks:
            errors.append("encoder.dynamic_chunks (chunkwise attention) needs a transformer encoder, not bimamba")
        sizes = (self.num_layers, self.dim, self.state_dim, self.expand, self.head_dim, self.conv_kernel, self.chunk_size)
        if min(sizes) < 1:
            errors.append("encoder sizes (num_layers, dim, state_dim, expand, head_dim, conv_kernel, chunk_size) "
                          "must be >= 1")
        else:
            if self.expand * self.dim % self.head_dim:
                errors.append(f"encoder.expand * encoder.dim = {self.expand * self.dim} must be a multiple of "
                              f"encoder.head_dim {self.head_dim}")
            if self.segment_frames < 0 or self.segment_frames % self.chunk_size:
                errors.append(f"encoder.segment_frames must be 0 or a positive multiple of encoder.chunk_size "
                              f"{self.chunk_size}, got {self.segment_frames}")
            if self.segment_above < self.segment_frames:
                errors.append(f"encoder.segment_above must be >= encoder.segment_frames, got {self.segment_above} "
                              f"< {self.segment_frames}")
        return errors + self._rate_errors(("dropout", "layer_drop"))

    def _rate_errors(self, names: tuple[str, ...]) -> list[str]:
        return [f"encoder.{name} must be in [0, 1), got {getattr(self, name)}"
                for name in names if not 0.0 <= getattr(self, name) < 1.0]


@dataclass
class MaskConfig:
    """Span masking: prob [mask_prob], length [mask_length], min_masks [min_masks, 2 in HuBERT]."""

    prob: float = 0.8
    length: int = 10
    min_masks: int = 2

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = []
        if not 0.0 <= self.prob <= 1.0:
            errors.append(f"mask.prob must be in [0, 1], got {self.prob}")
        if self.length < 1 or self.min_masks < 0:
            errors.append(f"mask.length must be >= 1 and mask.min_masks >= 0, got {self.length}, {self.min_masks}")
        return errors

    def prediction_errors(self, unmasked_weight: float = 0.0) -> list[str]:
        """The rule of an objective on the masked frames: a mask of no frame (prob 0 and min_masks 0) leaves it
        nothing to predict (a zero loss, or no rows for a quantizer), unless unmasked frames count too."""
        if self.prob == 0.0 and self.min_masks == 0 and unmasked_weight == 0.0:
            return ["mask.prob 0 with mask.min_masks 0 masks no frame, which leaves nothing to predict: raise either"]
        return []


class ModelConfig:
    """Base of every family's config dataclass: its family name, validation and plain-dict round trips.

    Subclasses set ``family`` (the registry name checkpoints store) and implement
    :meth:`errors`; nested dataclass fields (front end, encoder, mask) are rebuilt by
    :meth:`from_dict` from their type annotations.
    """

    family: ClassVar[str] = ""

    def errors(self) -> list[str]:
        raise NotImplementedError

    def validate(self) -> None:
        """Raise :class:`~audiossl.errors.ConfigError` listing every violated rule."""
        errors = self.errors()
        if errors:
            raise ConfigError(f"invalid {type(self).__name__}:\n  " + "\n  ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of JSON types (tuples become lists)."""
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Inverse of :meth:`to_dict`; unknown keys are errors naming them. The result is validated."""
        config = dataclass_from_dict(cls, data, cls.__name__)
        config.validate()
        return config


def resize_body(frontend: FrontendConfig, encoder: EncoderConfig, size: str) -> None:
    """Shrink a BASE front end and encoder, in place, to a size every family shares.

    ``"small"``, for CPU training: 6 x 256 (1024 ffn, 4 heads), 256 front-end channels, no
    attention dropout (dropout on the (T, T) attention maps cost 30 % of a training step) and a
    32-tap positional convolution (the 128-tap one's backward cost another 15 %): 1.65x faster
    per step on a 2-core CPU. ``"tiny"``, for tests: 2 x 64 (256 ffn, 4 heads), 32 channels.
    ``"large"``: the papers' LARGE body, 24 x 1024 (4096 ffn, 16 heads), pre-norm, layer-norm CNN.
    """
    if size == "large":
        frontend.conv_mode = "layer_norm"
        encoder.num_layers, encoder.dim, encoder.ffn_dim, encoder.num_heads = 24, 1024, 4096, 16
        encoder.layer_norm_first = True
        return
    channels, layers, dim, ffn_dim = {"small": (256, 6, 256, 1024), "tiny": (32, 2, 64, 256)}[size]
    frontend.conv_layers = tuple((channels, kernel, stride) for _, kernel, stride in frontend.conv_layers)
    frontend.subsampler_channels = channels
    encoder.num_layers, encoder.dim, encoder.ffn_dim, encoder.num_heads = layers, dim, ffn_dim, 4
    if size == "small":
        encoder.attention_dropout, encoder.conv_pos = 0.0, 32
    else:
        encoder.conv_pos, encoder.conv_pos_groups = 16, 4


def validation_errors(frontend: FrontendConfig, encoder: EncoderConfig, mask: MaskConfig) -> list[str]:
    """The shared parts' violated rules (see each part's ``errors``)."""
    return frontend.errors() + encoder.errors() + mask.errors()


def build_frontend(config: FrontendConfig) -> ConvWaveformEncoder | FbankSubsampler | FbankFrames:
    """The CNN waveform encoder, the fbank subsampler or the fbank frames described by ``config``."""
    if config.kind == "fbank":
        return FbankSubsampler(config.num_mel_bins, config.subsampler_channels, config.subsampler_extra_layers)
    if config.kind == "frames":
        return FbankFrames(config.num_mel_bins)
    blocks = []
    in_channels = 1
    for index, (channels, kernel, stride) in enumerate(config.conv_layers):
        if config.conv_mode == "layer_norm":
            norm = "layer"
        else:
            norm = "group" if index == 0 else None
        blocks.append(ConvBlock(in_channels, channels, kernel, stride, config.conv_bias, norm))
        in_channels = channels
    return ConvWaveformEncoder(blocks, config.sample_rate)


def build_encoder(config: EncoderConfig) -> TransformerEncoder | BiMambaEncoder:
    """The encoder ``config.kind`` names: a transformer with conv positional embedding and the
    configured attention position bias, initialised as fairseq (BERT init), or a bidirectional Mamba stack."""
    if config.kind == "bimamba":
        return build_bimamba_encoder(config)
    gated = config.position_bias == "gated_relative"
    position_bias = None
    if gated:
        position_bias = RelativePositionBias(config.num_heads, config.position_buckets, config.max_distance)
    elif config.position_bias == "alibi":
        position_bias = AlibiPositionBias(config.num_heads)
    layers = [
        EncoderLayer(
            attention=SelfAttention(config.dim, config.num_heads, config.attention_dropout,
                                    PositionBiasGate(config.num_heads, config.dim // config.num_heads) if gated else None),
            feed_forward=FeedForward(config.dim, config.ffn_dim, config.activation_dropout, config.dropout),
            dropout=config.dropout,
            layer_norm_first=config.layer_norm_first,
        )
        for _ in range(config.num_layers)
    ]
    encoder = TransformerEncoder(
        pos_embedding=ConvPositionalEmbedding(config.dim, config.conv_pos, config.conv_pos_groups),
        layers=layers,
        layer_norm=nn.LayerNorm(config.dim),
        layer_norm_first=config.layer_norm_first,
        dropout=config.dropout,
        layer_drop=config.layer_drop,
        position_bias=position_bias,
        chunks=DynamicChunks(*config.dynamic_chunks, config.full_context_prob) if config.dynamic_chunks else None,
    )
    encoder.apply(init_bert_params)
    return encoder


def build_bimamba_encoder(config: EncoderConfig) -> BiMambaEncoder:
    """Bidirectional Mamba-2 layers, initialised as mamba-ssm: PyTorch's defaults, each output
    projection scaled by ``1 / sqrt(num_layers)`` (its ``rescale_prenorm_residual``)."""
    layers = []
    for _ in range(config.num_layers):
        block = BiMambaBlock(config.dim, config.state_dim, config.expand, config.head_dim, config.conv_kernel,
                             config.chunk_size)
        with torch.no_grad():
            block.out_proj.weight /= math.sqrt(config.num_layers)
        layers.append(BiMambaLayer(block, config.dropout, config.segment_frames, config.segment_above))
    return BiMambaEncoder(layers, nn.LayerNorm(config.dim), config.dropout, config.layer_drop)


def build_body(frontend: FrontendConfig, encoder: EncoderConfig, dropout_input: float) -> dict[str, nn.Module]:
    """The parts of the wav2vec 2.0 body every family shares, built in this order (the random
    initialisation depends on it): ``frontend``, ``feature_projection`` (with ``dropout_input``)
    and ``encoder``, keyed as :class:`~audiossl.models.encoder.FrontendTransformer` takes them."""
    built_frontend = build_frontend(frontend)
    return {
        "frontend": built_frontend,
        "feature_projection": FeatureProjection(built_frontend.output_dim, encoder.dim, dropout_input),
        "encoder": build_encoder(encoder),
    }


def gumbel_quantizer_errors(groups: int, entries: int, dim: int, max_temperature: float, min_temperature: float,
                            temperature_decay: float) -> list[str]:
    """Violated rules of a Gumbel product quantizer's settings (fields ``codebook_groups``,
    ``codebook_entries``, ``codebook_dim``, ``max_temperature``, ``min_temperature``, ``temperature_decay``)."""
    errors = []
    if min(groups, entries, dim) < 1:
        errors.append("codebook_groups, codebook_entries and codebook_dim must be >= 1")
    elif dim % groups:
        errors.append(f"codebook_dim {dim} must be divisible by codebook_groups {groups}")
    if not 0.0 < min_temperature <= max_temperature:
        errors.append(f"need 0 < min_temperature <= max_temperature, got {min_temperature}, {max_temperature}")
    if not 0.0 < temperature_decay <= 1.0:
        errors.append(f"temperature_decay must be in (0, 1], got {temperature_decay}")
    return errors
