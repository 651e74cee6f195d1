"""Convolutions as the products a CPU runs fastest, each with its own backward.

PyTorch's CPU kernels for these shapes spend far more time in the backward than in the
forward (``bench/conv.py``); these functions give the values and first-order gradients of
``nn.functional.conv1d`` (the strided ones its steps that whole blocks cover) with fewer or
faster products, and sum weight gradients over the batch in fp32 under autocast:

- :func:`blockwise_conv1d`: a strided conv over channels-last input as matrix products over
  block views, no unfolded copy;
- :func:`winograd_stride2_conv1d`: the kernel-3 stride-2 conv of the wav2vec 2.0 CNN with a
  sixth fewer products (Winograd's minimal filtering);
- :func:`windowed_gelu_winograd_conv1d`: that CNN's first two layers, the first made chunk by
  chunk and never stored;
- :func:`wide_grouped_conv1d`: a grouped stride-1 conv with a wide kernel (the convolutional
  positional embedding) whose two backward products are forward convolutions.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class _BlockwiseConv1d(torch.autograd.Function):
    """Forward and backward of :func:`blockwise_conv1d`: one BLAS call per (item, block)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
        blocks, matrices, frames = _blocks_and_matrices(x, weight, stride)
        out = x.new_empty(x.shape[0], frames, weight.shape[0])
        for b in range(x.shape[0]):
            for j, matrix in enumerate(matrices):
                block = blocks[b, j : j + frames, : matrix.shape[1]]
                if j > 0:
                    out[b].addmm_(block, matrix.t())
                elif bias is not None:
                    torch.addmm(bias, block, matrix.t(), out=out[b])
                else:
                    torch.mm(block, matrix.t(), out=out[b])
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.has_bias = stride, bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, weight = ctx.saved_tensors
        stride, batch, channels = ctx.stride, x.shape[0], x.shape[2]
        blocks, matrices, frames = _blocks_and_matrices(x, weight, stride)
        grad_out = grad_out.contiguous()
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty_like(x)
            first_is_whole = matrices[0].shape[1] == blocks.shape[2]  # the first product covers whole blocks
            if first_is_whole:
                grad_x[:, frames * stride :].zero_()
            else:
                grad_x.zero_()
            grad_blocks = grad_x[:, : blocks.shape[1] * stride].reshape(blocks.shape)
            for b in range(batch):
                for j, matrix in enumerate(matrices):
                    if j == 0 and first_is_whole:
                        torch.mm(grad_out[b], matrix, out=grad_blocks[b, :frames])
                    else:
                        grad_blocks[b, j : j + frames, : matrix.shape[1]].addmm_(grad_out[b], matrix)
        if ctx.needs_input_grad[1]:
            pieces = []
            for j, matrix in enumerate(matrices):
                grad_matrix = _gradient_sum(matrix)
                for b in range(batch):
                    _add_product(grad_matrix, grad_out[b].t(), blocks[b, j : j + frames, : matrix.shape[1]])
                pieces.append(grad_matrix.reshape(weight.shape[0], -1, channels).transpose(1, 2))
            grad_weight = torch.cat(pieces, dim=-1)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(dim=(0, 1))
        return grad_x, grad_weight, grad_bias, None


def _blocks_and_matrices(x: Tensor, weight: Tensor, stride: int) -> tuple[Tensor, list[Tensor], int]:
    """The ``(B, T // stride, stride * C_in)`` block view of ``x``, the ``J`` weight matrices
    ``(C_out, taps * C_in)`` (tap-major, as the blocks) and the output steps."""
    batch, time, channels = x.shape
    num_blocks = time // stride
    matrices = [tap.transpose(1, 2).reshape(weight.shape[0], -1) for tap in weight.split(stride, dim=-1)]
    blocks = x[:, : num_blocks * stride].reshape(batch, num_blocks, stride * channels)
    return blocks, matrices, max(num_blocks - len(matrices) + 1, 0)


