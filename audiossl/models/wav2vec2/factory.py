"""Build wav2vec 2.0 from its config: the only code that reads a :class:`Wav2Vec2Config`."""
from __future__ import annotations

from torch import nn

from audiossl.models.components import build_encoder, build_frontend
from audiossl.models.wav2vec2.config import Wav2Vec2Config
from audiossl.models.wav2vec2.model import Wav2Vec2Model
from audiossl.nn.frontends import FeatureProjection
from audiossl.nn.quantizer import GumbelProductQuantizer
from audiossl.objectives.contrastive import CollapseMonitor


def build_wav2vec2(config: Wav2Vec2Config) -> Wav2Vec2Model:
    """Validate ``config`` and assemble a randomly initialised :class:`Wav2Vec2Model`."""
    config.validate()
    frontend = build_frontend(config.frontend)
    return Wav2Vec2Model(
        config=config,
        frontend=frontend,
        feature_projection=FeatureProjection(frontend.output_dim, config.encoder.dim, config.dropout_input),
        encoder=build_encoder(config.encoder),
        feature_dropout=nn.Dropout(config.dropout_features),
        quantizer=GumbelProductQuantizer(frontend.output_dim, config.codebook_groups, config.codebook_entries,
                                         config.codebook_dim),
        project_q=nn.Linear(config.codebook_dim, config.final_dim),
        final_proj=nn.Linear(config.encoder.dim, config.final_dim),
        collapse_monitor=CollapseMonitor(config.codebook_groups * config.codebook_entries, config.num_distractors,
                                         config.collapse_fraction, config.collapse_patience),
    )
