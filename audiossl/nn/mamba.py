"""Selective state-space layers (Mamba-2) and a bidirectional Mamba encoder, fast on a CPU.

The scan is Mamba-2's state-space duality (SSD, Dao & Gu 2024): per head ``h`` a scalar decay
``A_h < 0``, an input-dependent step ``dt_t > 0`` and input-dependent ``B_t``, ``C_t``::

    state_t = exp(dt_t A_h) state_{t-1} + dt_t x_t B_t^T        (P x N per head)
    y_t     = state_t C_t

:func:`chunked_scan` computes it in chunks of ``chunk_size`` frames with matrix products only
(within a chunk the quadratic "attention" form, across chunks a recurrence over chunk states),
linear in sequence length; :func:`sequential_scan` is the loop over time it must equal. On CUDA
with ``mamba-ssm`` installed, :func:`selective_scan` uses its fused kernel
(``mamba_chunk_scan_combined``) instead. Padding masks are ``(B, T)`` bool, True at padded
frames; every item's valid frames come first.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from audiossl.nn.transformer import draw_layer_drop

try:  # the fused CUDA kernel; mamba-ssm does not import without CUDA and Triton
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
except Exception:  # noqa: BLE001 - any import failure means "not available here"
    mamba_chunk_scan_combined = None


def segment_sums(a: Tensor) -> Tensor:
    """``(..., L)`` → ``(..., L, L)``: entry ``[i, j]`` is ``a[j + 1] + ... + a[i]`` for ``j <= i``
    (0 on the diagonal), ``-inf`` above it. Summed directly, not as a difference of cumulative
    sums, so decays across hundreds of chunks keep their precision."""
    length = a.shape[-1]
    lower = torch.ones(length, length, dtype=torch.bool, device=a.device).tril()  # [i, j]: i >= j
    terms = a[..., :, None].expand(*a.shape, length).masked_fill(~lower.tril(-1), 0.0)  # [k, j] = a[k] for k > j
    return terms.cumsum(-2).masked_fill(~lower, float("-inf"))


def sequential_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """The reference: the recurrence above, one frame at a time.

    Args:
        x: ``(batch, T, H, P)`` inputs per head.
        dt: ``(batch, T, H)`` positive steps.
        A: ``(H,)`` negative decay rates.
        B, C: ``(batch, T, G, N)`` input and output projections, shared by ``H / G`` heads each.

    Returns:
        ``(batch, T, H, P)``.
    """
    heads = x.shape[2]
    B, C = B.repeat_interleave(heads // B.shape[2], dim=2), C.repeat_interleave(heads // C.shape[2], dim=2)
    state = x.new_zeros(x.shape[0], heads, x.shape[3], B.shape[3])
    outputs = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        outputs.append((state @ C[:, t, :, :, None])[..., 0])
    return torch.stack(outputs, dim=1)


def chunked_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
    """:func:`sequential_scan` in chunks of ``chunk_size`` frames, built from matrix products.

    Time and memory are linear in ``T`` (the quadratic part is within a chunk); the recurrence
    across chunks is a ``(chunks + 1)``-square decay matrix applied to the chunk-end states.
    Shapes as :func:`sequential_scan`.
    """
    batch, time, heads, head_dim = x.shape
    groups = B.shape[2]
    pad = -time % chunk_size  # zero steps at the end: no input, no decay, and nothing flows backwards
    if pad:
        x, dt = nn.functional.pad(x, (0, 0, 0, 0, 0, pad)), nn.functional.pad(dt, (0, 0, 0, pad))
        B, C = nn.functional.pad(B, (0, 0, 0, 0, 0, pad)), nn.functional.pad(C, (0, 0, 0, 0, 0, pad))
    chunks = x.shape[1] // chunk_size
    # heads as (G, R): R heads share a group's B and C; layout (b, G, R, c, l, ...), B and C (b, G, 1, c, l, N)
    inputs = (x * dt[..., None]).view(batch, chunks, chunk_size, groups, -1, head_dim).permute(0, 3, 4, 1, 2, 5)
    B, C = (t.view(batch, chunks, chunk_size, groups, 1, -1).permute(0, 3, 4, 1, 2, 5) for t in (B, C))
    cumulative = (dt * A).view(batch, chunks, chunk_size, groups, -1).permute(0, 3, 4, 1, 2).cumsum(-1)
    # within a chunk: y_i = sum_{j <= i} (C_i . B_j) exp(a_{j+1} + ... + a_i) dt_j x_j; a difference of
    # cumulative sums is precise enough over one chunk. C_i . B_j is computed once per group.
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=x.device).tril()
    decay = torch.exp((cumulative[..., :, None] - cumulative[..., None, :]).masked_fill(~causal, float("-inf")))
    y = ((C @ B.transpose(-1, -2)) * decay) @ inputs  # (b, G, R, c, l, P)
    # each chunk's own contribution to the state at its end: (b, G, R, c, N, P)
    chunk_states = B.transpose(-1, -2) @ (inputs * torch.exp(cumulative[..., -1:] - cumulative)[..., None])
    # the state entering chunk k: chunk-end states of chunks j < k, decayed over chunks j+1..k-1
    totals = nn.functional.pad(cumulative[..., -1], (1, 0))  # (b, G, R, c + 1)
    carry = torch.exp(segment_sums(totals))[..., :-1, :-1]  # (b, G, R, c, c), [k, j] for j < k
    states = nn.functional.pad(chunk_states, (0, 0, 0, 0, 1, 0))[..., :-1, :, :]  # state j-1 at index j
    entering = (carry @ states.flatten(-2)).view_as(states)
    y = y + (C @ entering) * torch.exp(cumulative)[..., None]
    return y.permute(0, 3, 4, 1, 2, 5).reshape(batch, chunks * chunk_size, heads, head_dim)[:, :time]


class RecomputedChunkedScan(torch.autograd.Function):
    """:func:`chunked_scan` that keeps only its inputs for the backward pass and recomputes the
    rest there: the ``(chunk, chunk)`` intermediates are half a layer's activation memory, their
    recomputation about a tenth of its time. (``torch.utils.checkpoint`` does the same but imports
    the compiler stack, 110 MB, on first use.)"""

    @staticmethod
    def forward(ctx, x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
        ctx.save_for_backward(x, dt, A, B, C)
        ctx.chunk_size = chunk_size
        return chunked_scan(x, dt, A, B, C, chunk_size)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        inputs = [t.detach().requires_grad_() for t in ctx.saved_tensors]
        with torch.enable_grad():
            out = chunked_scan(*inputs, ctx.chunk_size)
        return (*torch.autograd.grad(out, inputs, grad), None)


def selective_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
    """The scan on the fastest path here: mamba-ssm's fused kernel on CUDA where it imports,
    :class:`RecomputedChunkedScan` otherwise. Shapes as :func:`sequential_scan`."""
    if mamba_chunk_scan_combined is not None and x.is_cuda:
        return mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size)
    return RecomputedChunkedScan.apply(x, dt, A, B, C, chunk_size)


class GatedRMSNorm(nn.Module):
    """Mamba-2's output norm: ``RMSNorm(y * silu(z))`` with a learned scale."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        y = y * nn.functional.silu(z)
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SelectiveScanDirection(nn.Module):
    """One direction of a Mamba-2 mixer: depthwise causal convolution and SiLU over ``(x, B, C)``,
    then the selective scan with a skip ``D x``.

    The convolution is a sum of ``conv_kernel`` shifted products in the ``(batch, T, channels)``
    layout (mamba-ssm's ``conv1d``, a depthwise ``Conv1d`` with ``conv_kernel - 1`` frames of
    left padding; weights ``(channels, conv_kernel)``), several times faster on a CPU than a
    grouped ``Conv1d`` with its transposes.

    Args:
        inner_dim: ``expand * dim`` (mamba-ssm ``d_inner``).
        state_dim: ``N`` (mamba-ssm ``d_state``).
        num_heads: ``inner_dim / head_dim`` (mamba-ssm ``nheads``).
        num_groups: heads sharing one ``B``, ``C`` (mamba-ssm ``ngroups``).
        conv_kernel: causal convolution width (mamba-ssm ``d_conv``).
        chunk_size: the scan's chunk (mamba-ssm ``chunk_size``).
    """

    def __init__(self, inner_dim: int, state_dim: int, num_heads: int, num_groups: int, conv_kernel: int,
                 chunk_size: int, dt_min: float = 0.001, dt_max: float = 0.1) -> None:
        super().__init__()
        self.inner_dim, self.state_dim, self.num_heads, self.num_groups = inner_dim, state_dim, num_heads, num_groups
        self.chunk_size = chunk_size
        channels = inner_dim + 2 * num_groups * state_dim
        bound = 1.0 / math.sqrt(conv_kernel)  # Conv1d's default initialisation for a depthwise kernel
        self.conv_weight = nn.Parameter(torch.empty(channels, conv_kernel).uniform_(-bound, bound))
        self.conv_bias = nn.Parameter(torch.empty(channels).uniform_(-bound, bound))
        # mamba-ssm's initialisation: softplus(dt_bias) log-uniform in [dt_min, dt_max], A uniform in [1, 16]
        dt = torch.exp(torch.rand(num_heads) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(num_heads).uniform_(1.0, 16.0)))
        self.D = nn.Parameter(torch.ones(num_heads))

    def causal_conv(self, xbc: Tensor) -> Tensor:
        """``(batch, T, channels)`` → the same shape; frame ``t`` sees frames ``t - K + 1 .. t``."""
        kernel, time = self.conv_weight.shape[1], xbc.shape[1]
        padded = nn.functional.pad(xbc, (0, 0, kernel - 1, 0))
        out = self.conv_bias + padded[:, kernel - 1:] * self.conv_weight[:, -1]
        for k in range(kernel - 1):
            out = out + padded[:, k:k + time] * self.conv_weight[:, k]
        return out

    def forward(self, xbc: Tensor, dt: Tensor, padding_mask: Tensor) -> Tensor:
        """xbc ``(batch, T, inner_dim + 2 G N)``, dt ``(batch, T, H)`` before its bias, padding_mask
        ``(batch, T)`` → ``(batch, T, inner_dim)``. Padded frames hold zeros for the convolution and
        take no step (``dt = 0``), so they change nothing wherever they stand, even before the valid frames."""
        batch, time, _ = xbc.shape
        xbc = nn.functional.silu(self.causal_conv(xbc.masked_fill(padding_mask[..., None], 0.0)))
        x, B, C = xbc.split([self.inner_dim, self.num_groups * self.state_dim, self.num_groups * self.state_dim], -1)
        x = x.reshape(batch, time, self.num_heads, -1)
        B, C = B.reshape(batch, time, self.num_groups, -1), C.reshape(batch, time, self.num_groups, -1)
        dt = nn.functional.softplus(dt + self.dt_bias).masked_fill(padding_mask[..., None], 0.0)
        A = -torch.exp(self.A_log.float())
        y = selective_scan(x, dt, A, B, C, self.chunk_size) + self.D[:, None] * x
        return y.reshape(batch, time, self.inner_dim)