def blockwise_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, stride: int) -> Tensor:
    """A strided Conv1d (no padding) over channels-last ``x (B, T, C_in)`` as matrix products.

    The time axis is cut into blocks of ``stride`` steps, a free view ``(B, T // stride,
    stride * C_in)``. Output step ``t`` reads blocks ``t .. t + J - 1`` (``J = ceil(K / stride)``,
    the last block only in part), so per item the conv is ``J`` matrix products over strided
    views of ``x``, and so is its backward: no unfolded copy, and where a CPU runs matrix
    products faster than Conv1d's kernels. The result is ``Conv1d(x)``'s first
    ``T // stride - J + 1`` steps, at most one fewer than Conv1d gives
    (:meth:`ConvBlock.input_steps` says how many input steps to supply). Under autocast it
    runs in the autocast dtype.

    Args:
        x: ``(B, T, C_in)``.
        weight: ``(C_out, C_in, K)``, as ``nn.Conv1d`` holds it.
        bias: ``(C_out,)`` or None.
    Returns:
        ``(B, T // stride - J + 1, C_out)``.
    """
    return _in_autocast_dtype(_BlockwiseConv1d.apply, (x, weight, bias), stride)


def _two_tap_correlation(seq: Tensor, first: Tensor, second: Tensor, out: Tensor, bias: Tensor | None = None) -> None:
    """``out[t] = seq[t] @ first + seq[t + 1] @ second (+ bias)`` for every row ``t`` of ``out (n, C_out)``.

    Winograd's minimal filtering F(2, 2): each pair of rows takes three products, not four,
    ``(seq[2s] - seq[2s+1]) @ first``, ``seq[2s+1] @ (first + second)`` (shared by the pair) and
    ``(seq[2s+2] - seq[2s+1]) @ second``; the differences and the pair's copy are the extra
    passes. ``seq (≥ n + 1, C_in)`` and ``out`` may be strided row views; ``first``, ``second``
    ``(C_in, C_out)``.
    """
    rows = out.shape[0]
    pairs = rows // 2
    if pairs:
        differences = seq[: 2 * pairs] - seq[1 : 2 * pairs + 1]  # seq[k] - seq[k + 1]
        even, odd = out[0 : 2 * pairs : 2], out[1 : 2 * pairs : 2]
        if bias is None:  # the pair's shared product, in both rows
            torch.mm(seq[1 : 2 * pairs : 2], first + second, out=even)
        else:
            torch.addmm(bias, seq[1 : 2 * pairs : 2], first + second, out=even)
        odd.copy_(even)
        even.addmm_(differences[0::2], first)
        odd.addmm_(differences[1::2], second, alpha=-1.0)
    if rows % 2:
        last = out[rows - 1 : rows]
        if bias is None:
            torch.mm(seq[rows - 1 : rows], first, out=last)
        else:
            torch.addmm(bias, seq[rows - 1 : rows], first, out=last)
        last.addmm_(seq[rows : rows + 1], second)


