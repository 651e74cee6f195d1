"""Front ends: waveforms or fbank in, 50 frames/s features out.

Every front end is an ``nn.Module`` with

- ``input_kind``: ``"waveform"`` (``(B, S)`` float at 16 kHz) or ``"fbank"`` (``(B, T, 80)``
  Kaldi fbank at 100 frames/s);
- ``frame_rate_hz`` (50) and ``output_dim`` (``C``);
- ``forward(inputs, lengths) -> (features (B, T', C), lengths (B,) long)``;
- ``num_frames(lengths) -> lengths``, the valid output frames for valid input lengths.

A valid output frame never depends on padding: padded positions are zeroed before
every convolution that could reach them and normalisation statistics use valid
positions only, so batching an utterance with a longer one leaves its frames unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torchaudio
from torch import Tensor, nn

SAMPLE_RATE = 16000
FBANK_WINDOW = 400  # 25 ms at 16 kHz
FBANK_SHIFT = 160  # 10 ms at 16 kHz


def valid_mask(lengths: Tensor, time: int) -> Tensor:
    """``(B, time)`` bool, True at positions before each item's length."""
    return torch.arange(time, device=lengths.device)[None, :] < lengths[:, None]


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad * ctx.scale, None


def scale_gradient(x: Tensor, scale: float) -> Tensor:
    """Identity forward; multiplies the gradient by ``scale`` (fairseq ``GradMultiply``)."""
    return _ScaleGradient.apply(x, scale)


