"""wav2vec 2.0 family: :class:`Wav2Vec2Config` (named sizes in ``NAMED_CONFIGS``), :func:`build_wav2vec2`,
:class:`Wav2Vec2Model`."""
from audiossl.models.wav2vec2.config import NAMED_CONFIGS, Wav2Vec2Config
from audiossl.models.wav2vec2.factory import build_wav2vec2
from audiossl.models.wav2vec2.model import Wav2Vec2Model

__all__ = ["NAMED_CONFIGS", "Wav2Vec2Config", "Wav2Vec2Model", "build_wav2vec2"]