class _WinogradStride2Conv1d(torch.autograd.Function):
    """Forward and backward of the kernel-3 stride-2 conv over an input that ``source`` makes from
    ``inputs``, ``chunk`` output steps at a time (:class:`_GivenInput`, :class:`_GeluInput`,
    :class:`_WindowedGeluInput`)."""

    @staticmethod
    def forward(ctx, source: type[_GivenInput], chunk: int, weight: Tensor, bias: Tensor | None, *inputs: Tensor) -> Tensor:
        frames = max(inputs[0].shape[1] // 2 - 1, 0)
        taps = weight.permute(2, 1, 0).contiguous()  # (3, C_in, C_out)
        out = inputs[0].new_empty(inputs[0].shape[0], frames, weight.shape[0])
        for start in range(0, frames, chunk):
            stop = min(start + chunk, frames)
            hidden, _ = source.rows(inputs, 2 * start, 2 * stop + 1)
            for hidden_item, out_item in zip(hidden, out[:, start:stop]):
                _winograd_rows(hidden_item, taps, bias, out_item)
        ctx.save_for_backward(taps, *inputs)
        ctx.source, ctx.chunk, ctx.has_bias = source, chunk, bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        taps, *inputs = ctx.saved_tensors
        source, frames = ctx.source, grad_out.shape[1]
        grad_out = grad_out.contiguous()
        taps = taps.transpose(1, 2)  # (3, C_out, C_in)
        grad_taps = [_gradient_sum(tap) for tap in taps] if ctx.needs_input_grad[2] else None
        grads = source.input_gradients(inputs, ctx.needs_input_grad[4:], frames)
        for start in range(0, frames, ctx.chunk):
            stop = min(start + ctx.chunk, frames)
            hidden, made_from = source.rows(inputs, 2 * start, 2 * stop + 1)
            # the input rows whose gradient this chunk completes (and row 2 * frames with the last)
            grad_rows = source.rows_gradient(grads, hidden, 2 * start, 2 * (stop - start) + (stop == frames))
            for item, hidden_item in enumerate(hidden):
                if grad_taps is not None:
                    _winograd_weight_gradients(grad_out[item, start:stop], hidden_item, grad_taps)
                if grad_rows is not None:
                    _winograd_input_gradient(grad_out[item], taps, start, stop, grad_rows[item])
            if grad_rows is not None:
                source.backpropagate(inputs, made_from, grad_rows, 2 * start, grads)
        grad_weight = None if grad_taps is None else torch.stack(grad_taps, dim=-1)
        grad_bias = grad_out.sum(dim=(0, 1)) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return None, None, grad_weight, grad_bias, *grads


class _GivenInput:
    """The conv's input as given, ``inputs = (x (B, T, C),)``."""

    @staticmethod
    def rows(inputs: Sequence[Tensor], start: int, stop: int) -> tuple[Tensor, Tensor]:
        """The input rows ``start:stop`` ``(B, n, C)`` and what they are made from."""
        rows = inputs[0][:, start:stop]
        return rows, rows

    @staticmethod
    def input_gradients(inputs: Sequence[Tensor], needs: Sequence[bool], frames: int) -> list[Tensor | None]:
        """The gradients of ``inputs`` to fill (None where none is wanted)."""
        if not needs[0]:
            return [None]
        grad = torch.empty_like(inputs[0])
        grad[:, 2 * frames + 1 if frames else 0 :].zero_()  # rows no output reads
        return [grad]

    @staticmethod
    def rows_gradient(grads: list[Tensor | None], hidden: Tensor, start: int, rows: int) -> Tensor | None:
        """Where the gradient of input rows ``start:start + rows`` goes, or None where none is wanted."""
        return None if grads[0] is None else grads[0][:, start : start + rows]

    @staticmethod
    def backpropagate(inputs: Sequence[Tensor], made_from: Tensor, grad_rows: Tensor, start: int,
                      grads: list[Tensor | None]) -> None:
        """Takes the gradient of input rows ``start:`` back to ``grads`` (here it is there already)."""


class _GeluInput(_GivenInput):
    """The conv's input is ``gelu(pre)``, ``inputs = (pre (B, T, C),)``: the previous layer's
    activation, made chunk by chunk in the forward and again in the backward, never stored whole."""

    @staticmethod
    def rows(inputs: Sequence[Tensor], start: int, stop: int) -> tuple[Tensor, Tensor]:
        pre = inputs[0][:, start:stop]
        return nn.functional.gelu(pre), pre

    @staticmethod
    def backpropagate(inputs: Sequence[Tensor], made_from: Tensor, grad_rows: Tensor, start: int,
                      grads: list[Tensor | None]) -> None:
        torch.ops.aten.gelu_backward.grad_input(grad_rows, made_from[:, : grad_rows.shape[1]], grad_input=grad_rows)


class _WindowedGeluInput:
    """The conv's input is ``gelu(windows @ weight + offset)``, ``inputs = (windows (B, T, D), weight
    (B, D, C), offset (B, 1, C))``: the CNN's first layer over waveform windows, made chunk by chunk
    in the forward and again in the backward, never stored whole. The windows get no gradient."""

    @staticmethod
    def rows(inputs: Sequence[Tensor], start: int, stop: int) -> tuple[Tensor, Tensor]:
        windows, weight, offset = inputs
        pre = torch.baddbmm(offset, windows[:, start:stop], weight)
        return nn.functional.gelu(pre), pre

    @staticmethod
    def input_gradients(inputs: Sequence[Tensor], needs: Sequence[bool], frames: int) -> list[Tensor | None]:
        return [None] + [_gradient_sum(tensor) if need else None for tensor, need in zip(inputs[1:], needs[1:])]

    @staticmethod
    def rows_gradient(grads: list[Tensor | None], hidden: Tensor, start: int, rows: int) -> Tensor | None:
        wanted = grads[1] is not None or grads[2] is not None
        return hidden.new_empty(hidden.shape[0], rows, hidden.shape[2]) if wanted else None

    @staticmethod
    def backpropagate(inputs: Sequence[Tensor], made_from: Tensor, grad_rows: Tensor, start: int,
                      grads: list[Tensor | None]) -> None:
        _GeluInput.backpropagate(inputs, made_from, grad_rows, start, grads)
        if grads[1] is not None:
            windows = inputs[0][:, start : start + grad_rows.shape[1]]
            grads[1].add_(torch.bmm(windows.transpose(1, 2), grad_rows))
        if grads[2] is not None:
            grads[2].add_(grad_rows.sum(dim=1, keepdim=True))


def _winograd_rows(x: Tensor, taps: Tensor, bias: Tensor | None, out: Tensor) -> None:
    """``out[t] = x[2t] W0 + x[2t+1] W1 + x[2t+2] W2 (+ bias)`` for every row of ``out (n, C_out)``;
    ``x (≥ 2n + 1, C_in)``, ``taps (3, C_in, C_out)``."""
    _two_tap_correlation(x[0::2], taps[0], taps[2], out, bias)
    out.addmm_(x[1 : 2 * out.shape[0] : 2], taps[1])


def _winograd_input_gradient(grad: Tensor, taps: Tensor, start: int, stop: int, out: Tensor) -> None:
    """Rows ``2 start`` to ``2 stop - 1`` of one item's input gradient (and row ``2 n`` where ``stop``
    is the last of ``n`` outputs) into ``out``, from ``grad (n, C_out)``: even rows ``2m`` get
    ``grad[m] W0ᵀ + grad[m - 1] W2ᵀ``, the same two-tap correlation as the forward, odd rows
    ``grad[m] W1ᵀ``. ``taps (3, C_out, C_in)``."""
    outputs = stop - start
    even = out[0 : 2 * outputs : 2]
    if start == 0:
        torch.mm(grad[:1], taps[0], out=even[:1])
        _two_tap_correlation(grad[:stop], taps[2], taps[0], even[1:])
    else:
        _two_tap_correlation(grad[start - 1 : stop], taps[2], taps[0], even)
    if stop == grad.shape[0]:
        torch.mm(grad[stop - 1 : stop], taps[2], out=out[2 * outputs : 2 * outputs + 1])
    torch.mm(grad[start:stop], taps[1], out=out[1 : 2 * outputs : 2])


def _winograd_weight_gradients(grad: Tensor, x: Tensor, grad_taps: Sequence[Tensor]) -> None:
    """Adds the three taps' gradients ``Σ_t grad[t]ᵀ x[2t + k]`` (``(C_out, C_in)`` each) of one item's
    ``grad (n, C_out)`` and input ``x (≥ 2n + 1, C_in)`` to ``grad_taps``."""
    _two_tap_weight_gradients(grad, x[0::2], grad_taps[0], grad_taps[2])
    _add_product(grad_taps[1], grad.t(), x[1 : 2 * grad.shape[0] : 2])


def _two_tap_weight_gradients(grad: Tensor, seq: Tensor, grad_first: Tensor, grad_second: Tensor) -> None:
    """Adds ``Σ_t grad[t]ᵀ seq[t]`` to ``grad_first`` and ``Σ_t grad[t]ᵀ seq[t + 1]`` to ``grad_second``
    (the weight gradients of :func:`_two_tap_correlation`), also with three products per pair of rows.

    grad: ``(n, C_out)``; seq: ``(≥ n + 1, C_in)``; the gradients ``(C_out, C_in)``.
    """
    rows = grad.shape[0]
    pairs = rows // 2
    if pairs:
        differences = seq[: 2 * pairs] - seq[1 : 2 * pairs + 1]
        shared = torch.mm((grad[0 : 2 * pairs : 2] + grad[1 : 2 * pairs : 2]).t(), seq[1 : 2 * pairs : 2])
        grad_first += shared
        _add_product(grad_first, grad[0 : 2 * pairs : 2].t(), differences[0::2])
        grad_second += shared
        _add_product(grad_second, grad[1 : 2 * pairs : 2].t(), differences[1::2], alpha=-1.0)
    if rows % 2:
        _add_product(grad_first, grad[rows - 1 : rows].t(), seq[rows - 1 : rows])
        _add_product(grad_second, grad[rows - 1 : rows].t(), seq[rows : rows + 1])


def winograd_stride2_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, *, gelu_first: bool = False,
                            chunk: int = 2048) -> Tensor:
    """A kernel-3, stride-2 Conv1d (no padding) over channels-last ``x (B, T, C_in)`` with a sixth fewer products.

    Output step ``t`` is ``x[2t] W0 + x[2t+1] W1 + x[2t+2] W2``: a two-tap correlation of the
    even steps with ``(W0, W2)``, done as Winograd F(2, 2) (:func:`_two_tap_correlation`, three
    products per two outputs), plus one product of the odd steps with ``W1``. The input and
    weight gradients are done the same way, so the forward and both backward products shrink
    from 6 to 5 per two outputs. Gives the steps :func:`blockwise_conv1d` gives (``T // 2 - 1``);
    under autocast it runs in the autocast dtype, where the rounded differences give its outputs and
    input gradients about twice a direct convolution's rounding error.

    With ``gelu_first`` the conv takes ``gelu(x)`` (the previous CNN layer's activation), made
    ``chunk`` output steps at a time in the forward and again in the backward: neither it nor its
    gradient is stored or allocated whole, only ``x``, which the GELU's backward needs anyway.

    Args:
        x: ``(B, T, C_in)``.
        weight: ``(C_out, C_in, 3)``, as ``nn.Conv1d`` holds it.
        bias: ``(C_out,)`` or None.
    Returns:
        ``(B, max(T // 2 - 1, 0), C_out)``.
    """
    _check_kernel_3(weight)
    source, chunk = (_GeluInput, chunk) if gelu_first else (_GivenInput, max(x.shape[1], 1))
    return _in_autocast_dtype(lambda x, weight, bias: _WinogradStride2Conv1d.apply(source, chunk, weight, bias, x),
                              (x, weight, bias))


