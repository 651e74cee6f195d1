"""Build BEST-RQ from its config: every part (front end, encoder, heads) is built here from a
:class:`BestRqConfig`; the model keeps the config for its checkpoint and its objective's settings."""
from __future__ import annotations

from torch import nn

from audiossl.models.best_rq.config import BestRqConfig
from audiossl.models.best_rq.model import BestRqModel
from audiossl.models.components import build_body
from audiossl.nn.random_projection import RandomProjectionQuantizer
from audiossl.objectives.masked_prediction import PredictionCollapseMonitor


def build_best_rq(config: BestRqConfig) -> BestRqModel:
    """Validate ``config`` and assemble a :class:`BestRqModel`: a randomly initialised encoder and heads,
    and the quantizer that ``config.quantizer_seed`` determines."""
    config.validate()
    return BestRqModel(
        config=config,
        **build_body(config.frontend, config.encoder, config.dropout_input),
        quantizer=RandomProjectionQuantizer(config.stack_frames * config.frontend.num_mel_bins, config.codebook_dim,
                                            config.codebook_size, config.num_codebooks, config.quantizer_seed),
        heads=nn.ModuleList(nn.Linear(config.encoder.dim, config.codebook_size) for _ in range(config.num_codebooks)),
        collapse_monitor=PredictionCollapseMonitor(config.collapse_patience),
    )
