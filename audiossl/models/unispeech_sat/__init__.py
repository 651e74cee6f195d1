"""UniSpeech-SAT family: :class:`UniSpeechSatConfig` (named sizes in ``NAMED_CONFIGS``),
:func:`build_unispeech_sat`, :class:`UniSpeechSatModel`."""
from audiossl.models.unispeech_sat.config import NAMED_CONFIGS, UniSpeechSatConfig
from audiossl.models.unispeech_sat.factory import build_unispeech_sat
from audiossl.models.unispeech_sat.model import UniSpeechSatModel

__all__ = ["NAMED_CONFIGS", "UniSpeechSatConfig", "UniSpeechSatModel", "build_unispeech_sat"]
