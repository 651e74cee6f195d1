"""MERT family: :class:`MertConfig` (named sizes in ``NAMED_CONFIGS``), :func:`build_mert`, :class:`MertModel`."""
from audiossl.models.mert.config import NAMED_CONFIGS, MertConfig
from audiossl.models.mert.factory import build_mert
from audiossl.models.mert.model import MertModel

__all__ = ["NAMED_CONFIGS", "MertConfig", "MertModel", "build_mert"]
