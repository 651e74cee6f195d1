"""Build HuBERT from its config: the only code that reads a :class:`HubertConfig`."""
from __future__ import annotations

from torch import nn

from audiossl.models.hubert.config import EncoderConfig, FrontendConfig, HubertConfig
from audiossl.models.hubert.model import HubertModel
from audiossl.nn.frontends import ConvBlock, ConvWaveformEncoder, FbankSubsampler, FeatureProjection
from audiossl.nn.transformer import (
    AlibiPositionBias,
    ConvPositionalEmbedding,
    EncoderLayer,
    FeedForward,
    SelfAttention,
    TransformerEncoder,
    init_bert_params,
)
from audiossl.objectives.masked_prediction import MaskedPredictionHead


def build_frontend(config: FrontendConfig) -> ConvWaveformEncoder | FbankSubsampler:
    """The CNN waveform encoder or the fbank subsampler described by ``config``."""
    if config.kind == "fbank":
        return FbankSubsampler(config.num_mel_bins, config.subsampler_channels, config.subsampler_extra_layers)
    blocks = []
    in_channels = 1
    for index, (channels, kernel, stride) in enumerate(config.conv_layers):
        if config.conv_mode == "layer_norm":
            norm = "layer"
        else:
            norm = "group" if index == 0 else None
        blocks.append(ConvBlock(in_channels, channels, kernel, stride, config.conv_bias, norm))
        in_channels = channels
    return ConvWaveformEncoder(blocks)


def build_encoder(config: EncoderConfig) -> TransformerEncoder:
    """Transformer encoder with conv positional embedding (and the configured attention position
    bias, one module shared by every layer), initialised as fairseq (BERT init)."""
    position_bias = AlibiPositionBias(config.num_heads) if config.position_bias == "alibi" else None
    layers = [
        EncoderLayer(
            attention=SelfAttention(config.dim, config.num_heads, config.attention_dropout, position_bias),
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
    )
    encoder.apply(init_bert_params)
    return encoder


def build_hubert(config: HubertConfig) -> HubertModel:
    """Validate ``config`` and assemble a randomly initialised :class:`HubertModel`."""
    config.validate()
    frontend = build_frontend(config.frontend)
    return HubertModel(
        config=config,
        frontend=frontend,
        feature_projection=FeatureProjection(frontend.output_dim, config.encoder.dim, config.dropout_input),
        encoder=build_encoder(config.encoder),
        head=MaskedPredictionHead(config.encoder.dim, config.final_dim, config.num_classes, config.logit_temp),
    )
