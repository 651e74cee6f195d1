"""Front ends: waveforms or fbank in, 50 frames/s features out.

Every front end is an ``nn.Module`` with

- ``input_kind``: ``"waveform"`` (``(B, S)`` float at 16 kHz) or ``"fbank"`` (``(B, T, 80)``
  Kaldi fbank at 100 frames/s);
- ``sample_rate`` (of the waveforms it or its fbank takes: 16 kHz, or the CNN's configured rate),
  ``frame_rate_hz`` (50) and ``output_dim`` (``C``);
- ``forward(inputs, lengths) -> (features (B, T', C), lengths (B,) long)``;
- ``num_frames(lengths) -> lengths``, the valid output frames for valid input lengths.

A valid output frame never depends on padding: padded positions are zeroed before
every convolution that could reach them and normalisation statistics use valid
positions only, so batching an utterance with a longer one leaves its frames unchanged.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from audiossl.features.kaldi import FeatureConfig, FeatureExtractor
from audiossl.nn.conv import blockwise_conv1d, windowed_gelu_winograd_conv1d, winograd_stride2_conv1d

SAMPLE_RATE = 16000
FBANK_WINDOW = 400  # 25 ms at 16 kHz
FBANK_SHIFT = 160  # 10 ms at 16 kHz


def valid_mask(lengths: Tensor, time: int) -> Tensor:
    """``(B, time)`` bool, True at positions before each item's length."""
    return torch.arange(time, device=lengths.device)[None, :] < lengths[:, None]


