"""HuBERT configuration: one nested dataclass, named sizes derived from :meth:`HubertConfig.base`.

Field comments name the fairseq (``fairseq/models/hubert/hubert.py``) equivalent. A config
round-trips through plain JSON-able dicts (:meth:`HubertConfig.to_dict`,
:meth:`HubertConfig.from_dict`), which is what checkpoints store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from audiossl.models.components import (EncoderConfig, FrontendConfig, MaskConfig, ModelConfig, resize_body,
                                       validation_errors)


@dataclass
class HubertConfig(ModelConfig):
    """HuBERT model.

    num_classes: target clusters (100 for iteration 1 on MFCC k-means, 500 afterwards).
    final_dim: projection size of the prediction head [final_dim].
    logit_temp: cosine-logit temperature [logit_temp].
    unmasked_weight: weight of the unmasked frames' loss [criterion ``pred_nomask_weight``].
    feature_grad_mult: gradient scale into the front end [feature_grad_mult]; 0 freezes it.
    dropout_input: dropout after the feature projection [dropout_input].
    frequency_warp: while pretraining, the fbank bin index of each utterance is scaled by a
        factor drawn uniformly from ``[1 - w, 1 + w]`` (:func:`~audiossl.nn.augment.warp_frequency_axis`)
        while its targets stay those of the unwarped audio, so that the encoder learns to map
        voices of other vocal tract lengths to the same units; 0 disables (fbank front end only).
    """

    family: ClassVar[str] = "hubert"

    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    num_classes: int = 100
    final_dim: int = 256
    logit_temp: float = 0.1
    unmasked_weight: float = 0.0
    feature_grad_mult: float = 0.1
    dropout_input: float = 0.1
    frequency_warp: float = 0.0

    @classmethod
    def base(cls, frontend: str = "waveform") -> HubertConfig:
        """The paper's BASE (fairseq ``hubert_base_librispeech``): 12 × 768, 95M parameters."""
        config = cls(frontend=FrontendConfig(kind=frontend))
        config.validate()
        return config

    @classmethod
    def large(cls, frontend: str = "waveform") -> HubertConfig:
        """The paper's LARGE (fairseq ``hubert_large_librivox``): 24 x 1024, 16 heads, pre-norm, layer-norm CNN,
        final_dim 768, no dropout or layer drop, full gradient into the front end."""
        config = cls.base(frontend)
        resize_body(config.frontend, config.encoder, "large")
        enc = config.encoder
        enc.dropout = enc.attention_dropout = enc.activation_dropout = enc.layer_drop = 0.0
        config.final_dim, config.dropout_input, config.feature_grad_mult = 768, 0.0, 1.0
        config.validate()
        return config

    @classmethod
    def small(cls, frontend: str = "waveform") -> HubertConfig:
        """BASE shrunk for CPU training (:func:`~audiossl.models.components.resize_body` ``"small"``: 6 x 256)."""
        config = cls.base(frontend)
        resize_body(config.frontend, config.encoder, "small")
        config.validate()
        return config

    @classmethod
    def tiny(cls, frontend: str = "waveform") -> HubertConfig:
        """A 2 x 64 model with 32 front-end channels, for tests."""
        config = cls.base(frontend)
        resize_body(config.frontend, config.encoder, "tiny")
        config.final_dim = 32
        config.validate()
        return config

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = validation_errors(self.frontend, self.encoder, self.mask)
        errors += self.mask.prediction_errors(self.unmasked_weight)
        if not 0.0 <= self.dropout_input < 1.0:
            errors.append(f"dropout_input must be in [0, 1), got {self.dropout_input}")
        if self.num_classes < 1 or self.final_dim < 1:
            errors.append(f"num_classes and final_dim must be >= 1, got {self.num_classes}, {self.final_dim}")
        if self.logit_temp <= 0.0:
            errors.append(f"logit_temp must be > 0, got {self.logit_temp}")
        if self.unmasked_weight < 0.0 or self.feature_grad_mult < 0.0:
            errors.append("unmasked_weight and feature_grad_mult must be >= 0")
        if not 0.0 <= self.frequency_warp < 0.5:
            errors.append(f"frequency_warp must be in [0, 0.5), got {self.frequency_warp}")
        if self.frequency_warp > 0.0 and self.frontend.kind != "fbank":
            errors.append(f"frequency_warp needs the fbank front end, got frontend.kind {self.frontend.kind!r}")
        return errors


NAMED_CONFIGS: dict[str, Callable[..., HubertConfig]] = {
    "base": HubertConfig.base,
    "large": HubertConfig.large,
    "small": HubertConfig.small,
    "tiny": HubertConfig.tiny,
}
