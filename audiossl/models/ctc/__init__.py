"""CTC ASR: any registered encoder family plus a linear head over tokens (:class:`CtcModel`)."""
from audiossl.models.ctc.config import NAMED_CONFIGS, CtcConfig
from audiossl.models.ctc.factory import build_ctc
from audiossl.models.ctc.model import CtcModel

__all__ = ["NAMED_CONFIGS", "CtcConfig", "CtcModel", "build_ctc"]
