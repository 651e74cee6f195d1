"""Utterance-level model: upstream encoder → layer featurizer → pooled head (classes, embeddings).

One model serves single-label classification (``linear``: SUPERB's speaker, intent or emotion
heads), speaker embeddings trained with AAM-softmax (``xvector``) and multi-label tagging
(``multilabel``). Its :meth:`~UtteranceModel.forward` returns an
:class:`~audiossl.objectives.output.ObjectiveOutput` with additive metric sums, the contract of
the pretraining models.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from audiossl.models.encoder import SpeechEncoder
from audiossl.models.utterance.config import HeadConfig, UtteranceConfig
from audiossl.nn.frontends import valid_mask
from audiossl.nn.pooling import AttentiveStatisticsPooling, LayerWeightedSum, MeanPooling, ValidFrameBatchNorm
from audiossl.objectives.margin import AAMSoftmax
from audiossl.objectives.output import MetricRatios, ObjectiveOutput

SINGLE_LABEL_METRICS: MetricRatios = {"acc": ("correct", "items"), "err": ("errors", "items")}
MULTILABEL_METRICS: MetricRatios = {"exact_match": ("exact_matches", "items"), "lrap": ("lrap_sum", "items")}


def build_pooling(config: HeadConfig, channels: int) -> tuple[nn.Module, int]:
    """The head's pooling over ``channels``-sized frames and its output size."""
    if config.pooling == "attentive":
        return AttentiveStatisticsPooling(channels, config.attention_channels, config.global_context), 2 * channels
    return MeanPooling(), channels