def windowed_gelu_winograd_conv1d(windows: Tensor, weight: Tensor, offset: Tensor, conv_weight: Tensor,
                                  conv_bias: Tensor | None, chunk: int = 2048) -> Tensor:
    """``winograd_stride2_conv1d(gelu(windows @ weight + offset), conv_weight, conv_bias)`` without
    ever holding the first product whole: the wav2vec 2.0 CNN's first two layers.

    The first layer's output (``(B, T, C)``, the CNN's largest tensor: 52 MB for two 4 s utterances)
    is made ``chunk`` output steps at a time, fed to the second layer and dropped; the backward
    makes it again, chunk by chunk (a product over 10-sample windows, cheap next to the second
    layer's). So neither it nor its gradient is ever stored or allocated whole, which saves
    their memory and the page faults of fresh allocations that size. The windows get no gradient.

    Args:
        windows: ``(B, T, D)`` the first layer's input windows.
        weight: ``(B, D, C)`` its weights (per item: a folded group norm scales them), offset
            ``(B, 1, C)`` its bias.
        conv_weight: ``(C_out, C, 3)``, the second layer's, as ``nn.Conv1d`` holds it; conv_bias
            ``(C_out,)`` or None.
        chunk: second-layer output steps made at a time.
    Returns:
        ``(B, max(T // 2 - 1, 0), C_out)``.
    """
    _check_kernel_3(conv_weight)
    if windows.requires_grad:
        raise ValueError("windowed_gelu_winograd_conv1d gives the windows no gradient; run the layers one by one")
    return _in_autocast_dtype(
        lambda windows, weight, offset, conv_weight, conv_bias: _WinogradStride2Conv1d.apply(
            _WindowedGeluInput, chunk, conv_weight, conv_bias, windows, weight, offset),
        (windows, weight, offset, conv_weight, conv_bias))


