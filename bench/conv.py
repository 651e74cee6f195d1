"""The convolutions of a BASE wav2vec 2.0 encoder, forward+backward: audiossl's (``audiossl.nn.conv``) against torch's.

    python bench/conv.py [--rounds 7] [--batch 2] [--seconds 4] [--threads 0]

For the whole CNN (fairseq's default layout: 512 channels, group norm after the first layer) it
times torch's ``Conv1d``, ``GroupNorm`` and GELU over channels-first input, audiossl's
``ConvBlock``s run one after the other, and ``ConvWaveformEncoder``, which on the CPU runs the
first two layers as one ``windowed_gelu_winograd_conv1d`` and makes each further Winograd layer's
input GELU on the fly, and prints the tensors each saves for the backward. For the CNN's four
kernel-3 stride-2 layers (512 channels, at the steps a batch of ``--seconds``
of audio gives each) it times torch's ``Conv1d`` over channels-first input (as torchaudio and
transformers run it), audiossl's blockwise matrix products (``blockwise_conv1d``) and Winograd
F(2, 2) (``winograd_stride2_conv1d``); for the positional convolution (768 channels, kernel 128,
16 groups, the frames the batch gives) torch's ``conv1d`` and ``wide_grouped_conv1d``. A step is
the forward and the backward of a fixed random output gradient, with the input gradient (every
one of these layers needs it in training). Outputs and gradients are checked equal first; the
implementations are interleaved over rounds and the median is printed, with each one's time over
torch's within a round (median and range over rounds).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from audiossl.nn.conv import blockwise_conv1d, wide_grouped_conv1d, winograd_stride2_conv1d
from audiossl.nn.frontends import ConvBlock, ConvWaveformEncoder

Step = Callable[[], tuple[torch.Tensor, list[torch.Tensor]]]
CNN_LAYOUT = [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2  # fairseq's conv_feature_layers: (kernel, stride)


def feature_encoder(batch: int, samples: int, channels: int = 512) -> dict[str, Step]:
    """name -> step for the whole CNN over ``batch`` waveforms of ``samples`` samples."""
    blocks = [ConvBlock(1 if i == 0 else channels, channels, kernel, stride, False, "group" if i == 0 else None)
              for i, (kernel, stride) in enumerate(CNN_LAYOUT)]
    encoder = ConvWaveformEncoder(blocks)
    frames = int(encoder.num_frames(torch.tensor(samples)))
    wavs, lengths = torch.randn(batch, samples), torch.full((batch,), samples)
    grad = torch.randn(batch, frames, channels)
    params = list(encoder.parameters())

    def torch_cnn() -> torch.Tensor:
        x = wavs[:, None]
        for block in blocks:
            x = F.conv1d(x, block.conv.weight, stride=block.stride)
            if block.norm is not None:
                x = F.group_norm(x, channels, block.norm.weight, block.norm.bias)
            x = F.gelu(x)
        return x.transpose(1, 2)

    def one_by_one() -> torch.Tensor:
        x, steps = wavs[..., None], lengths
        for block in blocks:
            x, steps = block(x, steps)
        return x

    def run(cnn: Callable[[], torch.Tensor]) -> Step:
        def step():
            out = cnn()[:, :frames]
            out.backward(grad)
            grads = [param.grad for param in params]
            for param in params:
                param.grad = None
            return out, grads
        return step

    return {"torch Conv1d + GroupNorm + GELU": run(torch_cnn), "audiossl ConvBlocks one by one": run(one_by_one),
            "audiossl ConvWaveformEncoder": run(lambda: encoder(wavs, lengths)[0])}


def saved_mib(step: Step) -> float:
    """MiB of the tensors ``step``'s forward saves for its backward (each storage once)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    return sum(storages.values()) / 2**20


