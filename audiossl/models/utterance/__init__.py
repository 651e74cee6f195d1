"""Utterance-level heads on any registered encoder: classes, speaker embeddings, tags (:class:`UtteranceModel`)."""
from audiossl.models.utterance.config import NAMED_CONFIGS, HeadConfig, UtteranceConfig
from audiossl.models.utterance.factory import build_utterance, utterance_over_encoder
from audiossl.models.utterance.model import UtteranceModel

__all__ = ["NAMED_CONFIGS", "HeadConfig", "UtteranceConfig", "UtteranceModel", "build_utterance",
           "utterance_over_encoder"]
