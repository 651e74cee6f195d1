"""HuBERT: masked prediction of frame-level cluster targets (Hsu et al., 2021)."""
from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from audiossl.models.hubert.config import HubertConfig
from audiossl.nn.augment import random_warp_factors, warp_frequency_axis
from audiossl.nn.frontends import FeatureProjection, scale_gradient, valid_mask, waveform_to_fbank
from audiossl.nn.masking import compute_span_mask
from audiossl.nn.transformer import TransformerEncoder
from audiossl.objectives.masked_prediction import MaskedPredictionHead, MaskedPredictionOutput

IGNORE_INDEX = -100


class HubertModel(nn.Module):
    """Front end → feature projection → (mask embedding) → transformer → prediction head.

    Built by :func:`audiossl.models.hubert.factory.build_hubert`. The parts arrive built;
    ``config`` is kept for checkpoints and supplies the scalar training settings
    (``mask``, ``unmasked_weight``, ``feature_grad_mult``, ``frequency_warp``).

    Args:
        config: the config the parts were built from.
        frontend: waveform CNN or fbank subsampler (``(B, T, C)`` at 50 frames/s).
        feature_projection: ``C → D`` (fairseq ``layer_norm``, ``post_extract_proj``, ``dropout_input``).
        encoder: the transformer, returning all hidden states.
        head: the masked-prediction head (fairseq ``final_proj``, ``label_embs_concat``).
    """

    def __init__(
        self,
        config: HubertConfig,
        frontend: nn.Module,
        feature_projection: FeatureProjection,
        encoder: TransformerEncoder,
        head: MaskedPredictionHead,
    ) -> None:
        super().__init__()
        self.config = config
        self.frontend = frontend
        self.feature_projection = feature_projection
        self.encoder = encoder
        self.head = head
        self.mask_embedding = nn.Parameter(torch.empty(feature_projection.out_dim).uniform_())  # fairseq mask_emb

    def num_frames(self, input_lengths: Tensor) -> Tensor:
        """``(B,)`` input lengths (samples or fbank frames, as the front end takes) → ``(B,)`` frames."""
        return self.frontend.num_frames(input_lengths)

    def encode(
        self,
        inputs: Tensor,
        lengths: Tensor,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        num_layers: int | None = None,
    ) -> tuple[list[Tensor], Tensor]:
        """Encode inputs of the front end's kind.

        Args:
            inputs: ``(B, S)`` waveforms or ``(B, T_in, F)`` fbank (``frontend.input_kind``).
            lengths: ``(B,)`` valid samples or fbank frames.
            mask: ``(B, T)`` bool; masked frames are replaced by the learned mask embedding.
            generator: layer-drop draws; without one (or in eval mode) every layer runs.
            num_layers: run only the first this many transformer layers (None: all).

        Returns:
            ``num_layers + 1`` hidden states ``(B, T, D)`` (see
            :meth:`~audiossl.nn.transformer.TransformerEncoder.forward`) and ``(B,)`` frames.
        """
        lengths = lengths.to(inputs.device)
        if bool((self.num_frames(lengths) < 1).any()):
            raise ValueError(f"inputs too short for one frame: input lengths {lengths.tolist()}")
        grad_mult = self.config.feature_grad_mult
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_mult > 0.0):
            features, frame_lengths = self.frontend(inputs, lengths)
        if grad_mult not in (0.0, 1.0):
            features = scale_gradient(features, grad_mult)
        x = self.feature_projection(features)
        if mask is not None:
            if mask.shape != x.shape[:2]:
                raise ValueError(f"mask shape {tuple(mask.shape)} != frame grid {tuple(x.shape[:2])}")
            x = torch.where(mask.to(x.device)[..., None], self.mask_embedding.to(x.dtype), x)
        padding_mask = ~valid_mask(frame_lengths, x.shape[1])
        return self.encoder(x, padding_mask, generator, num_layers), frame_lengths

    @property
    def hidden_sizes(self) -> list[int]:
        """Feature size of each hidden state :meth:`extract_features` returns (encoder input first)."""
        return [self.config.encoder.dim] * (self.config.encoder.num_layers + 1)

    def extract_features(self, wavs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """Hidden states from ``(B, S)`` 16 kHz waveforms with ``(B,)`` valid samples.

        Converts to Kaldi fbank first when the front end takes fbank. Gradients flow unless
        the caller uses ``torch.no_grad()``; call ``eval()`` for deterministic features.
        """
        if self.frontend.input_kind == "fbank":
            wavs, lengths = waveform_to_fbank(wavs, lengths, self.frontend.num_mel_bins)
        return self.encode(wavs, lengths)

    def forward(
        self, inputs: Tensor, lengths: Tensor, targets: Tensor, generator: torch.Generator
    ) -> MaskedPredictionOutput:
        """One masked-prediction step.

        Args:
            inputs, lengths: as :meth:`encode`.
            targets: ``(B, T_t)`` long cluster ids; item ``b`` holds exactly
                ``num_frames(lengths)[b]`` labels followed by ``-100`` padding (``T_t`` may
                exceed the frame grid by padding only).
            generator: draws the span mask (``config.mask``), the layer drop and, in training
                mode, the frequency warp (``config.frequency_warp``).

        Returns:
            Loss and metrics from :class:`~audiossl.objectives.masked_prediction.MaskedPredictionHead`.

        Raises:
            ValueError: an item's target count differs from its frame count.
        """
        lengths = lengths.to(inputs.device)
        frame_lengths = self.num_frames(lengths)
        time = int(self.num_frames(lengths.new_tensor([inputs.shape[1]])))
        targets = self._align_targets(targets, frame_lengths, time, inputs.shape)
        spans = self.config.mask
        mask = compute_span_mask(
            (inputs.shape[0], time), frame_lengths, spans.prob, spans.length, spans.min_masks, generator
        ).to(inputs.device)
        if self.training and self.config.frequency_warp > 0.0:
            factors = random_warp_factors(inputs.shape[0], self.config.frequency_warp, generator)
            inputs = warp_frequency_axis(inputs, factors)
        hidden_states, frame_lengths = self.encode(inputs, lengths, mask, generator)
        padding_mask = ~valid_mask(frame_lengths, time)
        return self.head(hidden_states[-1], targets, mask, padding_mask, self.config.unmasked_weight)

    def replace_head(self, num_classes: int) -> None:
        """New random label embeddings for ``num_classes`` targets (next HuBERT iteration).

        The encoder and the head's projection are kept; ``config.num_classes`` is updated.
        Rebuild the optimizer afterwards: the old table's parameter is gone.
        """
        old = self.head.label_embeddings
        self.head.label_embeddings = nn.Parameter(
            torch.empty(num_classes, old.shape[1], dtype=old.dtype, device=old.device).uniform_()
        )
        self.config = dataclasses.replace(self.config, num_classes=num_classes)

    @staticmethod
    def _align_targets(targets: Tensor, frame_lengths: Tensor, time: int, input_shape: torch.Size) -> Tensor:
        """Check targets against the frame counts and pad/crop them to ``(B, time)``."""
        if targets.ndim != 2 or targets.shape[0] != frame_lengths.shape[0]:
            raise ValueError(f"targets must be (B, T) with B={frame_lengths.shape[0]}, got {tuple(targets.shape)}")
        targets = targets.to(frame_lengths.device)
        width = max(targets.shape[1], time)
        padded = nn.functional.pad(targets, (0, width - targets.shape[1]), value=IGNORE_INDEX)
        labelled = padded != IGNORE_INDEX
        ok = (labelled == valid_mask(frame_lengths, width)).all(dim=1)
        if not bool(ok.all()):
            bad = (~ok).nonzero().flatten().tolist()
            raise ValueError(
                f"target length differs from num_frames for batch items {bad}: "
                f"targets {labelled.sum(dim=1)[bad].tolist()} vs frames {frame_lengths[bad].tolist()} "
                f"(targets shape {tuple(targets.shape)}, inputs shape {tuple(input_shape)}); each item needs "
                f"num_frames(lengths) labels followed by {IGNORE_INDEX} padding"
            )
        return padded[:, :time]