class BiMambaBlock(nn.Module):
    """A bidirectional Mamba-2 mixer (Vision Mamba / SSAMBA style): one input projection to
    ``(z, xBC, dt)``, a forward and a backward :class:`SelectiveScanDirection` (the backward one
    over the time-reversed sequence, where an item's padding comes first and is skipped), their
    mean gated by ``z`` and normalised, one output projection.

    Args:
        dim: model dimension ``D`` (mamba-ssm ``d_model``).
        state_dim, num_groups, conv_kernel, chunk_size: as :class:`SelectiveScanDirection`.
        expand: ``inner_dim = expand * dim``.
        head_dim: ``P`` (mamba-ssm ``headdim``); ``inner_dim`` must be a multiple of it.
    """

    def __init__(self, dim: int, state_dim: int, expand: int, head_dim: int, conv_kernel: int, chunk_size: int,
                 num_groups: int = 1) -> None:
        super().__init__()
        inner = expand * dim
        if inner % head_dim:
            raise ValueError(f"expand * dim = {inner} is not a multiple of head_dim {head_dim}")
        self.dim, heads = dim, inner // head_dim
        self.sizes = [inner, inner + 2 * num_groups * state_dim, heads]  # z, xBC, dt
        self.in_proj = nn.Linear(dim, sum(self.sizes), bias=False)
        self.forward_scan = SelectiveScanDirection(inner, state_dim, heads, num_groups, conv_kernel, chunk_size)
        self.backward_scan = SelectiveScanDirection(inner, state_dim, heads, num_groups, conv_kernel, chunk_size)
        self.norm = GatedRMSNorm(inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor, padding_mask: Tensor) -> Tensor:
        """x ``(batch, T, D)``, padding_mask ``(batch, T)`` → ``(batch, T, D)``."""
        z, xbc, dt = self.in_proj(x).split(self.sizes, dim=-1)
        ahead = self.forward_scan(xbc, dt, padding_mask)
        behind = self.backward_scan(xbc.flip(1), dt.flip(1), padding_mask.flip(1)).flip(1)
        return self.out_proj(self.norm((ahead + behind) / 2, z))