def cnn_layer(batch: int, steps: int, channels: int = 512) -> dict[str, Step]:
    """name -> step for one kernel-3 stride-2 layer over ``steps`` input steps."""
    x = torch.randn(batch, steps, channels, requires_grad=True)
    weight = (torch.randn(channels, channels, 3) / (3 * channels) ** 0.5).requires_grad_()
    x_first = x.detach().transpose(1, 2).contiguous().requires_grad_()
    frames = steps // 2 - 1
    grad = torch.randn(batch, frames, channels)

    def run(conv, inputs, grad_out, channels_first=False):
        """A step whose output and input gradient come back channels-last."""
        def step():
            out = conv()
            out.backward(grad_out)
            grads = [inputs.grad.transpose(1, 2) if channels_first else inputs.grad, weight.grad]
            inputs.grad = weight.grad = None
            return (out.transpose(1, 2) if channels_first else out), grads
        return step

    return {
        "torch Conv1d": run(lambda: F.conv1d(x_first, weight, stride=2)[..., :frames], x_first,
                            grad.transpose(1, 2), channels_first=True),
        "audiossl blockwise": run(lambda: blockwise_conv1d(x, weight, None, 2), x, grad),
        "audiossl Winograd F(2,2)": run(lambda: winograd_stride2_conv1d(x, weight, None), x, grad),
    }


def positional_conv(batch: int, frames: int, channels: int = 768, kernel: int = 128, groups: int = 16) -> dict[str, Step]:
    """name -> step for the positional convolution over ``frames`` frames (its even kernel's extra frame kept)."""
    x = torch.randn(batch, channels, frames, requires_grad=True)
    weight = (torch.randn(channels, channels // groups, kernel) * 0.01).requires_grad_()
    bias = torch.zeros(channels, requires_grad=True)
    grad = torch.randn(batch, channels, frames + 1)

    def run(conv):
        def step():
            out = conv(x, weight, bias, kernel // 2, groups)
            out.backward(grad)
            grads = [x.grad, weight.grad, bias.grad]
            x.grad = weight.grad = bias.grad = None
            return out, grads
        return step

    return {"torch conv1d": run(lambda *a: F.conv1d(a[0], a[1], a[2], padding=a[3], groups=a[4])),
            "audiossl wide_grouped_conv1d": run(wide_grouped_conv1d)}


def check_equal(title: str, steps: dict[str, Step]) -> None:
    reference_out, reference_grads = next(iter(steps.values()))()
    for name, step in list(steps.items())[1:]:
        out, grads = step()
        for ours, theirs in zip([out] + grads, [reference_out] + reference_grads):
            scale = theirs.abs().max().item()
            if (ours - theirs).abs().max().item() > 1e-4 * scale:
                raise SystemExit(f"{title}: {name} differs from {next(iter(steps))}")


def timed(step: Step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    samples = int(args.seconds * 16000)
    cases = {f"whole CNN: {args.batch} x {samples} samples": feature_encoder(args.batch, samples)}
    steps = (samples - 10) // 5 + 1  # after the first CNN layer (kernel 10, stride 5)
    for layer in range(2, 6):
        steps += steps % 2  # the front end pads each block's input to whole blocks
        cases[f"CNN layer {layer}: {args.batch} x {steps} steps x 512 -> {steps // 2 - 1}"] = cnn_layer(args.batch, steps)
        steps = steps // 2 - 1
    frames = int(args.seconds * 16000 - 400) // 320 + 1
    cases[f"positional conv: {args.batch} x 768 x {frames} frames, kernel 128, 16 groups"] = positional_conv(args.batch, frames)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {torch.get_num_threads()} thread(s); fp32; "
          f"forward + backward (input and weight gradients); median of {args.rounds} interleaved rounds")
    for title, implementations in cases.items():
        check_equal(title, implementations)
        for step in implementations.values():
            step()
        times: dict[str, list[float]] = {name: [] for name in implementations}
        for _ in range(args.rounds):
            for name, step in implementations.items():
                times[name].append(timed(step))
        reference = next(iter(times.values()))
        print(f"{title}: outputs and gradients equal")
        for name, seconds in times.items():
            ratios = [ours / theirs for ours, theirs in zip(seconds, reference)]
            print(f"  {name:32s} {1e3 * statistics.median(seconds):8.1f} ms   {statistics.median(ratios):.2f}x torch's "
                  f"(rounds {min(ratios):.2f}-{max(ratios):.2f})   {saved_mib(implementations[name]):6.0f} MiB saved for the backward")


if __name__ == "__main__":
    main()
