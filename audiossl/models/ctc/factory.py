"""Build a CTC model from its config: the encoder and the output layer are built here from a
:class:`CtcConfig`; the model keeps the config for its checkpoint and its objective's settings."""
from __future__ import annotations

from typing import Any

from torch import nn

from audiossl.models.ctc.config import CtcConfig
from audiossl.models.ctc.model import CtcModel
from audiossl.models.encoder import SpeechEncoder
from audiossl.registry import build_model
from audiossl.text.tokenizer import Tokenizer, tokenizer_from_dict


def build_ctc(config: CtcConfig) -> CtcModel:
    """The encoder family's model (its pretraining parts dropped), dropout and a linear head over ``vocab_size`` tokens."""
    config.validate()
    encoder = build_model(config.encoder_family, config.encoder).encoder_only()
    head = nn.Linear(encoder.hidden_sizes[-1], config.vocab_size)
    return CtcModel(config, encoder, nn.Dropout(config.final_dropout), head, tokenizer_from_dict(config.tokenizer))


def ctc_over_encoder(encoder: SpeechEncoder, tokenizer: Tokenizer, settings: dict[str, Any],
                     copy_weights: bool) -> CtcModel:
    """A CTC model whose encoder is ``encoder``'s family and config, with ``encoder``'s weights when
    ``copy_weights`` (fine-tuning) or freshly initialised (the scratch control).

    Args:
        encoder: a model prepared for fine-tuning (``encoder_only()``, optionally ``truncated(n)``).
        tokenizer: the output units; blank is id 0.
        settings: the other :class:`CtcConfig` fields (``final_dropout``, ``mask_prob``, ...).
    """
    config = CtcConfig.from_dict({"encoder_family": encoder.config.family, "encoder": encoder.config.to_dict(),
                                  "tokenizer": tokenizer.to_dict(), "vocab_size": tokenizer.vocab_size, **settings})
    model = build_ctc(config)
    if copy_weights:
        model.encoder.load_state_dict(encoder.state_dict())
    return model