class BiMambaLayer(nn.Module):
    """Pre-norm residual around a :class:`BiMambaBlock`: ``x + Dropout(block(LN(x)))``."""

    def __init__(self, block: BiMambaBlock, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(block.dim)
        self.block = block
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, padding_mask: Tensor) -> Tensor:
        return x + self.dropout(self.block(self.norm(x), padding_mask))


class BiMambaEncoder(nn.Module):
    """A stack of :class:`BiMambaLayer`; returns every hidden state, as
    :class:`~audiossl.nn.transformer.TransformerEncoder` does (no positional embedding: the scans
    are ordered).

    Args:
        layers: the layer stack.
        layer_norm: applied to the last layer's output (pre-norm stacks end with one).
        dropout: on the encoder input.
        layer_drop: each layer skipped with this probability, in training with a generator only.
    """

    def __init__(self, layers: Sequence[BiMambaLayer], layer_norm: nn.Module, dropout: float,
                 layer_drop: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.layer_norm = layer_norm
        self.dropout = nn.Dropout(dropout)
        self.layer_drop = layer_drop

    def forward(self, x: Tensor, padding_mask: Tensor, generator: torch.Generator | None = None,
                num_layers: int | None = None) -> list[Tensor]:
        """x ``(B, T, D)``, padding_mask ``(B, T)`` → ``num_layers + 1`` states ``(B, T, D)``: the
        (dropped-out) input, then each layer's output, the last one layer-normed when every layer runs."""
        x = self.dropout(x.masked_fill(padding_mask[..., None], 0.0))
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        hidden_states = [x]
        for layer, skip in zip(layers, draw_layer_drop(len(self.layers), self.layer_drop, self.training, generator)):
            if not skip:
                x = layer(x, padding_mask)
            hidden_states.append(x)
        if len(layers) == len(self.layers):
            hidden_states[-1] = self.layer_norm(x)
        return hidden_states
