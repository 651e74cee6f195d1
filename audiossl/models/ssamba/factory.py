"""Build SSAMBA from its config: every part (front end, encoder, heads) is built here from a
:class:`SsambaConfig`; the model keeps the config for its checkpoint and its objective's settings."""
from __future__ import annotations

from torch import nn

from audiossl.models.components import build_encoder
from audiossl.models.ssamba.config import SsambaConfig
from audiossl.models.ssamba.model import SsambaModel
from audiossl.nn.frontends import FbankPatches, FeatureProjection


def patch_head(dim: int, patch_dim: int) -> nn.Sequential:
    """SSAST's prediction layer: Linear → ReLU → Linear onto a patch."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, patch_dim))


def build_ssamba(config: SsambaConfig) -> SsambaModel:
    """Validate ``config`` and assemble a randomly initialised :class:`SsambaModel`."""
    config.validate()
    frontend = FbankPatches(config.num_mel_bins, config.patch_frequency, config.patch_time)
    dim = config.encoder.dim
    return SsambaModel(
        config=config,
        frontend=frontend,
        feature_projection=FeatureProjection(frontend.output_dim, dim, config.dropout_input, layer_norm=False),
        encoder=build_encoder(config.encoder),
        discriminative_head=patch_head(dim, frontend.output_dim),
        generative_head=patch_head(dim, frontend.output_dim),
    )
