"""The encoder interface that every model family implements and every caller uses.

Fine-tuning, k-means on a layer, the SUPERB featurizer, the converters and inspection tools
see a model only through :class:`SpeechEncoder`: ``extract_features``, ``encode``,
``num_frames``, ``hidden_sizes``, ``frame_rate``, ``sample_rate``, ``input_kind`` and the
family operations ``encoder_only()``, ``truncated(n)`` and ``with_layer_drop(p)``. Nothing
outside ``audiossl/models`` reaches into a model's parts or its config sections.

:class:`FrontendTransformer` implements it for the wav2vec 2.0 body (front end → feature
projection → mask embedding → transformer) that HuBERT, wav2vec 2.0 and WavLM share.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
from torch import Tensor, nn

from audiossl.data.transforms import BatchTransform, FbankFromWaveform
from audiossl.errors import ConfigError, UserError
from audiossl.nn.frontends import SAMPLE_RATE, FeatureProjection, scale_gradient, valid_mask, waveform_to_fbank
from audiossl.nn.mamba import BiMambaEncoder
from audiossl.nn.masking import compute_span_mask
from audiossl.nn.transformer import TransformerEncoder
from audiossl.objectives.output import MetricRatios


class EncoderInputError(UserError, ValueError):
    """Waveforms, inputs or lengths an encoder cannot take (shape, dtype, values); the message names them."""


def checked_waveforms(wavs: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """``wavs`` and ``lengths`` (None: each item's ``S`` samples) as ``(B, S)`` float waveforms and ``(B,)``
    integer lengths in ``1..S``, or an :class:`EncoderInputError` naming what does not fit."""
    if isinstance(wavs, (list, tuple)):
        raise EncoderInputError(f"expected waveforms (B, S), got a {type(wavs).__name__} of {len(wavs)}: pad them into "
                                "one batch (torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)) and give their "
                                "lengths")
    shape = tuple(getattr(wavs, "shape", ()))
    if not isinstance(wavs, Tensor) or wavs.ndim != 2:
        hint = ": one waveform (S,) is the batch wav[None]" if len(shape) == 1 else ""
        raise EncoderInputError(f"expected waveforms (B, S), got {type(wavs).__name__} of shape {shape}{hint}")
    if not wavs.is_floating_point():
        raise EncoderInputError(f"waveforms of {wavs.dtype}: give float samples in [-1, 1] "
                                "(16-bit ones divided by 32768)")
    batch, samples = shape
    if batch == 0:
        raise EncoderInputError(f"an empty batch: waveforms of shape {shape}")
    if lengths is None:
        return wavs, torch.full((batch,), samples, dtype=torch.long, device=wavs.device)
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch,) or lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise EncoderInputError(f"lengths must be ({batch},) whole sample counts, one per waveform, got "
                                f"{lengths.dtype} of shape {tuple(lengths.shape)}")
    if bool(((lengths < 1) | (lengths > samples)).any()):
        raise EncoderInputError(f"lengths {lengths.tolist()} of waveforms of {samples} samples: each must be in "
                                f"1..{samples}")
    return wavs, lengths


class SpeechEncoder(nn.Module):
    """What every family's model offers (pretraining models and, by delegation, fine-tuned ones).

    Attributes:
        input_kind: ``"waveform"`` (``(B, S)`` float at :attr:`sample_rate`) or ``"fbank"``
            (``(B, T_in, F)`` Kaldi fbank at 100 frames/s): what :meth:`encode` takes.
        frame_rate: hidden-state frames per second (50 for the CNN and the fbank subsampler).
        sample_rate: waveform samples per second that :meth:`extract_features` takes (16 kHz; MERT 24 kHz).
        num_mel_bins: the fbank bins :meth:`encode` takes (None for waveform input); datasets
            compute them from the audio where a data dir's ``feats.scp`` holds others.
        hidden_sizes: feature size of each hidden state, the encoder input first.
        target_codebooks: label ids per frame a label-predicting model takes (K codebooks; 1 for k-means labels).

    A pretraining model also has ``forward(inputs, lengths, targets, generator) ->``
    :class:`~audiossl.objectives.output.ObjectiveOutput`, the figures it logs (``metrics``: figure
    → numerator and denominator sums) and the one that chooses ``best.pt`` (``valid_metric``).
    """

    sample_rate: ClassVar[int] = SAMPLE_RATE
    metrics: ClassVar[MetricRatios] = {}
    valid_metric: ClassVar[str] = "loss"
    target_codebooks: ClassVar[int] = 1

    input_kind: str
    frame_rate: float
    hidden_sizes: list[int]
    num_mel_bins: int | None

    def num_frames(self, input_lengths: Tensor) -> Tensor:
        """``(B,)`` input lengths (samples or fbank frames, per :attr:`input_kind`) → ``(B,)`` frames."""
        raise NotImplementedError

    def encode(self, inputs: Tensor, lengths: Tensor, mask: Tensor | None = None,
               generator: torch.Generator | None = None, num_layers: int | None = None) -> tuple[list[Tensor], Tensor]:
        """Hidden states of inputs of :attr:`input_kind`.

        Args:
            inputs: ``(B, S)`` waveforms or ``(B, T_in, F)`` fbank.
            lengths: ``(B,)`` valid samples or fbank frames.
            mask: ``(B, T)`` bool frames to hide from the encoder (replaced by a learned embedding).
            generator: draws layer drop; without one (or in eval mode) every layer runs.
            num_layers: run only the first this many layers (None: all).

        Returns:
            ``num_layers + 1`` hidden states ``(B, T, D)`` (the encoder input first) and ``(B,)`` frames.
        """
        raise NotImplementedError

    def inputs_from_waveforms(self, wavs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, S)`` waveforms at :attr:`sample_rate` and ``(B,)`` samples → the inputs :meth:`encode` takes."""
        return wavs, lengths

    def waveform_transform(self) -> BatchTransform | None:
        """The batch transform that turns waveform batches into this model's inputs (None: it takes waveforms).

        For training on audio that a batch transform changes first (utterance or noise mixing).
        """
        return None

    def checked_inputs(self, wavs: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The inputs :meth:`encode` takes, in the model's dtype, of ``(B, S)`` float waveforms at
        :attr:`sample_rate` (any float dtype) with ``(B,)`` valid samples (None: every item whole).

        Waveforms of another shape or of integers, lengths that do not fit them, an item too short for
        one frame, or waveforms that want a gradient through a model's Kaldi fbank are an
        :class:`EncoderInputError` naming them.
        """
        wavs, lengths = checked_waveforms(wavs, lengths)
        if self.input_kind == "fbank" and wavs.requires_grad and torch.is_grad_enabled():
            raise EncoderInputError(f"a {type(self).__name__} takes Kaldi fbank, computed without gradients: its "
                                    "waveforms get none (detach them, or take the gradient of the fbank inputs "
                                    "that inputs_from_waveforms gives, through encode)")
        inputs, input_lengths = self.inputs_from_waveforms(wavs, lengths)
        short = (self.num_frames(input_lengths) < 1).nonzero().flatten().tolist()
        if short:
            raise EncoderInputError(f"items {short} of {[int(lengths[i]) for i in short]} samples are too short "
                                    f"for one frame of this {type(self).__name__}")
        return inputs.to(next(self.parameters()).dtype), input_lengths

    def extract_features(self, wavs: Tensor, lengths: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """Every hidden state ``(B, T, D)`` and ``(B,)`` valid frames of ``(B, S)`` waveforms and ``(B,)``
        samples, taken as :meth:`checked_inputs` (in any float dtype; computed in the model's).

        Computes Kaldi fbank first when the model takes fbank. Gradients flow unless the caller
        uses ``torch.no_grad()``; call ``eval()`` for deterministic features.
        """
        return self.encode(*self.checked_inputs(wavs, lengths))

    def encoder_only(self) -> SpeechEncoder:
        """The model without what only pretraining or a downstream task uses (prediction heads,
        quantizers, an ASR head): ``self`` with those parts dropped, or the encoder within.

        Rebuilding the family from the same config and calling this gives the same parameter names.
        """
        raise NotImplementedError

    def truncated(self, num_layers: int) -> SpeechEncoder:
        """Keep the first ``num_layers`` layers (and their weights), in place; returns ``self``.

        Every family implements it; a model with a downstream head over the layers (CTC, utterance)
        refuses: its :meth:`encoder_only` is truncated instead.
        """
        raise ConfigError(f"a {type(self).__name__} keeps the layers its head was trained on: truncate its "
                          "encoder_only()")

    def with_layer_drop(self, layer_drop: float) -> SpeechEncoder:
        """Set the probability of skipping each layer while training, in place; returns ``self``
        (implemented and refused as :meth:`truncated`)."""
        raise ConfigError(f"a {type(self).__name__} keeps its encoder's layer drop: set it on its encoder_only()")

    def attention_weights(self, inputs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """The ``(B, H, T, T)`` attention weights of every layer (eval mode, no masking) and ``(B,)`` frames."""
        raise NotImplementedError(f"{type(self).__name__} has no attention layers")

    def set_attention_chunk(self, frames: int | None) -> SpeechEncoder:
        """Attend within chunks of ``frames`` frames (full left context, no look-ahead past the chunk) in
        every forward from now on, training included (streaming fine-tuning and decoding); None: full
        context again (and the configured dynamic chunks in training). In place; returns ``self``."""
        raise ConfigError(f"{type(self).__name__} has no chunkwise attention")

    def set_num_updates(self, num_updates: int) -> None:
        """Called before each pretraining update (e.g. to anneal a temperature); nothing by default."""

    def health_warnings(self, figures: dict[str, float]) -> list[str]:
        """Warnings about this log interval's pretraining ``figures`` (e.g. a collapse); none by default."""
        return []


class FrontendTransformer(SpeechEncoder):
    """Front end → feature projection → (mask embedding) → encoder: the wav2vec 2.0 body, its encoder
    a transformer or a bidirectional Mamba stack (``config.encoder.kind``).

    A family model subclasses it and adds its objective. ``config`` is the family's
    :class:`~audiossl.models.components.ModelConfig` with ``encoder`` (an
    :class:`~audiossl.models.components.EncoderConfig`) among its fields; it is kept for
    checkpoints and updated by :meth:`truncated` and :meth:`with_layer_drop`.

    Args:
        config: the config the parts were built from.
        frontend: waveform CNN or fbank subsampler (``(B, T, C)`` at 50 frames/s).
        feature_projection: ``C → D`` (fairseq ``layer_norm``, ``post_extract_proj``, ``dropout_input``).
        encoder: the transformer or Mamba stack, returning all hidden states.
        feature_grad_mult: gradient scale into the front end (fairseq ``feature_grad_mult``); 0 freezes it.
    """

    def __init__(self, config, frontend: nn.Module, feature_projection: FeatureProjection,
                 encoder: TransformerEncoder | BiMambaEncoder, feature_grad_mult: float) -> None:
        super().__init__()
        self.config = config
        self.frontend = frontend
        self.feature_projection = feature_projection
        self.encoder = encoder
        self.feature_grad_mult = feature_grad_mult
        self.mask_embedding = nn.Parameter(torch.empty(feature_projection.out_dim).uniform_())  # fairseq mask_emb

    @property
    def input_kind(self) -> str:
        return self.frontend.input_kind

    @property
    def frame_rate(self) -> float:
        return self.frontend.frame_rate_hz

    @property
    def sample_rate(self) -> int:
        return self.frontend.sample_rate

    @property
    def num_mel_bins(self) -> int | None:
        return self.frontend.num_mel_bins if self.input_kind == "fbank" else None

    @property
    def hidden_sizes(self) -> list[int]:
        return [self.feature_projection.out_dim] * (len(self.encoder.layers) + 1)

    def num_frames(self, input_lengths: Tensor) -> Tensor:
        return self.frontend.num_frames(input_lengths)

    def inputs_from_waveforms(self, wavs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        if self.input_kind == "fbank":
            return waveform_to_fbank(wavs, lengths, self.frontend.num_mel_bins)
        return wavs, lengths

    def waveform_transform(self) -> FbankFromWaveform | None:
        return FbankFromWaveform(self.frontend.num_mel_bins) if self.input_kind == "fbank" else None

    def frontend_features(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Front-end output ``(B, T, C)`` (gradient scaled by ``feature_grad_mult``) and ``(B,)`` frames."""
        lengths = lengths.to(inputs.device)
        if bool((self.num_frames(lengths) < 1).any()):
            raise EncoderInputError(f"inputs too short for one frame: input lengths {lengths.tolist()}")
        grad_mult = self.feature_grad_mult
        with torch.set_grad_enabled(torch.is_grad_enabled() and grad_mult > 0.0):
            features, frame_lengths = self.frontend(inputs, lengths)
        if grad_mult not in (0.0, 1.0):
            features = scale_gradient(features, grad_mult)
        return features, frame_lengths

    def span_mask(self, shape: tuple[int, int], frame_lengths: Tensor, generator: torch.Generator) -> Tensor:
        """``(B, T)`` bool pretraining mask of spans drawn from ``generator`` by ``config.mask`` over each
        item's ``frame_lengths`` (``(B,)``), on their device."""
        spans = self.config.mask
        mask = compute_span_mask(shape, frame_lengths, spans.prob, spans.length, spans.min_masks, generator)
        return mask.to(frame_lengths.device)

    def encode(self, inputs: Tensor, lengths: Tensor, mask: Tensor | None = None,
               generator: torch.Generator | None = None, num_layers: int | None = None) -> tuple[list[Tensor], Tensor]:
        features, frame_lengths = self.frontend_features(inputs, lengths)
        return self.encode_features(self.feature_projection(features), frame_lengths, mask, generator, num_layers)

    def encode_features(self, x: Tensor, frame_lengths: Tensor, mask: Tensor | None = None,
                        generator: torch.Generator | None = None,
                        num_layers: int | None = None) -> tuple[list[Tensor], Tensor]:
        """The transformer over projected features ``x`` ``(B, T, D)``, masked frames replaced first."""
        total = len(self.encoder.layers)
        if num_layers is not None and not 0 <= num_layers <= total:
            raise EncoderInputError(f"cannot run {num_layers} layers of a {total}-layer encoder (0..{total})")
        if mask is not None:
            if mask.shape != x.shape[:2]:
                raise ValueError(f"mask shape {tuple(mask.shape)} != frame grid {tuple(x.shape[:2])}")
            x = torch.where(mask.to(x.device)[..., None], self.mask_embedding.to(x.dtype), x)
        padding_mask = ~valid_mask(frame_lengths, x.shape[1])
        return self.encoder(x, padding_mask, generator, num_layers), frame_lengths

    def truncated(self, num_layers: int) -> FrontendTransformer:
        total = len(self.encoder.layers)
        if not 1 <= num_layers <= total:
            raise ConfigError(f"cannot keep {num_layers} layers of a {total}-layer encoder (1..{total})")
        del self.encoder.layers[num_layers:]
        self._set_encoder_config(num_layers=num_layers)
        return self

    def with_layer_drop(self, layer_drop: float) -> FrontendTransformer:
        if not 0.0 <= layer_drop < 1.0:
            raise ConfigError(f"layer drop must be in [0, 1), got {layer_drop}")
        self.encoder.layer_drop = layer_drop
        self._set_encoder_config(layer_drop=layer_drop)
        return self

    def set_attention_chunk(self, frames: int | None) -> FrontendTransformer:
        if not isinstance(self.encoder, TransformerEncoder):
            raise ConfigError(f"chunkwise attention needs a transformer encoder, not {type(self.encoder).__name__}")
        if frames is not None and frames < 1:
            raise ConfigError(f"an attention chunk has at least 1 frame, got {frames}")
        self.encoder.chunk_frames = frames
        return self

    def _set_encoder_config(self, **changes) -> None:
        self.config = dataclasses.replace(self.config, encoder=dataclasses.replace(self.config.encoder, **changes))

    @torch.no_grad()
    def attention_weights(self, inputs: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        if self.training:
            raise ValueError("attention_weights needs a model in eval mode (dropout and layer drop off)")
        if self.config.encoder.kind != "transformer":
            raise ConfigError(f"attention weights need a transformer encoder; this one is {self.config.encoder.kind!r}")
        hidden, frame_lengths = self.encode(inputs, lengths)
        padding = ~valid_mask(frame_lengths, hidden[0].shape[1])
        bias = self.encoder.attention_bias(hidden[0].shape[1])
        weights = [layer.attention_weights(x, padding, bias) for layer, x in zip(self.encoder.layers, hidden)]
        return weights, frame_lengths
