"""Build wav2vec 2.0 from its config: every part (front end, encoder, heads) is built here from a
:class:`Wav2Vec2Config`; the model keeps the config for its checkpoint and its objective's settings."""
from __future__ import annotations

from torch import nn

from audiossl.models.components import build_body
from audiossl.models.wav2vec2.config import Wav2Vec2Config
from audiossl.models.wav2vec2.model import Wav2Vec2Model
from audiossl.nn.quantizer import GumbelProductQuantizer
from audiossl.objectives.contrastive import CollapseMonitor


def build_wav2vec2(config: Wav2Vec2Config) -> Wav2Vec2Model:
    """Validate ``config`` and assemble a randomly initialised :class:`Wav2Vec2Model`."""
    config.validate()
    body = build_body(config.frontend, config.encoder, config.dropout_input)
    return Wav2Vec2Model(
        config=config,
        **body,
        feature_dropout=nn.Dropout(config.dropout_features),
        quantizer=GumbelProductQuantizer(body["frontend"].output_dim, config.codebook_groups, config.codebook_entries,
                                         config.codebook_dim),
        project_q=nn.Linear(config.codebook_dim, config.final_dim),
        final_proj=nn.Linear(config.encoder.dim, config.final_dim),
        collapse_monitor=CollapseMonitor(config.codebook_groups * config.codebook_entries, config.num_distractors,
                                         config.collapse_fraction, config.collapse_patience),
    )
