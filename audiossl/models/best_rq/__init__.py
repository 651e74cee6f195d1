"""BEST-RQ family: :class:`BestRqConfig` (named sizes in ``NAMED_CONFIGS``), :func:`build_best_rq`,
:class:`BestRqModel`."""
from audiossl.models.best_rq.config import NAMED_CONFIGS, BestRqConfig
from audiossl.models.best_rq.factory import build_best_rq
from audiossl.models.best_rq.model import BestRqModel

__all__ = ["NAMED_CONFIGS", "BestRqConfig", "BestRqModel", "build_best_rq"]
