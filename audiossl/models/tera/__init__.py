"""TERA family: :class:`TeraConfig` (named sizes in ``NAMED_CONFIGS``), :func:`build_tera`, :class:`TeraModel`."""
from audiossl.models.tera.config import NAMED_CONFIGS, TeraConfig
from audiossl.models.tera.factory import build_tera
from audiossl.models.tera.model import TeraModel

__all__ = ["NAMED_CONFIGS", "TeraConfig", "TeraModel", "build_tera"]
