import pytest
import torch
from torch.nn import functional as F

from audiossl.nn.conv import (
    blockwise_conv1d,
    wide_grouped_conv1d,
    windowed_gelu_winograd_conv1d,
    winograd_stride2_conv1d,
)


def assert_same_values_and_gradients(out, ref, inputs):
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, inputs, grad)
    theirs = torch.autograd.grad(ref, inputs, grad)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def channels_last_conv1d(x, weight, bias, stride):
    return F.conv1d(x.transpose(1, 2), weight, bias, stride=stride).transpose(1, 2)


@pytest.mark.parametrize("kernel,stride", [(10, 5), (3, 2), (2, 2), (4, 3), (2, 3), (7, 2), (3, 1)])
@pytest.mark.parametrize("time", [11, 12, 37])
def test_blockwise_conv1d_equals_conv1d_values_and_gradients(kernel, stride, time):
    torch.manual_seed(0)
    x = torch.randn(3, time, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    out = blockwise_conv1d(x, weight, bias, stride)
    ref = channels_last_conv1d(x, weight, bias, stride)
    frames = out.shape[1]
    assert frames == time // stride - -(-kernel // stride) + 1 and ref.shape[1] - frames in (0, 1)
    assert_same_values_and_gradients(out, ref[:, :frames], (x, weight, bias))


@pytest.mark.parametrize("time", [2, 3, 4, 5, 6, 7, 8, 9, 20, 21, 37])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("gelu_first,chunk", [(False, 2048), (True, 1), (True, 3), (True, 2048)])
def test_winograd_stride2_conv1d_equals_conv1d_values_and_gradients(time, with_bias, gelu_first, chunk):
    torch.manual_seed(time)
    x = torch.randn(2, time, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True) if with_bias else None
    out = winograd_stride2_conv1d(x, weight, bias, gelu_first=gelu_first, chunk=chunk)
    frames = max(time // 2 - 1, 0)
    assert out.shape == (2, frames, 4)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    if frames:
        ref = channels_last_conv1d(F.gelu(x) if gelu_first else x, weight, bias, 2)[:, :frames]
        assert_same_values_and_gradients(out, ref, inputs)
    else:
        assert torch.autograd.grad(out.sum(), x)[0].eq(0).all()


def test_windowed_gelu_winograd_conv1d_refuses_windows_that_want_a_gradient():
    windows = torch.randn(1, 12, 2, requires_grad=True)
    with pytest.raises(ValueError, match="gives the windows no gradient"):
        windowed_gelu_winograd_conv1d(windows, torch.randn(1, 2, 4), torch.randn(1, 1, 4), torch.randn(3, 4, 3), None)


def test_winograd_stride2_conv1d_takes_kernel_3_only():
    with pytest.raises(ValueError, match="takes kernel 3"):
        winograd_stride2_conv1d(torch.randn(1, 10, 2), torch.randn(3, 2, 4), None)



@pytest.mark.parametrize("time", [2, 5, 6, 9, 14, 15, 40])
@pytest.mark.parametrize("chunk", [1, 2, 3, 2048])
@pytest.mark.parametrize("with_bias", [False, True])
def test_windowed_gelu_winograd_conv1d_equals_its_two_layers(time, chunk, with_bias):
    """Made chunk by chunk and remade in the backward, it gives the two layers' values and gradients."""
    torch.manual_seed(time)
    windows = torch.randn(2, time, 4, dtype=torch.float64)
    weight = torch.randn(2, 4, 5, dtype=torch.float64, requires_grad=True)
    offset = torch.randn(2, 1, 5, dtype=torch.float64, requires_grad=True)
    conv_weight = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    conv_bias = torch.randn(3, dtype=torch.float64, requires_grad=True) if with_bias else None
    out = windowed_gelu_winograd_conv1d(windows, weight, offset, conv_weight, conv_bias, chunk)
    frames = max(time // 2 - 1, 0)
    assert out.shape == (2, frames, 3)
    inputs = [weight, offset, conv_weight] + ([conv_bias] if with_bias else [])
    if frames:
        hidden = F.gelu(torch.baddbmm(offset, windows, weight))
        assert_same_values_and_gradients(out, channels_last_conv1d(hidden, conv_weight, conv_bias, 2)[:, :frames], inputs)
    else:
        assert all(grad.eq(0).all() for grad in torch.autograd.grad(out.sum(), inputs))

@pytest.mark.parametrize("kernel,padding,groups", [(8, 4, 3), (7, 3, 1), (5, 0, 3), (4, 3, 1), (128, 64, 3)])
def test_wide_grouped_conv1d_equals_conv1d_values_and_gradients(kernel, padding, groups):
    torch.manual_seed(kernel)
    x = torch.randn(2, 6, 17, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 6 // groups, kernel, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(9, dtype=torch.float64, requires_grad=True)
    out = wide_grouped_conv1d(x, weight, bias, padding, groups)
    ref = F.conv1d(x, weight, bias, padding=padding, groups=groups)
    assert_same_values_and_gradients(out, ref, (x, weight, bias))


@pytest.mark.parametrize("conv", [
    lambda x, w: blockwise_conv1d(x, w, None, 2),
    lambda x, w: winograd_stride2_conv1d(x, w, None),
    lambda x, w: wide_grouped_conv1d(x.transpose(1, 2), w, None, 1, 1),
    lambda x, w: winograd_stride2_conv1d(x, w, None, gelu_first=True, chunk=7),
    lambda x, w: windowed_gelu_winograd_conv1d(x, torch.eye(8).expand(2, 8, 8), torch.zeros(2, 1, 8), w, None, 7),
], ids=["blockwise", "winograd", "wide_grouped", "gelu_winograd", "windowed_gelu_winograd"])
def test_convs_run_in_the_autocast_dtype(conv):
    torch.manual_seed(0)
    x, weight = torch.randn(2, 40, 8), torch.randn(8, 8, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x, weight)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), conv(x, weight), atol=0.1, rtol=0.05)
    out.float().sum().backward()
    assert weight.grad.dtype == torch.float32


def test_wide_grouped_conv1d_refuses_padding_beyond_the_kernel():
    with pytest.raises(ValueError, match="padding 0 to kernel - 1 = 2"):
        wide_grouped_conv1d(torch.randn(1, 2, 9), torch.randn(2, 2, 3), None, 3, 1)


def test_float64_stays_float64_under_autocast():
    x, weight = torch.randn(1, 12, 4, dtype=torch.float64), torch.randn(4, 4, 3, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert winograd_stride2_conv1d(x, weight, None).dtype == torch.float64


@pytest.mark.parametrize("conv", [
    lambda x, w: blockwise_conv1d(x, w, None, 2),
    lambda x, w: winograd_stride2_conv1d(x, w, None),
    lambda x, w: winograd_stride2_conv1d(x, w, None, gelu_first=True, chunk=16),
], ids=["blockwise", "winograd", "gelu_winograd"])
def test_bf16_weight_gradients_are_summed_over_the_batch_in_fp32(conv):
    """Summed in bf16, item by item, the weight gradient's rounding error grew with the batch (1.4e-2
    relative at 64 items); summed in fp32 it stays that of one product."""
    torch.manual_seed(0)
    x, grad = torch.randn(32, 100, 64), torch.randn(32, 49, 64)
    weight = (torch.randn(64, 64, 3) / 14).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x, weight)
    out.float().backward(grad)
    x64, weight64 = x.bfloat16().double(), weight.detach().bfloat16().double().requires_grad_()
    conv(x64, weight64).backward(grad.bfloat16().double())
    error = (weight.grad.double() - weight64.grad).norm() / weight64.grad.norm()
    assert error < 5e-3
