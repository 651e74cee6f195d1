"""WavLM family: :class:`WavLMConfig` (named sizes in ``NAMED_CONFIGS``), :func:`build_wavlm`,
:class:`WavLMModel`."""
from audiossl.models.wavlm.config import NAMED_CONFIGS, WavLMConfig
from audiossl.models.wavlm.factory import build_wavlm
from audiossl.models.wavlm.model import WavLMModel

__all__ = ["NAMED_CONFIGS", "WavLMConfig", "WavLMModel", "build_wavlm"]
