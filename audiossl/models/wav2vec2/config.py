"""wav2vec 2.0 configuration: one nested dataclass, named sizes derived from :meth:`Wav2Vec2Config.base`.

Field comments name the fairseq (``fairseq/models/wav2vec/wav2vec2.py``) equivalent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from audiossl.models.components import (EncoderConfig, FrontendConfig, MaskConfig, ModelConfig,
                                       gumbel_quantizer_errors, resize_body, validation_errors)


@dataclass
class Wav2Vec2Config(ModelConfig):
    """wav2vec 2.0 (Baevski et al., 2020): contrastive prediction of quantized front-end features.

    final_dim: size of the space where context and targets are compared [final_dim].
    codebook_groups: G codebooks [latent_groups]; codebook_entries: V entries each [latent_vars].
    codebook_dim: size of a quantized vector [latent_dim, or final_dim when 0].
    max_temperature, min_temperature, temperature_decay: the Gumbel softmax temperature at update
        n is ``max(max_temperature * temperature_decay ** n, min_temperature)`` [latent_temp].
    num_distractors: K other masked frames of the same utterance per target [num_negatives].
    logit_temp: cosine-logit temperature [logit_temp].
    diversity_weight: weight of ``(G V - prob perplexity) / (G V)`` [criterion loss_weights[0]].
    feature_penalty_weight: weight of the mean squared front-end output [criterion loss_weights[1]].
    feature_grad_mult: gradient scale into the front end [feature_grad_mult]; 0 freezes it.
    dropout_input: dropout on the projected features [dropout_input].
    dropout_features: dropout on the features the quantizer sees [dropout_features].
    collapse_fraction, collapse_patience: a run whose code perplexity stays below
        ``collapse_fraction`` of G V, or whose accuracy stays at chance, for ``collapse_patience``
        log intervals is named collapsing in the log (no fairseq equivalent).
    """

    family: ClassVar[str] = "wav2vec2"

    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(prob=0.65, length=10, min_masks=2))
    final_dim: int = 256
    codebook_groups: int = 2
    codebook_entries: int = 320
    codebook_dim: int = 256
    max_temperature: float = 2.0
    min_temperature: float = 0.5
    temperature_decay: float = 0.999995
    num_distractors: int = 100
    logit_temp: float = 0.1
    diversity_weight: float = 0.1
    feature_penalty_weight: float = 10.0
    feature_grad_mult: float = 0.1
    dropout_input: float = 0.1
    dropout_features: float = 0.1
    collapse_fraction: float = 0.02
    collapse_patience: int = 10

    @classmethod
    def base(cls, frontend: str = "waveform") -> Wav2Vec2Config:
        """The paper's BASE (fairseq ``wav2vec2_base``): 12 x 768, post-norm, group-norm CNN, 95M parameters."""
        config = cls(frontend=FrontendConfig(kind=frontend))
        config.validate()
        return config

    @classmethod
    def large(cls, frontend: str = "waveform") -> Wav2Vec2Config:
        """The paper's LARGE as trained on LV-60k (fairseq2 ``large_lv60k``): 24 x 1024, 16 heads,
        layer norm first, layer-norm CNN with biases, no transformer dropout or layer drop, final_dim 768."""
        config = cls.base(frontend)
        resize_body(config.frontend, config.encoder, "large")
        config.frontend.conv_bias = True
        config.encoder.dropout, config.encoder.layer_drop = 0.0, 0.0
        config.final_dim = config.codebook_dim = 768
        config.validate()
        return config

    @classmethod
    def small(cls, frontend: str = "waveform") -> Wav2Vec2Config:
        """BASE shrunk to 6 x 256 (1024 ffn, 4 heads), 256 front-end channels, 2 x 160 codebook
        entries of 128 dims, 50 distractors: HuBERT's ``small`` encoder, for CPU training."""
        config = cls.base(frontend)
        resize_body(config.frontend, config.encoder, "small")
        config.final_dim = config.codebook_dim = 128
        config.codebook_entries = 160
        config.num_distractors = 50
        config.validate()
        return config

    @classmethod
    def tiny(cls, frontend: str = "waveform") -> Wav2Vec2Config:
        """A 2 x 64 model with 32 front-end channels and 2 x 16 codebook entries, for tests."""
        config = cls.base(frontend)
        resize_body(config.frontend, config.encoder, "tiny")
        config.final_dim = config.codebook_dim = 32
        config.codebook_entries = 16
        config.num_distractors = 10
        config.validate()
        return config

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = validation_errors(self.frontend, self.encoder, self.mask) + self.mask.prediction_errors()
        if min(self.final_dim, self.num_distractors) < 1:
            errors.append("final_dim and num_distractors must be >= 1")
        errors += gumbel_quantizer_errors(self.codebook_groups, self.codebook_entries, self.codebook_dim,
                                          self.max_temperature, self.min_temperature, self.temperature_decay)
        if self.logit_temp <= 0.0:
            errors.append(f"logit_temp must be > 0, got {self.logit_temp}")
        if min(self.diversity_weight, self.feature_penalty_weight, self.feature_grad_mult) < 0.0:
            errors.append("diversity_weight, feature_penalty_weight and feature_grad_mult must be >= 0")
        for name in ("dropout_input", "dropout_features"):
            if not 0.0 <= getattr(self, name) < 1.0:
                errors.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.collapse_fraction < 1.0 or self.collapse_patience < 1:
            errors.append("collapse_fraction must be in [0, 1) and collapse_patience >= 1")
        return errors


NAMED_CONFIGS: dict[str, Callable[..., Wav2Vec2Config]] = {
    "base": Wav2Vec2Config.base,
    "large": Wav2Vec2Config.large,
    "small": Wav2Vec2Config.small,
    "tiny": Wav2Vec2Config.tiny,
}
