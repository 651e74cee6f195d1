"""UniSpeech-SAT configuration: HuBERT's with the utterance-wise contrastive term.

Field comments name the released code's equivalent (``microsoft/UniSpeech``,
``UniSpeech-SAT/fairseq/models/unispeech-sat/unispeech_sat.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

from audiossl.models.components import gumbel_quantizer_errors
from audiossl.models.hubert.config import HubertConfig


@dataclass
class UniSpeechSatConfig(HubertConfig):
    """UniSpeech-SAT (Chen et al., 2022): HuBERT's masked prediction plus an utterance-wise contrastive term.

    utterance_layer: the layer whose output at masked frames is contrasted (1-based); 0: the
        middle one, ``encoder.num_layers // 2`` (the reference's 6 of 12) [utterance_contrastive_layer].
    utterance_weight: weight of the utterance-wise loss (mean per anchor) beside the masked
        prediction loss (mean per masked frame). The paper's value is not in the released code;
        1.0 weighs the two alike.
    utterance_samples: quantized states drawn per anchor from all masked frames of the batch
        [cross_sample_instances].
    codebook_groups, codebook_entries, codebook_dim: the Gumbel product quantizer of the layer's
        states [latent_groups, latent_vars, latent_dim].
    max_temperature, min_temperature, temperature_decay: the Gumbel temperature at update n is
        ``max(max_temperature * temperature_decay ** n, min_temperature)`` [latent_temp].
    diversity_weight: weight of ``(G V - prob perplexity) / (G V)`` (wav2vec 2.0's 0.1).

    Speaker-aware utterance mixing is the run config's ``mixing`` section with ``speaker_aware: true``.
    """

    family: ClassVar[str] = "unispeech_sat"

    utterance_layer: int = 0
    utterance_weight: float = 1.0
    utterance_samples: int = 100
    codebook_groups: int = 2
    codebook_entries: int = 320
    codebook_dim: int = 256
    max_temperature: float = 2.0
    min_temperature: float = 0.5
    temperature_decay: float = 0.999995
    diversity_weight: float = 0.1

    @classmethod
    def base_plus(cls, frontend: str = "waveform") -> UniSpeechSatConfig:
        """UniSpeech-SAT Base+: the Base architecture (12 x 768, post-norm, group-norm CNN), trained on 94k hours."""
        return cls.base(frontend)

    @classmethod
    def large(cls, frontend: str = "waveform") -> UniSpeechSatConfig:
        """UniSpeech-SAT Large: 24 x 1024 (16 heads, 4096 ffn), pre-norm, layer-norm CNN."""
        config = super().large(frontend)
        config.codebook_dim = 768
        config.validate()
        return config

    @classmethod
    def small(cls, frontend: str = "waveform") -> UniSpeechSatConfig:
        """HuBERT's small size (6 x 256) with 2 x 160 codebook entries."""
        config = super().small(frontend)
        config.codebook_entries = 160
        config.validate()
        return config

    @classmethod
    def tiny(cls, frontend: str = "waveform") -> UniSpeechSatConfig:
        """HuBERT's tiny size (2 x 64), for tests, with 2 x 16 codebook entries of 32 dims and 10 samples."""
        config = super().tiny(frontend)
        config.codebook_entries, config.codebook_dim, config.utterance_samples = 16, 32, 10
        config.validate()
        return config

    def errors(self) -> list[str]:
        """Violated rules, each a line naming the field (empty when valid)."""
        errors = super().errors()
        if self.unmasked_weight > 0.0:  # the utterance-wise term scores masked frames alone
            errors += self.mask.prediction_errors()
        if not 0 <= self.utterance_layer <= self.encoder.num_layers:
            errors.append(f"utterance_layer must be in [0, encoder.num_layers = {self.encoder.num_layers}], "
                          f"got {self.utterance_layer}")
        if self.utterance_samples < 1:
            errors.append(f"utterance_samples must be >= 1, got {self.utterance_samples}")
        if self.utterance_weight < 0.0 or self.diversity_weight < 0.0:
            errors.append("utterance_weight and diversity_weight must be >= 0")
        return errors + gumbel_quantizer_errors(self.codebook_groups, self.codebook_entries, self.codebook_dim,
                                                self.max_temperature, self.min_temperature, self.temperature_decay)


NAMED_CONFIGS: dict[str, Callable[..., UniSpeechSatConfig]] = {
    "base": UniSpeechSatConfig.base,
    "base_plus": UniSpeechSatConfig.base_plus,
    "large": UniSpeechSatConfig.large,
    "small": UniSpeechSatConfig.small,
    "tiny": UniSpeechSatConfig.tiny,
}


def contrasted_layer(config: UniSpeechSatConfig) -> int:
    """The 1-based layer ``config.utterance_layer`` names (0: the middle one)."""
    return config.utterance_layer or max(1, config.encoder.num_layers // 2)
