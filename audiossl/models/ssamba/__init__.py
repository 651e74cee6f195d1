"""SSAMBA family: :class:`SsambaConfig` (named sizes in ``NAMED_CONFIGS``), :func:`build_ssamba`,
:class:`SsambaModel`."""
from audiossl.models.ssamba.config import NAMED_CONFIGS, SsambaConfig
from audiossl.models.ssamba.factory import build_ssamba
from audiossl.models.ssamba.model import SsambaModel

__all__ = ["NAMED_CONFIGS", "SsambaConfig", "SsambaModel", "build_ssamba"]