def _check_kernel_3(weight: Tensor) -> None:
    if weight.shape[-1] != 3:
        raise ValueError(f"the Winograd stride-2 conv takes kernel 3, got weight of shape {tuple(weight.shape)}")


class _WideGroupedConv1d(torch.autograd.Function):
    """Forward and backward of :func:`wide_grouped_conv1d`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, padding: int, groups: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.groups, ctx.has_bias = padding, groups, bias is not None
        return nn.functional.conv1d(x, weight, bias, padding=padding, groups=groups)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        x, weight = ctx.saved_tensors
        padding, groups = ctx.padding, ctx.groups
        batch, channels_in, _ = x.shape
        channels_out, group_in, kernel = weight.shape
        group_out = channels_out // groups
        frames = grad_out.shape[-1]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:  # the time-reversed gradient correlated with each group's transposed taps
            transposed = weight.reshape(groups, group_out, group_in, kernel).transpose(1, 2)
            grad_x = nn.functional.conv1d(grad_out.flip(-1), transposed.reshape(channels_in, group_out, kernel),
                                          padding=kernel - 1 - padding, groups=groups).flip(-1)
        if ctx.needs_input_grad[1]:  # input channels as the batch, the gradient as the kernel
            padded = nn.functional.pad(x, (padding, padding))
            inputs = padded.reshape(batch, groups, group_in, -1).permute(2, 1, 0, 3).reshape(group_in, groups * batch, -1)
            kernels = grad_out.reshape(batch, groups, group_out, frames).permute(1, 2, 0, 3).reshape(channels_out, batch, frames)
            lags = nn.functional.conv1d(inputs, kernels, groups=groups)  # (group_in, C_out, kernel)
            grad_weight = lags.transpose(0, 1).contiguous()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(dim=(0, 2))
        return grad_x, grad_weight, grad_bias, None, None


def wide_grouped_conv1d(x: Tensor, weight: Tensor, bias: Tensor | None, padding: int, groups: int) -> Tensor:
    """``nn.functional.conv1d(x, weight, bias, padding=padding, groups=groups)`` (stride 1) whose
    backward runs as two forward convolutions.

    For a wide kernel over few channels per group (wav2vec 2.0's positional conv: kernel 128,
    16 groups of 48 channels) the CPU backward kernel is slow (about 3.5x the forward). Here
    the input gradient is the time-reversed output gradient correlated with the transposed taps,
    and the weight gradient a convolution of the padded input (its channels as the batch) with
    the output gradient as the kernel: each about the forward's time. Under autocast it runs in
    the autocast dtype. On other devices than the CPU it is ``nn.functional.conv1d``.

    Args:
        x: ``(B, C_in, L)``.
        weight: ``(C_out, C_in / groups, K)``; ``padding <= K - 1``.
        bias: ``(C_out,)`` or None.
    Returns:
        ``(B, C_out, L + 2 * padding - K + 1)``.
    """
    if not 0 <= padding < weight.shape[-1]:
        raise ValueError(f"wide_grouped_conv1d takes padding 0 to kernel - 1 = {weight.shape[-1] - 1}, got {padding}")
    if x.device.type != "cpu":
        return nn.functional.conv1d(x, weight, bias, padding=padding, groups=groups)
    return _in_autocast_dtype(_WideGroupedConv1d.apply, (x, weight, bias), padding, groups)


def _in_autocast_dtype(conv, tensors: Sequence[Tensor | None], *args):
    """``conv(*tensors, *args)`` with the first tensor contiguous, all in the autocast dtype where
    autocast is on (float64 stays float64, as autocast leaves it)."""
    device = tensors[0].device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if dtype is None or tensors[0].dtype == torch.float64:
        return conv(tensors[0].contiguous(), *tensors[1:], *args)
    cast = [None if tensor is None else tensor.to(dtype) for tensor in tensors]
    with torch.autocast(device, enabled=False):
        return conv(cast[0].contiguous(), *cast[1:], *args)


def _gradient_sum(like: Tensor) -> Tensor:
    """A zero accumulator for a weight gradient shaped ``like``: fp32 for lower precisions, so that
    the per-item products are summed in fp32 and the sum is rounded once."""
    return torch.zeros(like.shape, dtype=torch.promote_types(like.dtype, torch.float32), device=like.device)


def _add_product(total: Tensor, a: Tensor, b: Tensor, alpha: float = 1.0) -> None:
    """``total += alpha * a @ b``, in one BLAS call where ``total`` has the operands' dtype."""
    if total.dtype == a.dtype:
        total.addmm_(a, b, alpha=alpha)
    else:
        total.add_(torch.mm(a, b), alpha=alpha)
