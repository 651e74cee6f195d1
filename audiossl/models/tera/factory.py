"""Build TERA from its config: every part (front end, encoder, heads) is built here from a
:class:`TeraConfig`; the model keeps the config for its checkpoint and its objective's settings."""
from __future__ import annotations

from torch import nn

from audiossl.models.components import build_body
from audiossl.models.tera.config import TeraConfig
from audiossl.models.tera.model import TeraModel


def reconstruction_head(dim: int, num_mel_bins: int) -> nn.Sequential:
    """TERA's prediction head (s3prl ``TransformerSpecPredictionHead``): Linear → GELU → LayerNorm → Linear."""
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Linear(dim, num_mel_bins))


def build_tera(config: TeraConfig) -> TeraModel:
    """Validate ``config`` and assemble a randomly initialised :class:`TeraModel`."""
    config.validate()
    return TeraModel(config=config, **build_body(config.frontend, config.encoder, config.dropout_input),
                     head=reconstruction_head(config.encoder.dim, config.frontend.num_mel_bins))
