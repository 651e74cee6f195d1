"""TERA configuration: one nested dataclass, named sizes derived from :meth:`TeraConfig.base`.

TERA (Liu, Li and Lee, 2021, "TERA: Self-Supervised Learning of Transformer Encoder Representation
for Speech") reconstructs fbank frames altered along time, frequency and magnitude. Brackets name
s3prl's ``pretrain/mockingjay`` / ``upstream/tera`` settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from audiossl.models.components import (EncoderConfig, FrontendConfig, MaskConfig, ModelConfig, resize_body,
                                       validation_errors)


@dataclass
class TeraConfig(ModelConfig):
    """Reconstruction (L1) of altered fbank frames by a transformer at 100 frames/s.

    frontend: ``"frames"``: per-utterance normalised fbank, no subsampling (``frame_rate`` 100).
    encoder: the paper's base: 3 layers of 768 (12 heads, 3072 FFN), post-norm; the shared body's
        convolutional positional embedding where the paper adds sinusoidal positions.
    mask: time alteration: spans of 7 frames [``mask_consecutive``] starting so that about 15 % of
        the frames are chosen [``mask_proportion``]; for an utterance, with probability 0.8 they
        are zeroed, 0.1 replaced by frames from elsewhere in it (``replace_prob``) and 0.1 left as
        they are (``keep_prob``); they are reconstructed in all three cases.
    max_frequency_mask: frequency alteration: one block of consecutive bins, of a width drawn
        uniformly from 0 to this fraction of the bins, zeroed in every frame and reconstructed
        [``mask_frequency``: 0.2].
    noise_prob, noise_std: magnitude alteration: with this probability an utterance gets Gaussian
        noise of this deviation on every input value [``noise_proportion``: 0.1]; not a target.
    dropout_input: dropout after the input projection.
    """

    family: ClassVar[str] = "tera"

    frontend: FrontendConfig = field(default_factory=lambda: FrontendConfig(kind="frames", num_mel_bins=80))
    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(num_layers=3, layer_drop=0.0))
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(prob=0.15, length=7, min_masks=1))
    replace_prob: float = 0.1
    keep_prob: float = 0.1
    max_frequency_mask: float = 0.2
    noise_prob: float = 0.1
    noise_std: float = 0.2
    dropout_input: float = 0.1

    @classmethod
    def base(cls) -> TeraConfig:
        """The paper's base: 3 layers of 768 on 80-bin fbank."""
        config = cls()
        config.validate()
        return config

    @classmethod
    def small(cls) -> TeraConfig:
        """3 layers of the other families' small body (256, 1024 FFN, 4 heads), for CPU training."""
        config = cls()
        resize_body(config.frontend, config.encoder, "small")
        config.encoder.num_layers = 3
        config.validate()
        return config

    @classmethod
    def tiny(cls) -> TeraConfig:
        """2 layers of 64, for tests."""
        config = cls()
        resize_body(config.frontend, config.encoder, "tiny")
        config.validate()
        return config

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = validation_errors(self.frontend, self.encoder, self.mask)
        if self.frontend.kind != "frames":
            errors.append(f"frontend.kind must be 'frames' (fbank at 100 frames/s), got {self.frontend.kind!r}")
        if not (0.0 <= self.replace_prob and 0.0 <= self.keep_prob and self.replace_prob + self.keep_prob <= 1.0):
            errors.append(f"replace_prob and keep_prob must be >= 0 with a sum <= 1, got {self.replace_prob}, "
                          f"{self.keep_prob}")
        for name in ("max_frequency_mask", "noise_prob", "dropout_input"):
            if not 0.0 <= getattr(self, name) < 1.0:
                errors.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.noise_std < 0.0:
            errors.append(f"noise_std must be >= 0, got {self.noise_std}")
        return errors


NAMED_CONFIGS: dict[str, Callable[..., TeraConfig]] = {
    "base": TeraConfig.base,
    "small": TeraConfig.small,
    "tiny": TeraConfig.tiny,
}
