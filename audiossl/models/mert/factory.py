"""Build MERT from its config: every part (front end, encoder, heads) is built here from a
:class:`MertConfig`; the model keeps the config for its checkpoint and its objective's settings."""
from __future__ import annotations

from torch import nn

from audiossl.models.components import build_body
from audiossl.models.mert.config import MertConfig
from audiossl.models.mert.model import MertModel
from audiossl.objectives.masked_prediction import MaskedPredictionHead


def build_mert(config: MertConfig) -> MertModel:
    """Validate ``config`` and assemble a randomly initialised :class:`MertModel`: one masked-prediction head
    per codebook (the reference's untied ``final_proj`` chunks) and a linear CQT head."""
    config.validate()
    dim = config.encoder.dim
    heads = nn.ModuleList(MaskedPredictionHead(dim, config.final_dim, config.codebook_size, config.logit_temp)
                          for _ in range(config.num_codebooks))
    return MertModel(config, **build_body(config.frontend, config.encoder, config.dropout_input), heads=heads,
                     cqt_head=nn.Linear(dim, config.cqt_bins))
