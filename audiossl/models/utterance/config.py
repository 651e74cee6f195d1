"""Config of an utterance-level model: the upstream encoder's family and config, the layer featurizer, the head."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from audiossl.models.components import ModelConfig

HEAD_KINDS = ("linear", "xvector", "multilabel")
POOLINGS = ("mean", "attentive")


@dataclass
class HeadConfig:
    """What runs on the featurized ``(B, T, D)`` frames.

    Attributes:
        kind: ``"linear"`` (pooling → linear classifier, cross entropy), ``"xvector"`` (TDNN →
            pooling → batch norm → linear embedding → AAM-softmax, for speakers) or
            ``"multilabel"`` (pooling → linear, one sigmoid per class, binary cross entropy).
        num_classes: output classes (speakers, labels).
        embedding_dim: for ``xvector`` the embedding size; for ``linear`` and ``multilabel`` the
            size of a per-frame linear projector before pooling (SUPERB's downstream
            ``projector``), 0 for none.
        pooling: ``"mean"`` over valid frames or ``"attentive"`` statistics (weighted mean and
            standard deviation, twice the size).
        attention_channels, global_context: of the attentive pooling.
        tdnn_channels, tdnn_kernels, tdnn_dilations: the x-vector's frame layers (Conv1d →
            ReLU → batch norm each; odd kernels, same-length output).
        margin, scale, easy_margin: of the AAM-softmax (:mod:`audiossl.objectives.margin`).
    """

    kind: str = "linear"
    num_classes: int = 2
    embedding_dim: int = 0
    pooling: str = "mean"
    attention_channels: int = 128
    global_context: bool = True
    tdnn_channels: list[int] = field(default_factory=lambda: [512, 512, 512])
    tdnn_kernels: list[int] = field(default_factory=lambda: [5, 3, 3])
    tdnn_dilations: list[int] = field(default_factory=lambda: [1, 2, 3])
    margin: float = 0.2
    scale: float = 30.0
    easy_margin: bool = False

    def errors(self) -> list[str]:
        errors = []
        if self.kind not in HEAD_KINDS:
            errors.append(f"head.kind {self.kind!r} not one of {list(HEAD_KINDS)}")
        if self.num_classes < 1 or (self.kind != "multilabel" and self.num_classes < 2):
            errors.append(f"head.num_classes {self.num_classes} too small for a {self.kind!r} head")
        if self.pooling not in POOLINGS:
            errors.append(f"head.pooling {self.pooling!r} not one of {list(POOLINGS)}")
        if self.embedding_dim < 0 or (self.kind == "xvector" and self.embedding_dim < 1):
            errors.append(f"head.embedding_dim {self.embedding_dim} (an xvector head needs one >= 1, the others >= 0)")
        if self.attention_channels < 1:
            errors.append(f"head.attention_channels {self.attention_channels} < 1")
        if self.kind == "xvector":
            sizes = {len(self.tdnn_channels), len(self.tdnn_kernels), len(self.tdnn_dilations)}
            if len(sizes) != 1 or not self.tdnn_channels:
                errors.append("head.tdnn_channels, tdnn_kernels and tdnn_dilations must be non-empty and as long")
            if any(k < 1 or k % 2 == 0 for k in self.tdnn_kernels):
                errors.append(f"head.tdnn_kernels {self.tdnn_kernels} must be odd (same-length frames)")
            if min(self.tdnn_channels + self.tdnn_dilations, default=1) < 1:
                errors.append("head.tdnn_channels and tdnn_dilations must be >= 1")
            if not 0.0 <= self.margin < 1.5 or self.scale <= 0:
                errors.append(f"head.margin {self.margin} not in [0, 1.5) rad or head.scale {self.scale} <= 0")
        return errors


@dataclass
class UtteranceConfig(ModelConfig):
    """An utterance-level classifier or embedding extractor over any registered encoder.

    Attributes:
        upstream_family: registry name of the encoder's family (``"hubert"``).
        upstream: that family's config dict (``to_dict()``).
        layers: the hidden states the featurizer uses: ``"all"`` (a learned weighted sum of
            every state, as SUPERB), ``"last"`` (the last alone), or a list of indices (a
            weighted sum of those; one index: that state alone; negative from the end).
        normalize_layers: layer-normalise each state before the sum (s3prl ``normalize``).
        freeze_upstream: the encoder gets no gradient and stays in eval mode (dropout off).
        head: what runs on the featurized frames.
    """

    family: ClassVar[str] = "utterance"

    upstream_family: str = "hubert"
    upstream: dict[str, Any] = field(default_factory=dict)
    layers: str | list[int] = "all"
    normalize_layers: bool = False
    freeze_upstream: bool = True
    head: HeadConfig = field(default_factory=HeadConfig)

    def errors(self) -> list[str]:
        errors = [] if self.upstream else ["upstream config is empty"]
        if isinstance(self.layers, str) and self.layers not in ("all", "last"):
            errors.append(f"layers {self.layers!r} is not 'all', 'last' or a list of indices")
        if isinstance(self.layers, list) and (not self.layers or not all(isinstance(i, int) for i in self.layers)):
            errors.append(f"layers {self.layers} must be a non-empty list of integers")
        return errors + self.head.errors()


# Utterance models are made over a pretrained encoder or an encoder config, not from named sizes.
NAMED_CONFIGS: dict[str, Callable[..., UtteranceConfig]] = {}
