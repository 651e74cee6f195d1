"""Build an utterance-level model from its config: the upstream, the layer featurizer and the head are built
here from an :class:`UtteranceConfig` (the head builds its pooling from its ``HeadConfig``); the model keeps
the config for its checkpoint."""
from __future__ import annotations

from typing import Any

from audiossl.errors import ConfigError
from audiossl.models.encoder import SpeechEncoder
from audiossl.models.utterance.config import UtteranceConfig
from audiossl.models.utterance.model import PooledLinearHead, UtteranceModel, XVectorHead
from audiossl.nn.pooling import LayerWeightedSum
from audiossl.registry import build_model


def build_featurizer(config: UtteranceConfig, hidden_sizes: list[int]) -> LayerWeightedSum:
    """The layer featurizer ``config.layers`` describes over hidden states of ``hidden_sizes``."""
    count = len(hidden_sizes)
    if config.layers == "last":
        featurizer = LayerWeightedSum.last_layer(count, config.normalize_layers)
    else:
        featurizer = LayerWeightedSum(count, None if config.layers == "all" else config.layers, config.normalize_layers)
    sizes = {hidden_sizes[i] for i in featurizer.layers}
    if len(sizes) != 1:
        raise ConfigError(f"layers {list(featurizer.layers)} have different sizes {sorted(sizes)}; a weighted sum "
                          "needs one")
    return featurizer


def build_utterance(config: UtteranceConfig) -> UtteranceModel:
    """The upstream family's model (its pretraining parts dropped), the featurizer and the head."""
    config.validate()
    upstream = build_model(config.upstream_family, config.upstream).encoder_only()
    featurizer = build_featurizer(config, upstream.hidden_sizes)
    input_dim = upstream.hidden_sizes[featurizer.layers[0]]
    head_class = XVectorHead if config.head.kind == "xvector" else PooledLinearHead
    return UtteranceModel(config, upstream, featurizer, head_class(config.head, input_dim))


def utterance_over_encoder(encoder: SpeechEncoder, settings: dict[str, Any],
                           copy_weights: bool = True) -> UtteranceModel:
    """An utterance model whose upstream is ``encoder``'s family and config, with its weights when
    ``copy_weights`` (fine-tuning or probing a pretrained encoder) or freshly initialised (a scratch control).

    Args:
        encoder: any family's model (``audiossl.load_model`` gives one, a CTC model included):
            its ``encoder_only()`` is the upstream (a pretraining model drops its pretraining
            parts in place).
        settings: the other :class:`UtteranceConfig` fields (``head`` as a dict, ``layers``, ...).
    """
    upstream = encoder.encoder_only()
    config = UtteranceConfig.from_dict({"upstream_family": upstream.config.family,
                                        "upstream": upstream.config.to_dict(), **settings})
    model = build_utterance(config)
    if copy_weights:
        model.upstream.load_state_dict(upstream.state_dict())
    return model
