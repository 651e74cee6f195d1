"""One training update of the demo's HuBERT (small, fbank front end) in fp32 and in bf16 autocast.

    python bench/precision.py [--repeats 3] [--batch 8] [--seconds 5] [--threads 0]

Prints whether this machine does bf16 in hardware (what ``trainer.precision: auto`` decides
on), the best time of ``--repeats`` updates (forward, backward, AdamW step) in each precision,
and their ratio. The batch is random fbank (``--batch`` items of ``--seconds`` seconds).
"""
from __future__ import annotations

import argparse
import time

import torch

from audiossl.models.hubert import HubertConfig, build_hubert
from audiossl.train.precision import native_bf16, resolve_precision


def best_update_seconds(dtype: torch.dtype | None, repeats: int, batch: int, frames: int) -> float:
    torch.manual_seed(0)
    model = build_hubert(HubertConfig.small("fbank")).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs, lengths = torch.randn(batch, frames, 80), torch.full((batch,), frames)
    targets = torch.randint(0, 100, (batch, int(model.num_frames(lengths)[0])))
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats + 1):  # the first update warms up
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(inputs, lengths, targets, generator).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; native bf16: {native_bf16(cpu)}; "
          f"precision auto -> {resolve_precision('auto', cpu)}; {torch.get_num_threads()} thread(s); "
          f"batch {args.batch} x {args.seconds:g} s; best of {args.repeats}")
    frames = int(args.seconds * 100)
    fp32 = best_update_seconds(None, args.repeats, args.batch, frames)
    bf16 = best_update_seconds(torch.bfloat16, args.repeats, args.batch, frames)
    print(f"{'precision':<10} {'s/update':>9} {'vs fp32':>8}")
    print(f"{'fp32':<10} {fp32:9.2f} {1.0:7.2f}x")
    print(f"{'bf16':<10} {bf16:9.2f} {bf16 / fp32:7.2f}x")


if __name__ == "__main__":
    main()
