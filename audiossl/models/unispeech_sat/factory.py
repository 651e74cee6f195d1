"""Build UniSpeech-SAT from its config: every part (front end, encoder, heads) is built here from a
:class:`UniSpeechSatConfig`; the model keeps the config for its checkpoint and its objective's settings."""
from __future__ import annotations

from torch import nn

from audiossl.models.hubert.factory import masked_prediction_parts
from audiossl.models.unispeech_sat.config import UniSpeechSatConfig
from audiossl.models.unispeech_sat.model import UniSpeechSatModel
from audiossl.nn.quantizer import GumbelProductQuantizer


def build_unispeech_sat(config: UniSpeechSatConfig) -> UniSpeechSatModel:
    """Validate ``config`` and assemble a randomly initialised :class:`UniSpeechSatModel`."""
    parts = masked_prediction_parts(config)
    dim = config.encoder.dim
    return UniSpeechSatModel(
        **parts,
        utterance_norm=nn.LayerNorm(dim) if config.encoder.layer_norm_first else nn.Identity(),
        quantizer=GumbelProductQuantizer(dim, config.codebook_groups, config.codebook_entries, config.codebook_dim),
        project_q=nn.Linear(config.codebook_dim, config.final_dim),
        speaker_proj=nn.Linear(dim, config.final_dim),
    )
