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

On long sequences a :class:`BiMambaLayer` runs as :class:`SegmentedLayer`: in segments, the
scans' states passed between them, recomputed in the backward pass, so that its activation
memory is one segment's, not the sequence's.
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


def sequential_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, initial_state: Tensor | None = None,
                    return_final_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """The reference: the recurrence above, one frame at a time.

    Args:
        x: ``(batch, T, H, P)`` inputs per head.
        dt: ``(batch, T, H)`` positive steps.
        A: ``(H,)`` negative decay rates.
        B, C: ``(batch, T, G, N)`` input and output projections, shared by ``H / G`` heads each.
        initial_state: ``(batch, H, P, N)``, the state before the first frame (zeros if None).
        return_final_state: also return the state after the last frame, ``(batch, H, P, N)``.

    Returns:
        ``(batch, T, H, P)``, and the final state if asked.
    """
    heads = x.shape[2]
    B, C = B.repeat_interleave(heads // B.shape[2], dim=2), C.repeat_interleave(heads // C.shape[2], dim=2)
    state = x.new_zeros(x.shape[0], heads, x.shape[3], B.shape[3]) if initial_state is None else initial_state
    outputs = []
    for t in range(x.shape[1]):
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        outputs.append((state @ C[:, t, :, :, None])[..., 0])
    y = torch.stack(outputs, dim=1)
    return (y, state) if return_final_state else y


def scan_chunks(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, chunk_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """The chunked scan's operands (shapes as :func:`sequential_scan`): T padded to whole chunks with
    zero steps (no input, no decay, and nothing flows backwards), heads as ``(G, R)`` (``R`` heads
    share a group's B) → inputs ``dt x`` ``(b, G, R, c, l, P)``, B ``(b, G, 1, c, l, N)`` and the
    log decay summed within each chunk up to each frame, ``(b, G, R, c, l)``."""
    batch, time, _, head_dim = x.shape
    groups, pad = B.shape[2], -time % chunk_size
    if pad:
        x, dt = nn.functional.pad(x, (0, 0, 0, 0, 0, pad)), nn.functional.pad(dt, (0, 0, 0, pad))
        B = nn.functional.pad(B, (0, 0, 0, 0, 0, pad))
    chunks = x.shape[1] // chunk_size
    inputs = (x * dt[..., None]).view(batch, chunks, chunk_size, groups, -1, head_dim).permute(0, 3, 4, 1, 2, 5)
    inputs = inputs.contiguous()  # once: both matrix products would copy the permuted layout each, and keep it
    B = B.view(batch, chunks, chunk_size, groups, 1, -1).permute(0, 3, 4, 1, 2, 5)
    cumulative = (dt * A).view(batch, chunks, chunk_size, groups, -1).permute(0, 3, 4, 1, 2).cumsum(-1)
    return inputs, B, cumulative


def carried_states(inputs: Tensor, B: Tensor, cumulative: Tensor,
                   initial_state: Tensor | None) -> tuple[Tensor, Tensor]:
    """From :func:`scan_chunks`' operands and the ``(batch, H, P, N)`` initial state (zeros if None):
    the state entering each chunk, ``(b, G, R, c, N, P)``, and the final state, ``(batch, H, P, N)``.
    Each is the end states of the chunks before, and the initial state standing as the end state of
    a chunk before the first, decayed over the chunks between (a ``(c + 1)``-square decay matrix)."""
    # each chunk's own contribution to the state at its end, (b, G, R, c, N, P); the decay to the
    # chunk's end weighs B, (l, N) per head, smaller than the inputs' (l, P)
    chunk_states = (B * torch.exp(cumulative[..., -1:] - cumulative)[..., None]).transpose(-1, -2) @ inputs
    if initial_state is None:
        states = nn.functional.pad(chunk_states, (0, 0, 0, 0, 1, 0))
    else:
        first = initial_state.view(*inputs.shape[:3], *initial_state.shape[-2:]).transpose(-1, -2)
        states = torch.cat([first[..., None, :, :], chunk_states], dim=-3)
    totals = nn.functional.pad(cumulative[..., -1], (1, 0))  # (b, G, R, c + 1)
    carry = torch.exp(segment_sums(totals))  # (b, G, R, c + 1, c + 1), [k, j] for j <= k
    entering = (carry @ states.flatten(-2)).view_as(states)
    # the final state in its own buffer: a view would keep all the chunks' states alive with it
    return entering[..., :-1, :, :], entering[..., -1, :, :].transpose(-1, -2).flatten(1, 2).contiguous()


def chunked_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int,
                 initial_state: Tensor | None = None, return_final_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`sequential_scan` in chunks of ``chunk_size`` frames, built from matrix products.

    Time and memory are linear in ``T``: the quadratic part is within a chunk, and across chunks
    :func:`carried_states` passes the state. Arguments and results as :func:`sequential_scan`.
    """
    batch, time, heads, head_dim = x.shape
    inputs, B, cumulative = scan_chunks(x, dt, A, B, chunk_size)
    C = nn.functional.pad(C, (0, 0, 0, 0, 0, -time % chunk_size))
    C = C.view(batch, -1, chunk_size, C.shape[2], 1, C.shape[3]).permute(0, 3, 4, 1, 2, 5)  # as B
    # within a chunk: y_i = sum_{j <= i} (C_i . B_j) exp(a_{j+1} + ... + a_i) dt_j x_j; a difference of
    # cumulative sums is precise enough over one chunk. C_i . B_j is computed once per group.
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=x.device).tril()
    # in place where autograd allows: each (chunk, chunk) buffer fewer is one less per frame to allocate
    decay = (cumulative[..., :, None] - cumulative[..., None, :]).masked_fill_(~causal, float("-inf")).exp_()
    y = ((C @ B.transpose(-1, -2)) * decay) @ inputs  # (b, G, R, c, l, P)
    entering, final_state = carried_states(inputs, B, cumulative, initial_state)
    y = y.add_((C * torch.exp(cumulative)[..., None]) @ entering)  # the decay on (l, N), not on (l, P)
    y = y.permute(0, 3, 4, 1, 2, 5).reshape(batch, -1, heads, head_dim)[:, :time]
    return (y, final_state) if return_final_state else y


def chunked_final_state(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, chunk_size: int,
                        initial_state: Tensor | None = None) -> Tensor:
    """The final state of :func:`chunked_scan`, ``(batch, H, P, N)``, without its outputs (nor their
    quadratic part)."""
    return carried_states(*scan_chunks(x, dt, A, B, chunk_size), initial_state)[1]


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


def fused_scan(x: Tensor) -> bool:
    """Whether scans of ``x`` run on mamba-ssm's fused CUDA kernel."""
    return mamba_chunk_scan_combined is not None and x.is_cuda


def selective_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
    """The scan on the fastest path here: mamba-ssm's fused kernel on CUDA where it imports,
    :class:`RecomputedChunkedScan` otherwise. Shapes as :func:`sequential_scan`."""
    if fused_scan(x):
        return mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size)
    return RecomputedChunkedScan.apply(x, dt, A, B, C, chunk_size)


class GatedRMSNorm(nn.Module):
    """Mamba-2's output norm: ``RMSNorm(y * silu(z))`` with a learned scale."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        """y, z ``(..., dim)`` → ``(..., dim)``, in the dtype ``y * z`` promotes to."""
        return GatedRMSNormFunction.apply(y, z, self.weight, self.eps)


class GatedRMSNormFunction(torch.autograd.Function):
    """:class:`GatedRMSNorm`'s ``y * silu(z) * rsqrt(mean((y * silu(z))^2) + eps) * weight`` keeping
    only y, z and the inverse RMS for the backward pass, which recomputes the gate: two buffers of
    y's size in the forward pass instead of five, none kept."""

    @staticmethod
    def forward(ctx, y: Tensor, z: Tensor, weight: Tensor, eps: float) -> Tensor:
        gated = y * nn.functional.silu(z)
        inverse_rms = torch.rsqrt(torch.linalg.vector_norm(gated, dim=-1, keepdim=True).square() / y.shape[-1] + eps)
        ctx.save_for_backward(y, z, weight, inverse_rms)
        return gated.mul_(inverse_rms).mul_(weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        y, z, weight, inverse_rms = ctx.saved_tensors
        sigmoid = torch.sigmoid(z)
        gate = z * sigmoid
        normed = (y * gate).mul_(inverse_rms)
        grad_weight = (grad * normed).flatten(0, -2).sum(0)
        # through the RMS: d/d gated = r (g - n mean(g n)), r the inverse RMS, n the normed, g its gradient
        grad_normed = grad * weight
        projection = (grad_normed * normed).mean(-1, keepdim=True)
        grad_gated = grad_normed.sub_(normed.mul_(projection)).mul_(inverse_rms)
        grad_y = grad_gated * gate
        grad_z = grad_gated.mul_(y).mul_(sigmoid.mul_(1 + z * (1 - sigmoid)))  # silu' = s (1 + z (1 - s))
        return grad_y.to(y.dtype), grad_z.to(z.dtype), grad_weight.to(weight.dtype), None


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
        """``(batch, K - 1 + T, channels)``, ``K - 1`` frames of context then the frames → ``(batch, T,
        channels)``; frame ``t`` sees frames ``t - K + 1 .. t``."""
        kernel = self.conv_weight.shape[1]
        time = xbc.shape[1] - kernel + 1
        out = torch.addcmul(self.conv_bias, xbc[:, kernel - 1:], self.conv_weight[:, -1])
        for k in range(kernel - 1):
            out = out.addcmul_(xbc[:, k:k + time], self.conv_weight[:, k])  # in place: one buffer for the sum
        return out

    def scan_inputs(self, xbc: Tensor, dt: Tensor, padding_mask: Tensor) -> tuple[Tensor, ...]:
        """xbc ``(batch, K - 1 + T, inner_dim + 2 G N)``: ``K - 1`` frames of convolution context, then
        the frames, zero where padded; dt ``(batch, T, H)`` before its bias; padding_mask ``(batch, T)``
        → the scan's x, dt, A, B, C (shapes as :func:`sequential_scan`). Padded frames take no step
        (``dt = 0``), so with their zeros they change nothing wherever they stand, even before the
        valid frames."""
        batch, time = dt.shape[:2]
        xbc = nn.functional.silu(self.causal_conv(xbc))
        x, B, C = xbc.split([self.inner_dim, self.num_groups * self.state_dim, self.num_groups * self.state_dim], -1)
        x = x.reshape(batch, time, self.num_heads, -1)
        B, C = B.reshape(batch, time, self.num_groups, -1), C.reshape(batch, time, self.num_groups, -1)
        dt = nn.functional.softplus(dt + self.dt_bias).masked_fill(padding_mask[..., None], 0.0)
        scan = torch.promote_types(x.dtype, torch.float32)  # a half model's scan in float32, as mamba-ssm's
        return x.to(scan), dt.to(scan), -torch.exp(self.A_log.to(scan)), B.to(scan), C.to(scan)

    def forward(self, xbc: Tensor, dt: Tensor, padding_mask: Tensor,
                state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Inputs as :meth:`scan_inputs`. Without ``state`` (a whole sequence): the scan on
        :func:`selective_scan`'s path → ``(batch, T, inner_dim)`` and None. With the ``(batch, H, P,
        N)`` state entering a segment: :func:`chunked_scan` from it → the output and the state leaving
        the segment."""
        x, dt, A, B, C = self.scan_inputs(xbc, dt, padding_mask)
        if state is None:
            y = selective_scan(x, dt, A, B, C, self.chunk_size)
        else:
            y, state = chunked_scan(x, dt, A, B, C, self.chunk_size, state, return_final_state=True)
        return torch.addcmul(y, x, self.D[:, None]).flatten(2).to(self.D.dtype), state

    def final_state(self, xbc: Tensor, dt: Tensor, padding_mask: Tensor, state: Tensor) -> Tensor:
        """The state leaving a segment that ``state`` enters, without the outputs; inputs as :meth:`forward`."""
        x, dt, A, B, _ = self.scan_inputs(xbc, dt, padding_mask)
        return chunked_final_state(x, dt, A, B, self.chunk_size, state)


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
        self.context = conv_kernel - 1  # frames of convolution context, each direction
        self.sizes = [inner, inner + 2 * num_groups * state_dim, heads]  # z, xBC, dt
        self.in_proj = nn.Linear(dim, sum(self.sizes), bias=False)
        self.forward_scan = SelectiveScanDirection(inner, state_dim, heads, num_groups, conv_kernel, chunk_size)
        self.backward_scan = SelectiveScanDirection(inner, state_dim, heads, num_groups, conv_kernel, chunk_size)
        self.norm = GatedRMSNorm(inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def project(self, x: Tensor, padding_mask: Tensor, before: int, after: int,
                gate: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
        """x ``(batch, L, D)``, padding_mask ``(batch, L)`` → z ``(batch, L, inner_dim)`` (None without
        ``gate``, then left out of the projection), xbc ``(batch, before + L + after, ·)`` (zero at padded
        frames and at the ``before`` and ``after`` frames added: convolution context beyond the
        sequence) and dt ``(batch, L, H)``."""
        # z apart: its own buffer, which the norm keeps for the backward pass, and left out without the gate
        weight = self.in_proj.weight
        z = nn.functional.linear(x, weight[:self.sizes[0]]) if gate else None
        xbc, dt = nn.functional.linear(x, weight[self.sizes[0]:]).split(self.sizes[1:], dim=-1)
        mask = nn.functional.pad(padding_mask, (before, after))[..., None]
        return z, nn.functional.pad(xbc, (0, 0, before, after)).masked_fill_(mask, 0.0), dt

    def oriented(self, backward: bool, xbc: Tensor, dt: Tensor,
                 padding_mask: Tensor) -> tuple[SelectiveScanDirection, Tensor, Tensor, Tensor]:
        """One direction and its inputs in its own time (the backward one's reversed): xbc ``(batch,
        K - 1 + T + K - 1, ·)`` holds the convolution context of both, the backward direction's on the
        right; dt, padding_mask ``(batch, T, ·)``."""
        if not backward:
            return self.forward_scan, xbc[:, :xbc.shape[1] - self.context], dt, padding_mask
        return self.backward_scan, xbc[:, self.context:].flip(1), dt.flip(1), padding_mask.flip(1)

    def scan(self, backward: bool, xbc: Tensor, dt: Tensor, padding_mask: Tensor,
             state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """One direction over ``T`` frames (inputs as :meth:`oriented`), as
        :meth:`SelectiveScanDirection.forward`; the output in forward time."""
        direction, *inputs = self.oriented(backward, xbc, dt, padding_mask)
        y, state = direction(*inputs, state)
        return (y.flip(1) if backward else y), state

    def final_state(self, backward: bool, xbc: Tensor, dt: Tensor, padding_mask: Tensor, state: Tensor) -> Tensor:
        """One direction's :meth:`SelectiveScanDirection.final_state` (inputs as :meth:`oriented`)."""
        direction, *inputs = self.oriented(backward, xbc, dt, padding_mask)
        return direction.final_state(*inputs, state)

    def output(self, ahead: Tensor, behind: Tensor, z: Tensor) -> Tensor:
        """The directions' outputs and the gate, ``(batch, T, inner_dim)`` → ``(batch, T, D)``."""
        return self.out_proj(self.norm((ahead + behind).mul_(0.5), z))

    def forward(self, x: Tensor, padding_mask: Tensor) -> Tensor:
        """x ``(batch, T, D)``, padding_mask ``(batch, T)`` → ``(batch, T, D)``."""
        z, xbc, dt = self.project(x, padding_mask, self.context, self.context)
        ahead, _ = self.scan(False, xbc, dt, padding_mask)
        behind, _ = self.scan(True, xbc, dt, padding_mask)
        return self.output(ahead, behind, z)


class BiMambaLayer(nn.Module):
    """Pre-norm residual around a :class:`BiMambaBlock`: ``x + Dropout(block(LN(x)))``.

    Sequences longer than ``segment_above`` frames (and than a segment) run ``block(LN(x))``
    through :class:`SegmentedLayer` in segments of ``segment_frames`` (0: never), where the chunked
    scan runs (not on mamba-ssm's CUDA kernel): activation memory of one segment, not of the whole
    sequence, for more time.
    """

    def __init__(self, block: BiMambaBlock, dropout: float, segment_frames: int = 0, segment_above: int = 0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(block.dim)
        self.block = block
        self.dropout = nn.Dropout(dropout)
        self.segment_frames, self.segment_above = segment_frames, segment_above

    def forward(self, x: Tensor, padding_mask: Tensor) -> Tensor:
        if self.segment_frames and x.shape[1] > max(self.segment_above, self.segment_frames) and not fused_scan(x):
            mixed = SegmentedLayer.apply(x, padding_mask, self, *self.parameters())
        else:
            mixed = self.block(self.norm(x), padding_mask)
        return x + self.dropout(mixed)  # dropout outside SegmentedLayer: its recomputation draws no mask

    def segment_window(self, start: int, stop: int, time: int) -> tuple[int, int]:
        """``[lo, hi)``: frames ``[start, stop)`` of ``time`` and the convolutions' context around them."""
        return max(start - self.block.context, 0), min(stop + self.block.context, time)

    def segment_inputs(self, window: Tensor, padding_mask: Tensor, start: int, stop: int,
                       gate: bool = True) -> tuple[Tensor | None, Tensor, Tensor]:
        """The block's inputs for frames ``[start, stop)``: window ``(batch, hi - lo, D)``, the layer
        input at :meth:`segment_window`; padding_mask ``(batch, T)`` → z, xbc, dt as
        :meth:`BiMambaBlock.project` gives them, for the segment with the sequence's context around it."""
        context = self.block.context
        lo, hi = self.segment_window(start, stop, padding_mask.shape[1])
        z, xbc, dt = self.block.project(self.norm(window), padding_mask[:, lo:hi], lo - start + context,
                                        stop + context - hi, gate)
        return None if z is None else z[:, start - lo:stop - lo], xbc, dt[:, start - lo:stop - lo]


class SegmentedLayer(torch.autograd.Function):
    """``block(norm(x))`` of a :class:`BiMambaLayer` over segments of ``segment_frames`` frames, keeping
    for the backward pass only x, the padding mask and each direction's scan state entering each
    segment (``(batch, H, P, N)``), and recomputing one segment at a time there; exact gradients.

    Only the scans carry state across time (the forward direction's left to right, the backward's
    right to left) and the convolutions look ``K - 1`` frames back in their direction; the rest is
    per frame. The forward pass runs the forward direction's states left to right (without
    outputs), then the outputs right to left. The backward pass recomputes each segment right to
    left with gradients, passing the gradient of the forward direction's state leftwards. The
    backward direction's state gradient flows the other way: that sweep leaves out the part coming
    from the left, and as gradients are linear in it, a second sweep, left to right, adds it
    through that direction's state alone (no outputs, no norm). The backward pass runs under the
    forward pass's autocast state.
    """

    @staticmethod
    def forward(ctx, x: Tensor, padding_mask: Tensor, layer: BiMambaLayer, *params: Tensor) -> Tensor:
        block, time = layer.block, x.shape[1]
        bounds = [(start, min(start + layer.segment_frames, time)) for start in range(0, time, layer.segment_frames)]
        scan = block.forward_scan
        zero = x.new_zeros(x.shape[0], scan.num_heads, scan.inner_dim // scan.num_heads, scan.state_dim)
        ctx.autocast = x.device.type, torch.get_autocast_dtype(x.device.type), torch.is_autocast_enabled(x.device.type)
        with uncached_autocast(*ctx.autocast):
            ahead = [zero]  # the forward direction's state entering each segment, from the left
            for start, stop in bounds[:-1]:
                lo, hi = layer.segment_window(start, stop, time)
                _, xbc, dt = layer.segment_inputs(x[:, lo:hi], padding_mask, start, stop, gate=False)
                ahead.append(block.final_state(False, xbc, dt, padding_mask[:, start:stop], ahead[-1]))
            behind = [zero] * len(bounds)  # the backward direction's state entering each segment, from the right
            out = None
            for i in reversed(range(len(bounds))):
                start, stop = bounds[i]
                lo, hi = layer.segment_window(start, stop, time)
                z, xbc, dt = layer.segment_inputs(x[:, lo:hi], padding_mask, start, stop)
                forward_y, _ = block.scan(False, xbc, dt, padding_mask[:, start:stop], ahead[i])
                backward_y, leaving = block.scan(True, xbc, dt, padding_mask[:, start:stop], behind[i])
                if i:
                    behind[i - 1] = leaving
                y = block.output(forward_y, backward_y, z)
                if out is None:
                    out = y.new_empty(*x.shape[:2], y.shape[-1])
                out[:, start:stop] = y
        ctx.save_for_backward(x, padding_mask, *ahead, *behind)
        ctx.layer, ctx.bounds = layer, bounds
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, padding_mask, *states = ctx.saved_tensors
        layer, bounds = ctx.layer, ctx.bounds
        block, ahead, behind, time = layer.block, states[:len(bounds)], states[len(bounds):], x.shape[1]
        params = list(layer.parameters())
        needed = [i for i, wanted in enumerate(ctx.needs_input_grad[3:]) if wanted]
        sums: list[Tensor | None] = [None] * len(params)
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None

        def window(start: int, stop: int) -> tuple[int, Tensor]:
            """``lo`` and a leaf of x's frames from ``lo``, the segment's :meth:`BiMambaLayer.segment_window`."""
            lo, hi = layer.segment_window(start, stop, time)
            return lo, x[:, lo:hi].detach().requires_grad_(grad_x is not None)

        def differentiate(outputs: list[Tensor], grads: list[Tensor], lo: int, frames: Tensor,
                          entering: list[Tensor]) -> tuple[Tensor, ...]:
            """Adds the gradients of the parameters and of x's ``frames`` (from ``lo``); returns those
            of the entering states."""
            inputs = [*entering, *(params[j] for j in needed)] + ([frames] if grad_x is not None else [])
            got = torch.autograd.grad(outputs, inputs, grads, allow_unused=True)
            for j, g in zip(needed, got[len(entering):]):
                if g is not None:
                    sums[j] = g if sums[j] is None else sums[j] + g
            if grad_x is not None:
                grad_x[:, lo:lo + frames.shape[1]] += got[-1]
            return got[:len(entering)]

        with torch.enable_grad(), uncached_autocast(*ctx.autocast):
            ahead_grad = None  # of the forward direction's state leaving the segment (entering the next)
            behind_grads = [None] * len(bounds)  # of the backward direction's entering state, via outputs
            for i in reversed(range(len(bounds))):
                start, stop = bounds[i]
                lo, frames = window(start, stop)
                z, xbc, dt = layer.segment_inputs(frames, padding_mask, start, stop)
                entering = [ahead[i].detach().requires_grad_(), behind[i].detach().requires_grad_()]
                forward_y, leaving = block.scan(False, xbc, dt, padding_mask[:, start:stop], entering[0])
                backward_y, _ = block.scan(True, xbc, dt, padding_mask[:, start:stop], entering[1])
                outputs, grads = [block.output(forward_y, backward_y, z)], [grad[:, start:stop]]
                if ahead_grad is not None:
                    outputs.append(leaving)
                    grads.append(ahead_grad)
                ahead_grad, behind_grads[i] = differentiate(outputs, grads, lo, frames, entering)
            behind_grad = None  # of the backward direction's state leaving the segment (entering the previous)
            for i in range(len(bounds)):
                start, stop = bounds[i]
                if behind_grad is not None:
                    lo, frames = window(start, stop)
                    _, xbc, dt = layer.segment_inputs(frames, padding_mask, start, stop, gate=False)
                    entering = [behind[i].detach().requires_grad_()]
                    leaving = block.final_state(True, xbc, dt, padding_mask[:, start:stop], entering[0])
                    behind_grads[i] = behind_grads[i] + differentiate([leaving], [behind_grad], lo, frames, entering)[0]
                behind_grad = behind_grads[i]
        return (grad_x, None, None, *sums)


def uncached_autocast(device: str, dtype: torch.dtype, enabled: bool) -> torch.autocast:
    """Autocast as given, without its cache of cast weights: a weight cast without gradients (the
    forward pass) must not stand in for one cast with them (the backward pass), even when both run
    inside one outer autocast region."""
    return torch.autocast(device, dtype, enabled, cache_enabled=False)


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