class PooledLinearHead(nn.Module):
    """Optional per-frame projector → pooling → linear classifier (the ``linear`` and ``multilabel`` kinds).

    The embedding is the pooled vector.
    """

    def __init__(self, config: HeadConfig, input_dim: int) -> None:
        super().__init__()
        self.projector = nn.Linear(input_dim, config.embedding_dim) if config.embedding_dim else None
        self.pooling, self.embedding_dim = build_pooling(config, config.embedding_dim or input_dim)
        self.classifier = nn.Linear(self.embedding_dim, config.num_classes)
        self.multilabel = config.kind == "multilabel"

    def embed(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """``(B, T, D)`` featurized frames, ``(B,)`` valid frames → ``(B, E)``."""
        if self.projector is not None:
            frames = self.projector(frames)
        return self.pooling(frames, lengths)

    def logits(self, embeddings: Tensor) -> Tensor:
        """``(B, E)`` embeddings (fp32, as pooled) → ``(B, C)`` fp32 logits, computed in the classifier's dtype."""
        return self.classifier(embeddings.to(self.classifier.weight.dtype)).float()

    def loss(self, embeddings: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """Mean cross entropy over items (``(B,)`` class ids), or for multilabel the binary cross
        entropy averaged over items and classes (``(B, C)`` multi-hot); and the ``(B, C)`` logits."""
        logits = self.logits(embeddings)
        if self.multilabel:
            return nn.functional.binary_cross_entropy_with_logits(logits, targets), logits
        return nn.functional.cross_entropy(logits, targets), logits


class TdnnBlock(nn.Module):
    """Dilated Conv1d → ReLU → batch norm over valid frames; frames keep their count (zero padding)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, dilation=dilation,
                              padding=dilation * (kernel - 1) // 2)
        self.norm = ValidFrameBatchNorm(out_channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """``(B, T, C_in)``, ``(B, T)`` valid → ``(B, T, C_out)``, zero at padded frames.

        Padded input frames are zeroed first, so a frame near an item's end sees the zeros it
        would see alone.
        """
        x = x.masked_fill(~mask[..., None], 0.0)
        return self.norm(torch.relu(self.conv(x.transpose(1, 2)).transpose(1, 2)), mask)


class UtteranceBatchNorm(nn.BatchNorm1d):
    """Batch norm of ``(B, C)`` utterance vectors; a training batch of one item, whose own statistics
    are undefined, is normalised with the running statistics (as in eval mode) and leaves them unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                            False, 0.0, self.eps)
        return super().forward(x)


class XVectorHead(nn.Module):
    """TDNN frame layers → pooling → batch norm → linear embedding → AAM-softmax (the ``xvector`` kind),
    ECAPA-TDNN's utterance part on a small x-vector frame stack."""

    def __init__(self, config: HeadConfig, input_dim: int) -> None:
        super().__init__()
        sizes = [input_dim, *config.tdnn_channels]
        self.tdnn = nn.ModuleList(TdnnBlock(i, o, k, d) for i, o, k, d in
                                  zip(sizes, sizes[1:], config.tdnn_kernels, config.tdnn_dilations))
        self.pooling, pooled = build_pooling(config, sizes[-1])
        self.pooled_norm = UtteranceBatchNorm(pooled)
        self.embedding = nn.Linear(pooled, config.embedding_dim)
        self.embedding_dim = config.embedding_dim
        self.classifier = AAMSoftmax(config.embedding_dim, config.num_classes, config.margin, config.scale,
                                     config.easy_margin)

    def embed(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """``(B, T, D)`` featurized frames, ``(B,)`` valid frames → ``(B, E)`` speaker embeddings."""
        mask = valid_mask(lengths.to(frames.device), frames.shape[1])
        for block in self.tdnn:
            frames = block(frames, mask)
        pooled = self.pooling(frames, lengths)  # fp32: in the head's dtype for a half or double model
        return self.embedding(self.pooled_norm(pooled.to(self.pooled_norm.weight.dtype)))

    def logits(self, embeddings: Tensor) -> Tensor:
        """``scale · cos θ`` to each class, no margin."""
        return self.classifier.logits(embeddings)

    def loss(self, embeddings: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """AAM-softmax loss (mean over items) and the margin-free logits."""
        return self.classifier(embeddings, targets)


class UtteranceModel(SpeechEncoder):
    """Upstream encoder → :class:`~audiossl.nn.pooling.LayerWeightedSum` → head.

    Offers the encoder interface of its upstream (``extract_features``, ``encode``,
    ``hidden_sizes``, ...). :meth:`classify` and :meth:`embed` take waveforms at :attr:`sample_rate`;
    :meth:`forward` takes inputs of :attr:`input_kind` (what a training batch holds).

    Figures (``metrics``: figure → numerator and denominator sums of :meth:`forward`):
    single-label heads log ``acc`` and ``err`` (fraction of items whose highest logit is the
    label; ``xvector`` scores the margin-free logits); ``multilabel`` logs ``exact_match`` (items
    whose every class is right at logit 0, i.e. probability 0.5) and ``lrap`` (label ranking
    average precision, per item, averaged over items:
    ``sklearn.metrics.label_ranking_average_precision_score``). Each is a true mean over any set of
    batches, unlike a per-batch mean AP. ``valid_metric`` (``err``, or ``loss`` for ``multilabel``:
    lower is better) is the figure the generic :class:`~audiossl.tasks.pretrain.PretrainingTask`
    chooses ``best.pt`` by; fine-tuning's :class:`~audiossl.tasks.utterance.UtteranceTask` takes its
    own (``err`` or ``lrap`` by default).

    Args:
        config: kept for checkpoints.
        upstream: any family's :class:`~audiossl.models.encoder.SpeechEncoder`, without its pretraining parts.
        featurizer: over the upstream's hidden states.
        head: :class:`PooledLinearHead` or :class:`XVectorHead`.
    """

    def __init__(self, config: UtteranceConfig, upstream: SpeechEncoder, featurizer: LayerWeightedSum,
                 head: PooledLinearHead | XVectorHead) -> None:
        super().__init__()
        self.config = config
        self.upstream = upstream
        self.featurizer = featurizer
        self.head = head
        self.multilabel = config.head.kind == "multilabel"
        self.metrics = MULTILABEL_METRICS if self.multilabel else SINGLE_LABEL_METRICS
        self.valid_metric = "loss" if self.multilabel else "err"
        if config.freeze_upstream:
            self.upstream.requires_grad_(False)
            self.upstream.eval()

    @property
    def num_classes(self) -> int:
        return self.config.head.num_classes

    @property
    def embedding_dim(self) -> int:
        """``E``, the size of :meth:`embed`'s vectors."""
        return self.head.embedding_dim

    @property
    def upstream_frozen(self) -> bool:
        return self.config.freeze_upstream

    @property
    def input_kind(self) -> str:
        return self.upstream.input_kind

    @property
    def frame_rate(self) -> float:
        return self.upstream.frame_rate

    @property
    def sample_rate(self) -> int:
        return self.upstream.sample_rate

    @property
    def num_mel_bins(self) -> int | None:
        return self.upstream.num_mel_bins

    @property
    def hidden_sizes(self) -> list[int]:
        return self.upstream.hidden_sizes

    def num_frames(self, input_lengths: Tensor) -> Tensor:
        return self.upstream.num_frames(input_lengths)

    def encode(self, inputs: Tensor, lengths: Tensor, mask: Tensor | None = None,
               generator: torch.Generator | None = None, num_layers: int | None = None) -> tuple[list[Tensor], Tensor]:
        return self.upstream.encode(inputs, lengths, mask, generator, num_layers)

    def inputs_from_waveforms(self, wavs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        return self.upstream.inputs_from_waveforms(wavs, lengths)

    def waveform_transform(self):
        return self.upstream.waveform_transform()

    def attention_weights(self, inputs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        return self.upstream.attention_weights(inputs, lengths)

    def encoder_only(self) -> SpeechEncoder:
        """The upstream encoder, without the featurizer and head."""
        return self.upstream

    def train(self, mode: bool = True) -> UtteranceModel:
        """As ``nn.Module.train``; a frozen upstream stays in eval mode."""
        super().train(mode)
        if self.upstream_frozen:
            self.upstream.eval()
        return self

    def parameter_groups(self, head_lr: float, upstream_lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups: ``{"name": "head", "params": [...], "lr": head_lr}`` (the
        featurizer's layer weights and the head) and, unless the upstream is frozen,
        ``{"name": "upstream", ..., "lr": upstream_lr}``. Every trainable parameter is in exactly
        one; pass the list to ``torch.optim.AdamW`` (a ``LambdaLR`` schedule scales each group's lr).
        """
        head = [p for module in (self.featurizer, self.head) for p in module.parameters() if p.requires_grad]
        groups = [{"name": "head", "params": head, "lr": head_lr}]
        upstream = [p for p in self.upstream.parameters() if p.requires_grad]
        if upstream:
            groups.append({"name": "upstream", "params": upstream, "lr": upstream_lr})
        return groups

    def utterance_embeddings(self, inputs: Tensor, lengths: Tensor,
                             generator: torch.Generator | None = None) -> Tensor:
        """``(B, E)`` head embeddings of inputs of :attr:`input_kind` (``(B,)`` valid samples or fbank frames).

        The upstream runs only up to the highest selected layer; with a ``generator`` a
        trainable upstream in training mode drops layers as configured.
        """
        needed = self.featurizer.states_needed
        num_layers = needed - 1 if needed < len(self.hidden_sizes) else None
        trainable = not self.upstream_frozen
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
            hidden, frames = self.upstream.encode(inputs, lengths, generator=generator if trainable else None,
                                                  num_layers=num_layers)
        return self.head.embed(self.featurizer(hidden), frames)

    def classify(self, wavs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``(B, S)`` waveforms at :attr:`sample_rate`, ``(B,)`` samples (taken as :meth:`checked_inputs`) →
        ``(B, num_classes)`` fp32 logits.

        Single-label heads: a softmax gives class probabilities (``xvector``: ``scale · cos θ`` to
        each class, no margin). ``multilabel``: a sigmoid of each logit gives that class's
        probability. Gradients flow unless the caller uses ``torch.no_grad()``; call ``eval()``
        for deterministic outputs.
        """
        return self.head.logits(self.utterance_embeddings(*self.checked_inputs(wavs, lengths)))

    def embed(self, wavs: Tensor, lengths: Tensor | None = None, normalize: bool = False) -> Tensor:
        """``(B, S)`` waveforms, ``(B,)`` samples (as :meth:`classify`) → ``(B, E)`` utterance
        embeddings, unit length with ``normalize`` (cosine scoring for verification): the ``xvector``
        head's embedding layer, the other heads' pooled vector. Gradients as :meth:`classify`."""
        embeddings = self.utterance_embeddings(*self.checked_inputs(wavs, lengths))
        return nn.functional.normalize(embeddings, dim=-1) if normalize else embeddings

    def forward(self, inputs: Tensor, lengths: Tensor, targets: Tensor,
                generator: torch.Generator | None = None) -> ObjectiveOutput:
        """Loss and metric sums of a batch.

        Args:
            inputs: ``(B, S)`` waveforms or ``(B, T_in, F)`` fbank (:attr:`input_kind`).
            lengths: ``(B,)`` valid samples or frames.
            targets: single-label heads: ``(B,)`` or ``(B, 1)`` class ids. ``multilabel``: ``(B, C)``
                float or bool multi-hot, or ``(B, L)`` integer class ids padded with negative
                values (a collated batch's ``targets``, padded with -100).
            generator: draws the upstream's layer drop while it trains.

        Returns:
            The loss (a mean over items; fp32) and sums: ``items``, then ``correct`` and
            ``errors`` (single-label) or ``exact_matches`` and ``lrap_sum`` (multilabel).
        """
        embeddings = self.utterance_embeddings(inputs, lengths, generator)
        if self.multilabel:
            labels = multi_hot(targets, self.num_classes).to(embeddings.device)
            loss, logits = self.head.loss(embeddings, labels)
            sums = multilabel_sums(logits.detach(), labels > 0.5)
        else:
            labels = class_ids(targets, self.num_classes).to(embeddings.device)
            loss, logits = self.head.loss(embeddings, labels)
            correct = float((logits.detach().argmax(-1) == labels).sum())
            sums = {"correct": correct, "errors": labels.numel() - correct}
        return ObjectiveOutput(loss, {"items": float(labels.shape[0]), **sums})


def class_ids(targets: Tensor, num_classes: int) -> Tensor:
    """``(B,)`` class ids from ``(B,)`` or ``(B, 1)`` integer targets, each checked to be in ``[0, num_classes)``."""
    if targets.dim() == 2 and targets.shape[1] == 1:
        targets = targets[:, 0]
    if targets.dim() != 1 or targets.is_floating_point():
        raise ValueError(f"single-label targets must be (B,) or (B, 1) class ids, got {tuple(targets.shape)} "
                         f"{targets.dtype}")
    wrong = targets[(targets < 0) | (targets >= num_classes)]
    if wrong.numel():
        raise ValueError(f"class ids {sorted(set(wrong.tolist()))} outside 0..{num_classes - 1}")
    return targets.long()


def multi_hot(targets: Tensor, num_classes: int) -> Tensor:
    """``(B, C)`` float multi-hot labels from ``(B, C)`` float/bool multi-hot or ``(B, L)`` integer
    class ids padded with negative values."""
    if targets.dim() != 2:
        raise ValueError(f"multilabel targets must be 2-D, got {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        if targets.shape[1] != num_classes:
            raise ValueError(f"multi-hot targets have {targets.shape[1]} classes, the head {num_classes}")
        return targets.float()
    ids = targets.long()
    if bool((ids >= num_classes).any()):
        raise ValueError(f"class ids {sorted(set(ids[ids >= num_classes].tolist()))} outside 0..{num_classes - 1}")
    labels = torch.zeros(ids.shape[0], num_classes + 1, device=ids.device)
    labels.scatter_(1, torch.where(ids < 0, num_classes, ids), 1.0)
    return labels[:, :num_classes]


def label_ranking_average_precision(scores: Tensor, labels: Tensor) -> Tensor:
    """``(B,)`` label ranking average precision of each item's ``(C,)`` scores and bool labels.

    For each true class, the fraction of the classes scored at least as high that are true,
    averaged over the item's true classes; 1 for an item with no or every class true (as
    ``sklearn.metrics.label_ranking_average_precision_score``, ties counted as ranked below).
    Compares every pair of classes: ``(B, C, C)`` booleans.
    """
    at_least = scores[:, None, :] >= scores[:, :, None]  # [b, j, k]: class k scored >= class j
    rank = at_least.sum(-1)
    true_rank = (at_least & labels[:, None, :]).sum(-1)
    precision = torch.where(labels, true_rank / rank, 0.0).sum(-1)
    count = labels.sum(-1)
    degenerate = (count == 0) | (count == labels.shape[1])
    return torch.where(degenerate, 1.0, precision / count.clamp(min=1))


def multilabel_sums(logits: Tensor, labels: Tensor) -> dict[str, float]:
    """``exact_matches`` (items whose every class is right at logit 0) and ``lrap_sum`` of ``(B, C)``
    logits and bool labels."""
    exact = ((logits > 0) == labels).all(-1)
    lrap = label_ranking_average_precision(logits, labels)
    return {"exact_matches": float(exact.sum()), "lrap_sum": float(lrap.sum())}
