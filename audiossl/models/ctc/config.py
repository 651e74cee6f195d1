"""Config of a CTC ASR model: the encoder's family and config, the tokenizer, the head."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from audiossl.config_fields import dataclass_from_dict
from audiossl.errors import ConfigError


@dataclass
class CtcConfig:
    """A CTC model; everything needed to rebuild it from a checkpoint.

    Attributes:
        encoder_family: registry name of the encoder family (``"hubert"``).
        encoder: that family's config dict (``to_dict()``).
        tokenizer: the tokenizer's ``to_dict()`` (audiossl.text.tokenizer); blank is id 0.
        vocab_size: output classes, blank included.
        final_dropout: dropout before the head (fairseq ``final_dropout``).
        mask_prob, mask_length: time masking of encoder frames while fine-tuning
            (fairseq ``mask_prob``/``mask_length`` of wav2vec2-ctc; 0 disables).
        freeze_encoder_updates: the encoder gets no gradient for this many first updates
            (fairseq ``freeze_finetune_updates``); the head learns alone meanwhile.
    """

    family: ClassVar[str] = "ctc"

    encoder_family: str = "hubert"
    encoder: dict[str, Any] = field(default_factory=dict)
    tokenizer: dict[str, Any] = field(default_factory=dict)
    vocab_size: int = 0
    final_dropout: float = 0.1
    mask_prob: float = 0.5
    mask_length: int = 10
    freeze_encoder_updates: int = 0

    def validate(self) -> None:
        errors = []
        if self.vocab_size < 2:
            errors.append(f"vocab_size {self.vocab_size} < 2 (blank plus at least one token)")
        if not 0 <= self.mask_prob < 1:
            errors.append(f"mask_prob {self.mask_prob} not in [0, 1)")
        if self.mask_prob > 0 and self.mask_length < 1:  # the masks' spans: frames, at least one
            errors.append(f"mask_length {self.mask_length} below 1 (with mask_prob {self.mask_prob})")
        if not 0 <= self.final_dropout < 1:
            errors.append(f"final_dropout {self.final_dropout} not in [0, 1)")
        if self.freeze_encoder_updates < 0:
            errors.append(f"freeze_encoder_updates {self.freeze_encoder_updates} below 0")
        if not self.encoder:
            errors.append("encoder config is empty")
        if errors:
            raise ConfigError("invalid CtcConfig:\n  " + "\n  ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CtcConfig":
        config = dataclass_from_dict(cls, data, "CtcConfig")
        config.validate()
        return config


# CTC models are made from a pretrained encoder or an encoder config, not from named sizes.
NAMED_CONFIGS: dict[str, Callable[..., CtcConfig]] = {}
