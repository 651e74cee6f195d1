"""WavLM: HuBERT's masked prediction through an encoder with gated relative position bias."""
from __future__ import annotations

from audiossl.models.hubert.model import HubertModel


class WavLMModel(HubertModel):
    """A :class:`~audiossl.models.hubert.model.HubertModel` built from a
    :class:`~audiossl.models.wavlm.config.WavLMConfig` (its encoder's attention gates a relative
    position bias per query); denoising is a batch transform, so the objective is HuBERT's."""
