"""WavLM configuration: HuBERT's with WavLM's gated relative position bias in every attention.

WavLM (Chen et al., 2022) is HuBERT's masked prediction of k-means targets with two changes:
the encoder's attention adds a bucketed relative position bias gated per query
(``encoder.position_bias = "gated_relative"``, 320 buckets up to 800 frames), and pretraining
denoises: some utterances are mixed with another utterance or with noise while the targets
stay those of the clean one (a batch transform of the run config's ``mixing`` section, see
:mod:`audiossl.data.mixing`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

from audiossl.models.components import EncoderConfig
from audiossl.models.hubert.config import HubertConfig


@dataclass
class WavLMConfig(HubertConfig):
    """WavLM: every field and size as :class:`~audiossl.models.hubert.config.HubertConfig` (``large``: WavLM
    Large, 24 x 1024, pre-norm, layer-norm CNN); the encoder's position bias is ``"gated_relative"`` by
    default (the others are allowed, for ablations)."""

    family: ClassVar[str] = "wavlm"

    encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(position_bias="gated_relative"))

    @classmethod
    def base_plus(cls, frontend: str = "waveform") -> WavLMConfig:
        """WavLM Base+: the Base architecture (12 x 768, post-norm, group-norm CNN), trained on 94k hours."""
        return cls.base(frontend)

NAMED_CONFIGS: dict[str, Callable[..., WavLMConfig]] = {
    "base": WavLMConfig.base,
    "base_plus": WavLMConfig.base_plus,
    "large": WavLMConfig.large,
    "small": WavLMConfig.small,
    "tiny": WavLMConfig.tiny,
}
