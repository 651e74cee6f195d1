"""HuBERT family: :class:`HubertConfig` (named sizes in ``NAMED_CONFIGS``), :func:`build_hubert`,
:class:`HubertModel`."""
from audiossl.models.hubert.config import NAMED_CONFIGS, HubertConfig
from audiossl.models.hubert.factory import build_hubert
from audiossl.models.hubert.model import HubertModel

__all__ = ["NAMED_CONFIGS", "HubertConfig", "HubertModel", "build_hubert"]
