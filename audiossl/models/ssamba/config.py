"""SSAMBA configuration: one nested dataclass, named sizes as the paper plus CPU and test sizes.

SSAMBA (Shams et al., 2024, "SSAMBA: Self-Supervised Audio Representation Learning with Mamba
State Space Models") is SSAST's masked patch modelling (Gong et al., 2022) on a bidirectional
Mamba encoder (Vision Mamba's). Brackets name SSAST's ``ASTModel`` arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from audiossl.models.components import EncoderConfig, MaskConfig, ModelConfig

PATCH_SHAPES = {"patch": (16, 16), "frame": (128, 2)}  # (bins, frames): SSAST's two patch kinds at 128 bins


@dataclass
class SsambaConfig(ModelConfig):
    """Masked patch modelling of 128-bin log-mel patches with a joint discriminative and generative objective.

    num_mel_bins: Kaldi fbank bins (the paper: 128).
    patch_frequency, patch_time: a patch's bins and 10 ms frames [``fshape``, ``tshape``; strides
        equal, no overlap, as SSAST pretrains]. 16 x 16 (the paper's patches: 8 tokens per 160 ms;
        hidden states averaged over the 8 at each time step, 6.25 per second) or 128 x 2 (frame
        patches: one token per 20 ms, 50 per second, fine enough for CTC).
    encoder: bidirectional Mamba-2 layers by default (``kind: transformer`` gives SSAST itself),
        no positional embedding.
    mask: span masking over the token sequence (time-major patches); SSAST masks 400 of an
        utterance's patches at random [``mask_patch``]: ``prob = 0.4, length = 1`` masks about a
        third of them (overlapping draws).
    generative_weight: weight of the patch reconstruction (MSE) beside the InfoNCE term: SSAST's
        ``loss = nce + 10 * mse``.
    dropout_input: dropout after the patch embedding.
    """

    family: ClassVar[str] = "ssamba"

    num_mel_bins: int = 128
    patch_frequency: int = 16
    patch_time: int = 16
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(
        kind="bimamba", num_layers=24, dim=768, dropout=0.0, layer_drop=0.0))
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(prob=0.4, length=1, min_masks=1))
    generative_weight: float = 10.0
    dropout_input: float = 0.0

    @classmethod
    def base(cls, patches: str = "patch") -> SsambaConfig:
        """SSAMBA-base: 24 bidirectional Mamba layers of 768 (the paper's base, Vision Mamba's depth)."""
        return cls._sized(patches, 24, 768)

    @classmethod
    def small(cls, patches: str = "patch") -> SsambaConfig:
        """SSAMBA-small: 24 layers of 384."""
        return cls._sized(patches, 24, 384)

    @classmethod
    def tiny(cls, patches: str = "patch") -> SsambaConfig:
        """SSAMBA-tiny: 24 layers of 192."""
        return cls._sized(patches, 24, 192)

    @classmethod
    def cpu(cls, patches: str = "patch") -> SsambaConfig:
        """6 layers of 256, the other families' CPU size."""
        return cls._sized(patches, 6, 256)

    @classmethod
    def test(cls, patches: str = "patch") -> SsambaConfig:
        """2 layers of 64, for tests."""
        return cls._sized(patches, 2, 64)

    @classmethod
    def _sized(cls, patches: str, num_layers: int, dim: int) -> SsambaConfig:
        if patches not in PATCH_SHAPES:
            raise ValueError(f"patches must be one of {sorted(PATCH_SHAPES)}, got {patches!r}")
        config = cls()
        config.patch_frequency, config.patch_time = PATCH_SHAPES[patches]
        config.encoder.num_layers, config.encoder.dim = num_layers, dim
        config.validate()
        return config

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = self.encoder.errors() + self.mask.errors() + self.mask.prediction_errors()
        if min(self.num_mel_bins, self.patch_frequency, self.patch_time) < 1:
            errors.append("num_mel_bins, patch_frequency and patch_time must be >= 1")
        elif self.num_mel_bins % self.patch_frequency:
            errors.append(f"patch_frequency {self.patch_frequency} must divide num_mel_bins {self.num_mel_bins}")
        if self.generative_weight < 0.0:
            errors.append(f"generative_weight must be >= 0, got {self.generative_weight}")
        if not 0.0 <= self.dropout_input < 1.0:
            errors.append(f"dropout_input must be in [0, 1), got {self.dropout_input}")
        return errors


NAMED_CONFIGS: dict[str, Callable[..., SsambaConfig]] = {
    "base": SsambaConfig.base,
    "small": SsambaConfig.small,
    "tiny": SsambaConfig.tiny,
    "cpu": SsambaConfig.cpu,
    "test": SsambaConfig.test,
}
