"""Build a CTC model from its config: the only code that reads a :class:`CtcConfig`."""
from __future__ import annotations

from torch import nn

from audiossl.models.ctc.config import CtcConfig
from audiossl.models.ctc.model import CtcModel
from audiossl.registry import get_family
from audiossl.text.tokenizer import tokenizer_from_dict


def build_ctc(config: CtcConfig) -> CtcModel:
    """Encoder (its pretraining head dropped), dropout and a linear head over ``vocab_size`` tokens."""
    family = get_family(config.encoder_family)
    encoder = family.build(family.config_class.from_dict(config.encoder))
    encoder.head = None  # the pretraining objective is not part of the ASR model
    dim = encoder.config.encoder.dim
    return CtcModel(config, encoder, nn.Dropout(config.final_dropout), nn.Linear(dim, config.vocab_size),
                    tokenizer_from_dict(config.tokenizer))