def reverse_valid(frames: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each item's first ``lengths[b]`` frames of ``(B, T, ...)``; padding stays at the end."""
    steps = torch.arange(frames.shape[1], device=frames.device)
    lengths = lengths.to(frames.device)[:, None]
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return frames.gather(1, index.view(*index.shape, *[1] * (frames.dim() - 2)).expand_as(frames))


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


def conv_windows(x: Tensor, kernel: int, stride: int, frames: int) -> Tensor:
    """The first ``frames`` input windows of a strided conv, copied: ``(B, T, C)`` → ``(B, frames, C * kernel)``
    (channel-major, as ``nn.Conv1d.weight.reshape(C_out, -1)``)."""
    return x.unfold(1, kernel, stride)[:, :frames].reshape(x.shape[0], frames, -1)


class MaskedGroupNorm(nn.Module):
    """One group per channel over valid time steps, computed in fp32 and folded into the conv before it.

    Equals fairseq's ``Fp32GroupNorm(C, C)`` after the first CNN layer (``extractor_mode=default``)
    on unpadded inputs, and keeps padding out of the statistics of padded ones. The conv is linear
    in its input windows, so each channel's mean and variance over an item's valid steps follow
    from the windows' mean ``μ`` and covariance ``Σ`` (``W μ + b`` and ``diag(W Σ Wᵀ)``), and the
    normalised output is one matrix product of the windows with per-item scaled weights: no pass
    over the ``(B, T, C)`` output is spent on statistics.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def normalized_conv(self, windows: Tensor, weight: Tensor, bias: Tensor | None, lengths: Tensor) -> Tensor:
        """GroupNorm(windows @ weightᵀ + bias).

        Args:
            windows: ``(B, T, D)`` conv input windows (:func:`conv_windows`).
            weight: ``(C, D)`` the conv as a matrix; bias ``(C,)`` or None.
            lengths: ``(B,)`` valid steps.
        Returns:
            ``(B, T, C)``.
        """
        scaled, offset = self.fold(windows, weight, bias, lengths)
        return torch.baddbmm(offset, windows, scaled)

    def fold(self, windows: Tensor, weight: Tensor, bias: Tensor | None, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The per-item weights ``(B, D, C)`` and offsets ``(B, 1, C)`` (in the windows' dtype) with
        ``windows @ weights + offsets`` = :meth:`normalized_conv`; arguments as there."""
        valid = valid_mask(lengths, windows.shape[1])[..., None].float()
        count = valid.sum(dim=1).clamp(min=1.0)  # (B, 1)
        windows32, weight32 = windows.float(), weight.float()
        mean_window = (windows32 * valid).sum(dim=1) / count  # (B, D)
        centered = (windows32 - mean_window[:, None]) * valid
        covariance = centered.transpose(1, 2) @ centered / count[..., None]  # (B, D, D)
        mean = mean_window @ weight32.t()  # (B, C)
        if bias is not None:
            mean = mean + bias
        var = ((weight32 @ covariance) * weight32).sum(dim=-1)
        scale = self.weight * torch.rsqrt(var + self.eps)  # (B, C)
        offset = self.bias - mean * scale
        if bias is not None:  # cancels the mean's bias: zero gradient, but the bias stays in the graph
            offset = offset + bias * scale
        scaled = weight32.t()[None] * scale[:, None, :]  # (B, D, C)
        return scaled.to(windows.dtype), offset[:, None, :].to(windows.dtype)


class ConvBlock(nn.Module):
    """Conv1d (no padding) → optional norm → GELU: one entry of fairseq ``conv_feature_layers``.

    Runs channels-last. A block whose windows are narrower than its output (``C_in * K <= C_out``,
    the first layer on waveforms) or that has group norm copies its windows and does one matrix
    product (the group norm folded in); a kernel-3 stride-2 one runs :func:`winograd_stride2_conv1d`
    on the CPU (where fewer products pay; measured in ``bench/conv.py``) and any other
    :func:`blockwise_conv1d`, both over views. The parameters are an ``nn.Conv1d``'s.
    :class:`ConvWaveformEncoder` may run a block fused with the one before (its methods
    :meth:`folded_operands`, :meth:`uses_winograd` and :meth:`activate` serve that).

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
        self.windowed = norm == "group" or in_channels * kernel_size <= out_channels

    def num_frames(self, lengths: Tensor) -> Tensor:
        """Valid output steps: ``floor((L - kernel) / stride) + 1``, at least 0."""
        return (torch.div(lengths - self.kernel_size, self.stride, rounding_mode="floor") + 1).clamp(min=0)

    def input_steps(self, frames: int) -> int:
        """The input steps :meth:`forward` needs to give ``frames`` output steps."""
        if self.windowed:
            return self.kernel_size + self.stride * (frames - 1) if frames > 0 else 0
        return self.stride * (frames - 1 + -(-self.kernel_size // self.stride))

    def uses_winograd(self, device: torch.device) -> bool:
        """Whether the conv runs as :func:`winograd_stride2_conv1d` (kernel 3, stride 2, on the CPU)."""
        return not self.windowed and (self.kernel_size, self.stride) == (3, 2) and device.type == "cpu"

    def folded_operands(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For a group-norm block: its windows ``(B, L', C_in * K)``, weights ``(B, C_in * K, C_out)``
        and offsets ``(B, 1, C_out)``, the norm folded in: the conv and norm give ``windows @
        weights + offsets``. x ``(B, L, C_in)``, lengths ``(B,)`` valid input steps."""
        if not isinstance(self.norm, MaskedGroupNorm):
            raise ValueError("folded_operands needs a block with group norm")
        windows = self._windows(x)
        return windows, *self.norm.fold(windows, self._matrix(), self.conv.bias, self.num_frames(lengths))

    def _windows(self, x: Tensor) -> Tensor:
        """The conv's input windows, copied: ``(B, L, C_in)`` → ``(B, L', C_in * K)``."""
        frames = max((x.shape[1] - self.kernel_size) // self.stride + 1, 0)
        return conv_windows(x, self.kernel_size, self.stride, frames)

    def _matrix(self) -> Tensor:
        """The conv weight as a ``(C_out, C_in * K)`` matrix (channel-major, as the windows)."""
        return self.conv.weight.reshape(self.conv.out_channels, -1)

    def activate(self, x: Tensor) -> Tensor:
        """The conv's output ``(B, L', C_out)`` → the block's: layer norm (if the block has it), GELU."""
        if isinstance(self.norm, nn.LayerNorm):
            x = self.norm(x)
        return nn.functional.gelu(x)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x: ``(B, L, C_in)`` → ``(B, L', C_out)`` and valid lengths ``(B,)``."""
        weight, bias = self.conv.weight, self.conv.bias
        if self.uses_winograd(x.device):
            x = winograd_stride2_conv1d(x, weight, bias)
        elif not self.windowed:
            x = blockwise_conv1d(x, weight, bias, self.stride)
        elif isinstance(self.norm, MaskedGroupNorm):
            x = self.norm.normalized_conv(self._windows(x), self._matrix(), bias, self.num_frames(lengths))
        else:
            x = nn.functional.linear(self._windows(x), self._matrix(), bias)
        return self.activate(x), self.num_frames(lengths)


class ConvWaveformEncoder(nn.Module):
    """The wav2vec 2.0 / HuBERT CNN feature encoder: waveforms ``(B, S)`` → ``(B, T, C)``.

    With fairseq's default ``conv_feature_layers`` ``[(512,10,5)] + [(512,3,2)]*4 +
    [(512,2,2)]*2`` the receptive field is 400 samples and the hop 320, so
    ``T = floor((S - 400) / 320) + 1``. The feature grad multiplier (``feature_grad_mult``)
    is the model's business, not this module's.

    Args:
        blocks: the :class:`ConvBlock` stack; the first takes one input channel.
        sample_rate: of the input waveforms (16 kHz; MERT's 24 kHz gives 75 frames/s).
    """

    input_kind = "waveform"

    def __init__(self, blocks: Sequence[ConvBlock], sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        total_stride = 1
        for block in blocks:
            total_stride *= block.stride
        self.sample_rate = sample_rate
        self.frame_rate_hz = sample_rate / total_stride
        self.output_dim = blocks[-1].conv.out_channels

    def _run_blocks(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """The blocks over ``x (B, S, 1)``. Fairseq's default layout on the CPU runs fused: the group-norm
        first block and the second as one :func:`windowed_gelu_winograd_conv1d`, and each further
        Winograd block takes the conv output of the block before and makes its GELU on the fly
        (``gelu_first``), so no block's output feeding a Winograd block is stored whole."""
        if not self._fuses_first_two_blocks(x):
            for block in self.blocks:
                x, lengths = block(x, lengths)
            return x, lengths
        first, last, *rest = self.blocks
        x = windowed_gelu_winograd_conv1d(*first.folded_operands(x, lengths), last.conv.weight, last.conv.bias)
        lengths = last.num_frames(first.num_frames(lengths))
        while rest and rest[0].uses_winograd(x.device) and last.norm is None:  # x: last's conv output
            last, *rest = rest
            x = winograd_stride2_conv1d(x, last.conv.weight, last.conv.bias, gelu_first=True)
            lengths = last.num_frames(lengths)
        x = last.activate(x)
        for block in rest:
            x, lengths = block(x, lengths)
        return x, lengths

    def _fuses_first_two_blocks(self, x: Tensor) -> bool:
        """Whether the first two blocks run as one :func:`windowed_gelu_winograd_conv1d` on ``x``
        (fairseq's default layout on the CPU: a group-norm first layer, a Winograd second one,
        and no gradient wanted for the waveform)."""
        return (len(self.blocks) > 1 and isinstance(self.blocks[0].norm, MaskedGroupNorm)
                and self.blocks[1].uses_winograd(x.device) and not x.requires_grad)

    def num_frames(self, lengths: Tensor) -> Tensor:
        """``(B,)`` samples → ``(B,)`` valid frames."""
        for block in self.blocks:
            lengths = block.num_frames(lengths)
        return lengths

    def padded_samples(self, num_samples: int) -> int:
        """Samples to feed so that the last block gives every frame of ``num_samples`` and a
        block with group norm every step (its statistics see them all).

        Usually ``num_samples`` itself; else a few zeros more, whose steps reach no valid frame.
        """
        steps = [num_samples]
        for block in self.blocks:
            steps.append(int(block.num_frames(torch.tensor(steps[-1]))))
        needed = steps[-1]
        for block, conv_steps in zip(reversed(self.blocks), reversed(steps[1:])):
            if isinstance(block.norm, MaskedGroupNorm):
                needed = max(needed, conv_steps)
            needed = block.input_steps(needed)
        return max(needed, num_samples)

    def forward(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """inputs: ``(B, S)`` float, lengths ``(B,)`` samples → ``(B, T, C)``, ``(B,)`` frames.

        Padded output frames are zero.
        """
        if inputs.ndim != 2:
            raise ValueError(f"expected waveforms (B, S), got shape {tuple(inputs.shape)}")
        lengths = lengths.to(inputs.device)
        num_samples = inputs.shape[1]
        x = inputs.masked_fill(~valid_mask(lengths, num_samples), 0.0)
        x = nn.functional.pad(x, (0, self.padded_samples(num_samples) - num_samples))[..., None]
        x, lengths = self._run_blocks(x, lengths)
        x = x[:, : int(self.num_frames(torch.tensor(num_samples)))]
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
    sample_rate = SAMPLE_RATE
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
        x = utterance_cmvn(inputs, lengths, self.eps).transpose(1, 2)
        lengths = self.num_frames(lengths)
        for conv in self.convs:
            x = nn.functional.gelu(conv(x))
            x = x.masked_fill(~valid_mask(lengths, x.shape[-1])[:, None, :], 0.0)
        return x.transpose(1, 2), lengths


def utterance_cmvn(features: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """Each bin of ``(B, T, F)`` features at zero mean and unit variance over the item's ``lengths[b]``
    valid frames; padded frames zero."""
    valid = valid_mask(lengths.to(features.device), features.shape[1])[..., None]
    weights = valid.to(features.dtype)
    count = weights.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (features * weights).sum(dim=1, keepdim=True) / count
    var = ((features - mean).square() * weights).sum(dim=1, keepdim=True) / count
    return ((features - mean) * torch.rsqrt(var + eps)).masked_fill(~valid, 0.0)


class FbankFrames(nn.Module):
    """Kaldi fbank ``(B, T, F)`` at 100 frames/s, each bin normalised over the utterance
    (:func:`utterance_cmvn`), passed on frame by frame: TERA's input, no subsampling.

    Args:
        num_mel_bins: ``F``.
    """

    input_kind = "fbank"
    sample_rate = SAMPLE_RATE
    frame_rate_hz = 100

    def __init__(self, num_mel_bins: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_mel_bins = self.output_dim = num_mel_bins
        self.eps = eps

    def num_frames(self, lengths: Tensor) -> Tensor:
        return lengths

    def forward(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """inputs ``(B, T, F)``, lengths ``(B,)`` → normalised ``(B, T, F)`` (padding zero), ``(B,)``."""
        if inputs.ndim != 3 or inputs.shape[-1] != self.num_mel_bins:
            raise ValueError(f"expected fbank (B, T, {self.num_mel_bins}), got shape {tuple(inputs.shape)}")
        lengths = lengths.to(inputs.device)
        return utterance_cmvn(inputs, lengths, self.eps), lengths


class FbankPatches(nn.Module):
    """Kaldi fbank ``(B, T, F)`` at 100 frames/s → non-overlapping patches of ``patch_frequency`` bins ×
    ``patch_time`` frames (SSAST, SSAMBA), each bin first normalised over the utterance (:func:`utterance_cmvn`).

    Patches are ordered time-major: the ``rows = F / patch_frequency`` patches of the first time
    step (lowest bins first), then the next step's; each patch is its ``(patch_frequency,
    patch_time)`` values flattened. A trailing partial time step is dropped. SSAST's 16 × 16 patches
    give ``rows = 8`` tokens per 160 ms; its frame patches (``patch_frequency = F``, ``patch_time = 2``)
    one token per 20 ms.

    Args:
        num_mel_bins: ``F`` (the papers: 128).
        patch_frequency: bins per patch; divides ``F``.
        patch_time: fbank frames per patch (and per time step).
    """

    input_kind = "fbank"
    sample_rate = SAMPLE_RATE

    def __init__(self, num_mel_bins: int, patch_frequency: int, patch_time: int, eps: float = 1e-5) -> None:
        super().__init__()
        if num_mel_bins % patch_frequency:
            raise ValueError(f"patch_frequency {patch_frequency} does not divide num_mel_bins {num_mel_bins}")
        self.num_mel_bins, self.patch_frequency, self.patch_time = num_mel_bins, patch_frequency, patch_time
        self.rows = num_mel_bins // patch_frequency
        self.output_dim = patch_frequency * patch_time
        self.frame_rate_hz = 1000 / (10 * patch_time)
        self.eps = eps

    def num_frames(self, lengths: Tensor) -> Tensor:
        """``(B,)`` fbank frames → ``(B,)`` whole time steps of patches."""
        return torch.div(lengths, self.patch_time, rounding_mode="floor")

    def forward(self, inputs: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """inputs ``(B, T, F)``, lengths ``(B,)`` → patches ``(B, rows * (T // patch_time), output_dim)`` and
        ``(B,)`` valid patches (``rows`` per whole time step)."""
        if inputs.ndim != 3 or inputs.shape[-1] != self.num_mel_bins:
            raise ValueError(f"expected fbank (B, T, {self.num_mel_bins}), got shape {tuple(inputs.shape)}")
        batch, time, _ = inputs.shape
        steps = time // self.patch_time
        x = utterance_cmvn(inputs, lengths, self.eps)[:, :steps * self.patch_time]
        x = x.reshape(batch, steps, self.patch_time, self.rows, self.patch_frequency).permute(0, 1, 3, 4, 2)
        return x.reshape(batch, steps * self.rows, self.output_dim), self.num_frames(lengths.to(inputs.device)) * self.rows


class FeatureProjection(nn.Module):
    """LayerNorm → Linear → Dropout between a front end and the encoder.

    fairseq: ``layer_norm`` over the ``C`` front-end channels, ``post_extract_proj``
    (``C → encoder_embed_dim``) and ``dropout_input``. Without ``layer_norm`` it is SSAST's patch
    embedding (a linear map of each patch).
    """

    def __init__(self, in_dim: int, out_dim: int, dropout: float, layer_norm: bool = True) -> None:
        super().__init__()
        self.out_dim = out_dim
        self.layer_norm = nn.LayerNorm(in_dim) if layer_norm else nn.Identity()
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
    """Kaldi fbank (dither 0, the 16-bit sample scale Kaldi sees) of each valid waveform, zero-padded
    to the longest. Each item is computed alone, so its features do not depend on its batch.

    Args:
        wavs: ``(B, S)`` float waveforms at 16 kHz in [-1, 1].
        lengths: ``(B,)`` valid samples.

    Returns:
        ``(B, T, num_mel_bins)`` fbank and ``(B,)`` frames, ``T = 1 + (S - 400) // 160``.
    """
    extractor = _fbank_extractor(num_mel_bins)
    frames = fbank_num_frames(lengths.long())
    out = wavs.new_zeros(wavs.shape[0], int(frames.max()) if frames.numel() else 0, num_mel_bins)
    for i, (num_samples, num_frames) in enumerate(zip(lengths.tolist(), frames.tolist())):
        if num_frames:
            out[i, :num_frames] = extractor.compute(wavs[i, :num_samples].float() * 32768).to(out.dtype)
    return out, frames


_extractors = threading.local()


def _fbank_extractor(num_mel_bins: int) -> FeatureExtractor:
    """This thread's fbank extractor: an extractor's scratch buffers serve one computation at a time, so threads
    sharing one (a thread pool, a demo server) overwrote each other's spectra."""
    by_bins = _extractors.__dict__.setdefault("by_bins", {})
    if num_mel_bins not in by_bins:
        config = FeatureConfig.from_kaldi_args("fbank", [f"--num-mel-bins={num_mel_bins}"])
        by_bins[num_mel_bins] = FeatureExtractor(config)
    return by_bins[num_mel_bins]
