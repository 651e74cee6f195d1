"""The bidirectional Mamba encoder against the transformer encoder and against the sequential scan.

    python bench/mamba.py [--lengths 1000,2000,4000,8000,16000] [--reference-lengths 1000,2000,4000]
        [--math-lengths 1000,2000,4000,8000] [--layers 2] [--dim 256] [--rounds 3] [--threads 0]

Four encoders of the same depth and width (``EncoderConfig`` defaults otherwise, dropout and
layer drop 0): ``bimamba`` (the chunked scan; utterances longer than ``segment_above`` frames in
segments of ``segment_frames``, recomputed in the backward pass), ``sequential`` (the same weights
on the reference scan, a loop over frames, never segmented), ``transformer`` (the project's, 4
heads, FFN 4 x dim; PyTorch picks its CPU attention kernel, a flash kernel whose memory is linear
in T) and ``transformer_math``
(the same with the math kernel forced: the (T, T) attention maps are stored). A step is a
forward+backward of one utterance of T frames (the encoder's input, as the front end gives it).
Each (encoder, length) runs in its own child process, so the peak resident memory it reports
(``ru_maxrss`` after the steps, less its peak after a 64-frame step that loads what a first
step loads) is that step's own; glibc's
mmap threshold is fixed at 128 KiB in the children, so freed large buffers leave the resident
set and it follows the live tensors. The encoders alternate within each length; each child
times the median of ``--rounds`` steps after a warm-up. Before any timing, the chunked and sequential encoders are checked equal on
the shortest length. Printed: time and peak memory per length, the log-log slope of time over
the lengths, the speed-up over the sequential scan, Mamba's memory over the transformer's at
the longest length, and the length where Mamba becomes faster than attention.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from audiossl.models.components import EncoderConfig, build_encoder
from audiossl.nn import mamba

ENCODERS = ("bimamba", "sequential", "transformer", "transformer_math")


def build(name: str, layers: int, dim: int) -> torch.nn.Module:
    """The encoder ``name``, seeded so that ``bimamba`` and ``sequential`` hold the same weights."""
    torch.manual_seed(0)
    kind = "bimamba" if name in ("bimamba", "sequential") else "transformer"
    config = EncoderConfig(kind=kind, num_layers=layers, dim=dim, ffn_dim=4 * dim, num_heads=4, dropout=0.0,
                           attention_dropout=0.0, layer_drop=0.0, conv_pos=32)
    if name == "sequential":  # every scan of this process goes through the reference loop (segments do not)
        config.segment_frames = 0
        mamba.selective_scan = lambda x, dt, A, B, C, chunk_size: mamba.sequential_scan(x, dt, A, B, C)
    return build_encoder(config)


def step(encoder: torch.nn.Module, x: torch.Tensor, math_attention: bool) -> float:
    padding = torch.zeros(x.shape[:2], dtype=torch.bool)
    start = time.perf_counter()
    with sdpa_kernel(SDPBackend.MATH) if math_attention else contextlib.nullcontext():
        encoder(x, padding)[-1].mean().backward()
    return time.perf_counter() - start


def child(name: str, frames: int, layers: int, dim: int, rounds: int) -> None:
    """Time ``rounds`` steps after a warm-up; print seconds (median) and peak memory (MiB) as JSON."""
    encoder = build(name, layers, dim)
    step(encoder, torch.randn(1, 64, dim), name == "transformer_math")  # loads what a first step loads
    x = torch.randn(1, frames, dim, generator=torch.Generator().manual_seed(frames))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = [step(encoder, x, name == "transformer_math") for _ in range(rounds + 1)][1:]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"seconds": statistics.median(times), "peak_mib": peak / 1024}))


def measure(name: str, frames: int, args: argparse.Namespace) -> dict:
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    command = [sys.executable, __file__, "--child", name, "--lengths", str(frames), "--layers", str(args.layers),
               "--dim", str(args.dim), "--rounds", str(args.rounds), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, env=environment)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_equal(frames: int, layers: int, dim: int) -> float:
    x = torch.randn(1, frames, dim, generator=torch.Generator().manual_seed(0))
    padding = torch.zeros(1, frames, dtype=torch.bool)
    scan = mamba.selective_scan
    with torch.no_grad():
        chunked = build("bimamba", layers, dim)(x, padding)[-1]
        sequential = build("sequential", layers, dim)(x, padding)[-1]
    mamba.selective_scan = scan
    return (chunked - sequential).abs().max().item()


def slope(lengths: list[int], seconds: list[float]) -> float:
    """Least-squares slope of log(seconds) over log(length)."""
    xs, ys = [math.log(n) for n in lengths], [math.log(s) for s in seconds]
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="1000,2000,4000,8000,16000", help="frames per utterance")
    parser.add_argument("--reference-lengths", default="1000,2000,4000", help="lengths the sequential scan runs")
    parser.add_argument("--math-lengths", default="1000,2000,4000,8000",
                        help="lengths the transformer with the math attention kernel runs")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--child", choices=ENCODERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lengths = [int(n) for n in args.lengths.split(",")]
    if args.child:
        child(args.child, lengths[0], args.layers, args.dim, args.rounds)
        return
    only = {"sequential": [int(n) for n in args.reference_lengths.split(",")],
            "transformer_math": [int(n) for n in args.math_lengths.split(",")]}
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {torch.get_num_threads()} thread(s); "
          f"{args.layers} layers x {args.dim}; one utterance; forward+backward, median of {args.rounds} after a warm-up")
    difference = check_equal(min(lengths), args.layers, args.dim)
    if difference > 1e-3:
        raise SystemExit(f"the chunked and sequential encoders differ by {difference:.2e}")
    print(f"chunked and sequential scans: outputs equal ({difference:.1e}) at {min(lengths)} frames")
    results: dict[str, dict[int, dict]] = {name: {} for name in ENCODERS}
    print(f"{'frames':>7} " + " ".join(f"{name + ' s':>18} {'MiB':>7}" for name in ENCODERS))
    for frames in lengths:
        for name in ENCODERS:
            if frames in only.get(name, lengths):
                results[name][frames] = measure(name, frames, args)
        cells = []
        for name in ENCODERS:
            got = results[name].get(frames)
            cells.append(f"{'-':>18} {'-':>7}" if got is None else f"{'failed':>18} {'-':>7}" if "error" in got
                         else f"{got['seconds']:18.3f} {got['peak_mib']:7.0f}")
        print(f"{frames:>7} " + " ".join(cells))
    timed = {name: {n: r for n, r in runs.items() if "error" not in r} for name, runs in results.items()}
    for name, runs in results.items():
        for frames, got in runs.items():
            if "error" in got:
                print(f"{name} at {frames} frames failed: {got['error']}")
    ours = timed["bimamba"]
    if len(ours) > 1:
        print(f"bimamba log-log time slope over {min(ours)}-{max(ours)} frames: "
              f"{slope(list(ours), [r['seconds'] for r in ours.values()]):.2f}")
    for frames in sorted(set(ours) & set(timed["sequential"])):
        print(f"speed-up over the sequential scan at {frames} frames: "
              f"{timed['sequential'][frames]['seconds'] / ours[frames]['seconds']:.1f}x")
    for peer in ("transformer", "transformer_math"):
        common = sorted(set(ours) & set(timed[peer]))
        if not common:
            continue
        longest = common[-1]
        print(f"peak memory at {longest} frames: bimamba {ours[longest]['peak_mib']:.0f} MiB, {peer} "
              f"{timed[peer][longest]['peak_mib']:.0f} MiB "
              f"({ours[longest]['peak_mib'] / timed[peer][longest]['peak_mib']:.2f}x)")
        print(f"bimamba against {peer}: {crossover(common, ours, timed[peer])}")


def crossover(lengths: list[int], ours: dict[int, dict], peer: dict[int, dict]) -> str:
    """Where bimamba's time per step falls below the peer's, interpolated in log-log between lengths."""
    ratios = [ours[n]["seconds"] / peer[n]["seconds"] for n in lengths]
    if ratios[0] < 1:
        return f"faster at every length measured ({ratios[0]:.2f}x the time at {lengths[0]} frames)"
    for (n1, r1), (n2, r2) in zip(zip(lengths, ratios), zip(lengths[1:], ratios[1:])):
        if r2 < 1:
            at = math.exp(math.log(n1) + math.log(r1) / (math.log(r1) - math.log(r2)) * (math.log(n2) - math.log(n1)))
            return f"faster from about {at:.0f} frames on ({r1:.2f}x the time at {n1}, {r2:.2f}x at {n2})"
    return f"slower at every length measured ({ratios[-1]:.2f}x the time at {lengths[-1]} frames)"


if __name__ == "__main__":
    main()