class MaskedGroupNorm(nn.Module):
    """One group per channel, statistics over valid time steps only, computed in fp32.

    Equals fairseq's ``Fp32GroupNorm(C, C)`` of the first CNN layer (``extractor_mode=default``)
    on unpadded inputs, and keeps padding out of the statistics of padded ones.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        """x: ``(B, C, T)``; valid: ``(B, T)`` bool. Returns ``(B, C, T)``."""
        weights = valid[:, None, :].float()
        count = weights.sum(dim=-1, keepdim=True).clamp(min=1.0)
        xf = x.float()
        mean = (xf * weights).sum(dim=-1, keepdim=True) / count
        var = ((xf - mean).square() * weights).sum(dim=-1, keepdim=True) / count
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        return (y * self.weight[:, None] + self.bias[:, None]).type_as(x)


class ConvBlock(nn.Module):
    """Conv1d (no padding) → optional norm → GELU: one entry of fairseq ``conv_feature_layers``.

    Args:
        in_channels, out_channels, kernel_size, stride: the ``(dim, kernel, stride)`` triple.
        bias: fairseq ``conv_bias``.
        norm: ``"group"`` (masked group norm, ``extractor_mode=default`` first layer),
            ``"layer"`` (layer norm over channels, ``extractor_mode=layer_norm``) or ``None``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, bias: bool, norm: str | None
    ) -> None:
        super().__init__()
        if norm not in ("group", "layer", None):
            raise ValueError(f"norm must be 'group', 'layer' or None, got {norm!r}")
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, bias=bias)
        nn.init.kaiming_normal_(self.conv.weight)
        self.norm: nn.Module | None
        if norm == "group":
            self.norm = MaskedGroupNorm(out_channels)
        elif norm == "layer":
            self.norm = nn.LayerNorm(out_channels)
        else:
            self.norm = None

    def num_frames(self, lengths: Tensor) -> Tensor:
        """Valid output steps: ``floor((L - kernel) / stride) + 1``, at least 0."""
        return (torch.div(lengths - self.kernel_size, self.stride, rounding_mode="floor") + 1).clamp(min=0)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x: ``(B, C_in, L)`` → ``(B, C_out, L')`` and valid lengths ``(B,)``."""
        x = self.conv(x)
        lengths = self.num_frames(lengths)
        if isinstance(self.norm, MaskedGroupNorm):
            x = self.norm(x, valid_mask(lengths, x.shape[-1]))
        elif self.norm is not None:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return nn.functional.gelu(x), lengths


class ConvWaveformEncoder(nn.Module):
    """The wav2vec 2.0 / HuBERT CNN feature encoder: waveforms ``(B, S)`` → ``(B, T, C)``.

    With fairseq's default ``conv_feature_layers`` ``[(512,10,5)] + [(512,3,2)]*4 +
    [(512,2,2)]*2`` the receptive field is 400 samples and the hop 320, so
    ``T = floor((S - 400) / 320) + 1``. The feature grad multiplier (``feature_grad_mult``)
    is the model's business, not this module's.

    Args:
        blocks: the :class:`ConvBlock` stack; the first takes one input channel.
    """

    input_kind = "waveform"

    def __init__(self, blocks: Sequence[ConvBlock]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        total_stride = 1
        for block in blocks:
            total_stride *= block.stride
        self.frame_rate_hz = SAMPLE_RATE / total_stride
        self.output_dim = blocks[-1].conv.out_channels

    def num_frames(self, lengths: Tensor) -> Tensor:
        """``(B,)`` samples → ``(B,)`` valid frames."""
        for block in self.blocks:
            lengths = block.num_frames(lengths)
        return lengths

    def forward(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """inputs: ``(B, S)`` float, lengths ``(B,)`` samples → ``(B, T, C)``, ``(B,)`` frames.

        Padded output frames are zero.
        """
        if inputs.ndim != 2:
            raise ValueError(f"expected waveforms (B, S), got shape {tuple(inputs.shape)}")
        lengths = lengths.to(inputs.device)
        x = inputs.masked_fill(~valid_mask(lengths, inputs.shape[1]), 0.0)[:, None, :]
        for block in self.blocks:
            x, lengths = block(x, lengths)
        x = x.transpose(1, 2)
        return x.masked_fill(~valid_mask(lengths, x.shape[1])[..., None], 0.0), lengths


class FbankSubsampler(nn.Module):
    """Kaldi fbank ``(B, T, num_mel_bins)`` at 100 frames/s → ``(B, ceil(T/2), C)`` at 50 frames/s.

    Per-utterance mean/variance normalisation over valid frames (so raw Kaldi fbank can be
    fed), then Conv1d(kernel 3, stride 2, padding 1) + GELU, then ``extra_layers`` ×
    Conv1d(kernel 3, stride 1, padding 1) + GELU. Padded frames are zeroed before each conv.

    With ``T = 1 + (S - 400) // 160`` fbank frames (25 ms window, 10 ms shift, snip edges),
    ``ceil(T / 2) == 1 + (S - 400) // 320``: the frame count of :class:`ConvWaveformEncoder`
    and of MFCC with a 20 ms shift, so the same frame-level targets fit both front ends.

    Args:
        num_mel_bins: input feature dimension (80).
        channels: conv channels ``C``.
        extra_layers: stride-1 conv layers after the subsampling one.
    """

    input_kind = "fbank"
    frame_rate_hz = 50

    def __init__(self, num_mel_bins: int, channels: int, extra_layers: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_mel_bins = num_mel_bins
        self.output_dim = channels
        self.eps = eps
        convs = [nn.Conv1d(num_mel_bins, channels, 3, stride=2, padding=1)]
        convs += [nn.Conv1d(channels, channels, 3, stride=1, padding=1) for _ in range(extra_layers)]
        self.convs = nn.ModuleList(convs)

    def num_frames(self, lengths: Tensor) -> Tensor:
        """``(B,)`` fbank frames → ``(B,)`` output frames, ``ceil(T / 2)``."""
        return torch.div(lengths + 1, 2, rounding_mode="floor")

    def forward(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """inputs ``(B, T, F)``, lengths ``(B,)`` frames → ``(B, ceil(T/2), C)``, ``(B,)``.

        Padded output frames are zero.
        """
        if inputs.ndim != 3 or inputs.shape[-1] != self.num_mel_bins:
            raise ValueError(f"expected fbank (B, T, {self.num_mel_bins}), got shape {tuple(inputs.shape)}")
        lengths = lengths.to(inputs.device)
        valid = valid_mask(lengths, inputs.shape[1])[..., None]
        weights = valid.to(inputs.dtype)
        count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        mean = (inputs * weights).sum(dim=1, keepdim=True) / count
        var = ((inputs - mean).square() * weights).sum(dim=1, keepdim=True) / count
        x = ((inputs - mean) * torch.rsqrt(var + self.eps)).masked_fill(~valid, 0.0).transpose(1, 2)
        lengths = self.num_frames(lengths)
        for conv in self.convs:
            x = nn.functional.gelu(conv(x))
            x = x.masked_fill(~valid_mask(lengths, x.shape[-1])[:, None, :], 0.0)
        return x.transpose(1, 2), lengths


class FeatureProjection(nn.Module):
    """LayerNorm → Linear → Dropout between a front end and the encoder.

    fairseq: ``layer_norm`` over the ``C`` front-end channels, ``post_extract_proj``
    (``C → encoder_embed_dim``) and ``dropout_input``.
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.layer_norm = nn.LayerNorm(in_dim)
        self.projection = nn.Linear(in_dim, out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, C)`` → ``(B, T, D)``."""
        return self.dropout(self.projection(self.layer_norm(x)))


def fbank_num_frames(num_samples: Tensor) -> Tensor:
    """Kaldi fbank frames (25 ms window, 10 ms shift, snip edges) for ``num_samples`` at 16 kHz."""
    return torch.where(
        num_samples >= FBANK_WINDOW,
        torch.div(num_samples - FBANK_WINDOW, FBANK_SHIFT, rounding_mode="floor") + 1,
        torch.zeros_like(num_samples),
    )


def waveform_to_fbank(wavs: Tensor, lengths: Tensor, num_mel_bins: int = 80) -> tuple[Tensor, Tensor]:
    """Kaldi fbank of each valid waveform, zero-padded to the longest.

    Uses ``torchaudio.compliance.kaldi.fbank(wav * 32768, num_mel_bins, dither=0.0)`` (the
    16-bit sample scale Kaldi sees) per item, so an item's features do not depend on its batch.

    Args:
        wavs: ``(B, S)`` float waveforms at 16 kHz in [-1, 1].
        lengths: ``(B,)`` valid samples.

    Returns:
        ``(B, T, num_mel_bins)`` fbank and ``(B,)`` frames, ``T = 1 + (S - 400) // 160``.
    """
    frames = fbank_num_frames(lengths.long())
    out = wavs.new_zeros(wavs.shape[0], int(frames.max()) if frames.numel() else 0, num_mel_bins)
    for i, (num_samples, num_frames) in enumerate(zip(lengths.tolist(), frames.tolist())):
        if num_frames == 0:
            continue
        feats = torchaudio.compliance.kaldi.fbank(
            wavs[i, :num_samples][None].float() * 32768,
            num_mel_bins=num_mel_bins,
            dither=0.0,
            sample_frequency=SAMPLE_RATE,
        )
        out[i, :num_frames] = feats.to(out.dtype)
    return out, frames
