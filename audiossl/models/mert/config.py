"""MERT configuration (Li et al., 2023): HuBERT's body on 24 kHz music, K codebooks of acoustic targets,
CQT reconstruction and in-batch mixing. Field comments name the reference (``MERTConfig`` of the
authors' fairseq model) equivalents.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from audiossl.models.components import (DEFAULT_CONV_LAYERS, EncoderConfig, FrontendConfig, MaskConfig, ModelConfig,
                                       resize_body, validation_errors)

MERT_SAMPLE_RATE = 24000


@dataclass
class MertConfig(ModelConfig):
    """MERT model.

    num_codebooks: ``K`` target codes per frame (8 RVQ codebooks in MERT; 1 for k-means targets, MERT-v0).
    codebook_size: entries per codebook (EnCodec's 1024), the classes of each prediction head.
    final_dim: projection size per codebook [final_dim; untie_final_proj: one projection per codebook].
    logit_temp: cosine-logit temperature [logit_temp].
    cqt_bins: CQT bins reconstructed at masked frames, over 7 octaves from C1 [audio_cqt_bins].
    cqt_weight: weight of the CQT mean squared error beside the sum of the codebooks' cross entropies.
    mix_prob: chance that a training clip gets segments of other clips of the batch added [mixture_prob;
        the reference mixes when a draw exceeds it, so its 0.5 is this 0.5].
    mix_seconds: shortest and longest mixed-in segment [inbatch_noise_augment_len_range, 8000-24000 samples].
    mix_count: fewest and most segments per mixed clip [inbatch_noise_augment_number_range].
    mix_volume: gain of the mixed-in segments [inbatch_noise_augment_volume].
    feature_grad_mult, dropout_input: as HuBERT.
    """

    family: ClassVar[str] = "mert"

    frontend: FrontendConfig = field(default_factory=lambda: FrontendConfig(sample_rate=MERT_SAMPLE_RATE))
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(prob=0.8, length=5))
    num_codebooks: int = 8
    codebook_size: int = 1024
    final_dim: int = 64
    logit_temp: float = 0.1
    cqt_bins: int = 336
    cqt_weight: float = 1.0
    mix_prob: float = 0.5
    mix_seconds: tuple[float, float] = (1 / 3, 1.0)
    mix_count: tuple[int, int] = (1, 3)
    mix_volume: float = 1.0
    feature_grad_mult: float = 0.1
    dropout_input: float = 0.1

    def __post_init__(self) -> None:
        self.mix_seconds, self.mix_count = tuple(self.mix_seconds), tuple(self.mix_count)

    @classmethod
    def base(cls) -> MertConfig:
        """MERT-95M (``MERT-v1-95M``): 12 x 768 on the 24 kHz CNN (75 frames/s), 8 x 1024 codes, 336 CQT bins."""
        config = cls()
        config.validate()
        return config

    @classmethod
    def large(cls) -> MertConfig:
        """MERT-330M: 24 x 1024, 16 heads, pre-norm, layer-norm CNN, no dropout or layer drop."""
        config = cls.base()
        resize_body(config.frontend, config.encoder, "large")
        enc = config.encoder
        enc.dropout = enc.attention_dropout = enc.activation_dropout = enc.layer_drop = 0.0
        config.dropout_input = 0.0
        config.validate()
        return config

    @classmethod
    def small(cls) -> MertConfig:
        """For CPU training: the shared 6 x 256 body, 256 entries per codebook, 84 CQT bins (12 an octave)."""
        config = cls.base()
        resize_body(config.frontend, config.encoder, "small")
        config.codebook_size, config.cqt_bins = 256, 84
        config.validate()
        return config

    @classmethod
    def tiny(cls) -> MertConfig:
        """A 2 x 64 model for tests: 2 codebooks of 16, 84 CQT bins."""
        config = cls.base()
        resize_body(config.frontend, config.encoder, "tiny")
        config.num_codebooks, config.codebook_size, config.final_dim, config.cqt_bins = 2, 16, 32, 84
        config.validate()
        return config

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = validation_errors(self.frontend, self.encoder, self.mask) + self.mask.prediction_errors()
        geometry = [(kernel, stride) for _, kernel, stride in self.frontend.conv_layers]
        if self.frontend.kind != "waveform" or geometry != [(k, s) for _, k, s in DEFAULT_CONV_LAYERS]:
            errors.append("MERT takes waveforms through the CNN of kernels and strides (10,5) (3,2)x4 (2,2)x2 "
                          "(400-sample frames every 320 samples, the grid its targets are made on)")
        if min(self.num_codebooks, self.codebook_size, self.final_dim) < 1:
            errors.append("num_codebooks, codebook_size and final_dim must be >= 1")
        if self.cqt_bins < 7 or self.cqt_bins % 7:
            errors.append(f"cqt_bins must be a positive multiple of 7 (octaves), got {self.cqt_bins}")
        if self.logit_temp <= 0.0 or self.cqt_weight < 0.0 or self.mix_volume < 0.0:
            errors.append("logit_temp must be > 0, cqt_weight and mix_volume >= 0")
        if not 0.0 <= self.mix_prob <= 1.0:
            errors.append(f"mix_prob must be in [0, 1], got {self.mix_prob}")
        if len(self.mix_seconds) != 2 or not 0.0 < self.mix_seconds[0] <= self.mix_seconds[1]:
            errors.append(f"mix_seconds must be (shortest, longest) with 0 < shortest <= longest, got {self.mix_seconds}")
        if len(self.mix_count) != 2 or not 1 <= self.mix_count[0] <= self.mix_count[1]:
            errors.append(f"mix_count must be (fewest, most) with 1 <= fewest <= most, got {self.mix_count}")
        if not 0.0 <= self.dropout_input < 1.0 or self.feature_grad_mult < 0.0:
            errors.append("dropout_input must be in [0, 1) and feature_grad_mult >= 0")
        return errors


NAMED_CONFIGS: dict[str, Callable[..., MertConfig]] = {
    "base": MertConfig.base,
    "large": MertConfig.large,
    "small": MertConfig.small,
    "tiny": MertConfig.tiny,
}
