"""A forward+backward step of BASE-size wav2vec 2.0, HuBERT and WavLM: audiossl against torchaudio, transformers
and fairseq2 (wav2vec 2.0 only: fairseq2 has no HuBERT or WavLM).

    python bench/encoder_step.py [--rounds 3] [--warmup 1] [--batch 2] [--seconds 4] [--threads 0]
        [--families wav2vec2,hubert,wavlm] [--bf16 auto|yes|no] [--profile]

For each family, one randomly initialised audiossl BASE model (waveform front end, layer drop 0)
is converted to torchaudio's ``Wav2Vec2Model``, to transformers' model with eager and with sdpa
attention (where transformers has it) and to fairseq2's ``Wav2Vec2Model`` (its encoder front end and
encoder), so every peer holds the same weights. Their last hidden
states on the same batch are checked equal (1e-3) before any timing. A step is the forward pass
in eval mode (no dropout, so the outputs compare) and the backward of the mean last hidden state.
Each implementation runs in a process of its own (spawned by this one, each building the same
weights), so that its memory allocator's state is its own, as in a training run, not left by the
implementations or families timed before it. The implementations take turns within each round
(one process steps while the others wait); the median step over rounds is printed,
with each one's time over the fastest peer's in the same round (below 1: audiossl is faster), the
median over rounds and its range: a ratio within one round is immune to the machine's slow drift,
which moves whole rounds by several percent on a shared virtual machine. Under ``--bf16`` (by
default where the CPU has bf16 hardware, as ``trainer.precision: auto`` decides) each also runs
under bf16 autocast, and its time over the fastest peer's fp32 step is printed the same way.

Each row also gives the step's rate of matrix arithmetic: three times the forward pass's
multiply-add FLOPs (torch's ``FlopCounterMode`` on torchaudio's forward; the backward does twice
the forward's products) over the step's time, and that rate as a share of the CPU's matrix-product
peak: the best 2048 x 2048 product in the row's precision, measured before the first round and
after each (the machine's speed drifts). A step near the peak has little to gain but by doing
fewer products. Last comes the median of the page faults a step took in its process: fresh
pages the kernel maps and zeroes, which glibc's allocator asks for again on every step for
blocks above its mmap threshold (at most 32 MiB) and whenever it has trimmed its heap.

``--profile`` then prints where an fp32 step of each implementation spends its time, by kind of
operation (torch's profiler, self time of the ops; the median over three steps after the timed
rounds; profiling slows every step a little).
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import torch
import transformers
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from audiossl.train.precision import native_bf16

from audiossl.interop.fairseq2 import fairseq2_config, state_dict_to_fairseq2
from audiossl.interop.huggingface import HF_FAMILIES
from audiossl.interop.torchaudio import to_torchaudio
from audiossl.models.hubert import HubertConfig, build_hubert
from audiossl.models.wav2vec2 import Wav2Vec2Config, build_wav2vec2
from audiossl.models.wavlm import WavLMConfig, build_wavlm

BUILDERS = {"wav2vec2": (Wav2Vec2Config, build_wav2vec2), "hubert": (HubertConfig, build_hubert),
            "wavlm": (WavLMConfig, build_wavlm)}
HF_CLASSES = {"wav2vec2": transformers.Wav2Vec2Model, "hubert": transformers.HubertModel,
              "wavlm": transformers.WavLMModel}


def full_lengths(wavs: torch.Tensor) -> torch.Tensor:
    return torch.full((wavs.shape[0],), wavs.shape[1])


IMPLEMENTATIONS = ("audiossl", "torchaudio", "transformers eager", "transformers sdpa", "fairseq2")


def build_implementation(family: str, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``run(wavs (B, S)) -> last hidden state (B, T, D)`` of implementation ``name``: audiossl's BASE
    model with seed 0, or that model converted (every process builds the same weights)."""
    config_class, build = BUILDERS[family]
    torch.manual_seed(0)
    ours = build(config_class.base()).with_layer_drop(0.0).encoder_only().eval()
    if name == "audiossl":
        return lambda wavs: ours.extract_features(wavs, full_lengths(wavs))[0][-1]
    if name == "torchaudio":
        audio = to_torchaudio(ours).eval()
        return lambda wavs: audio(wavs)[0]
    if name == "fairseq2":
        return fairseq2_implementation(ours)
    entry, converters = HF_CLASSES[family], HF_FAMILIES[family]
    config = entry.config_class(**converters.config_to_hf(ours.config), attn_implementation=name.split()[-1])
    hf = entry(config).eval()
    hf.load_state_dict(converters.state_dict_to_hf(ours.state_dict()))
    return lambda wavs: hf(wavs).last_hidden_state


def fairseq2_implementation(ours) -> Callable[[torch.Tensor], torch.Tensor]:
    """fairseq2's wav2vec 2.0 with ``ours``'s weights (its quantizer unused, as fresh); ValueError for other families."""
    if ours.config.family != "wav2vec2":
        raise ValueError(f"fairseq2 has no {ours.config.family} model. ")
    from fairseq2.models.wav2vec2 import create_wav2vec2_model
    from fairseq2.nn import BatchLayout

    model = create_wav2vec2_model(fairseq2_config(ours.config)).eval()
    missing, unexpected = model.load_state_dict(state_dict_to_fairseq2(ours), strict=False)
    assert not unexpected and all(name.startswith(("quantizer.", "final_")) for name in missing), missing

    def run(wavs: torch.Tensor) -> torch.Tensor:
        frontend = model.encoder_frontend
        seqs, layout, _ = frontend.extract_features(wavs, BatchLayout.of(wavs))
        seqs, _ = frontend.process_features(seqs, layout, None)
        return model.encoder(seqs, layout)

    return run


def step_flops(run: Callable[[torch.Tensor], torch.Tensor], wavs: torch.Tensor) -> float:
    """Multiply-add FLOPs of a forward+backward step: three times the forward's (counted on ``run``)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        run(wavs)
    return 3.0 * counter.get_total_flops()


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the best of ``repeats`` ``size`` x ``size`` matrix products in ``dtype``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def step_seconds(run: Callable[[torch.Tensor], torch.Tensor], wavs: torch.Tensor, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = run(wavs)
    out.float().mean().backward()
    return time.perf_counter() - start


def counted_step(run: Callable[[torch.Tensor], torch.Tensor], wavs: torch.Tensor, bf16: bool) -> tuple[float, int]:
    """A step's seconds and the page faults (minor: fresh pages the kernel maps and zeroes) it took."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds = step_seconds(run, wavs, bf16)
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def serve(connection: Connection, family: str, name: str, threads: int, wavs: torch.Tensor) -> None:
    """A worker process: builds one implementation, then answers ``(command, args)`` until ``close``."""
    if threads:
        torch.set_num_threads(threads)
    try:
        run = build_implementation(family, name)
    except (ValueError, ImportError) as err:  # transformers without this attention for the family
        connection.send(f"{name} not available: {str(err).split('. ')[0]}")
        return

    def output() -> torch.Tensor:
        with torch.no_grad():
            return run(wavs)

    commands = {
        "output": output,
        "step": lambda bf16: counted_step(run, wavs, bf16),
        "flops": lambda: step_flops(run, wavs),
        "profile": lambda: profile_kinds(run, wavs),
    }
    connection.send("ready")
    while (message := connection.recv())[0] != "close":
        command, args = message
        connection.send(commands[command](*args))


class Worker:
    """One implementation in a spawned process of its own (:func:`serve`)."""

    def __init__(self, family: str, name: str, threads: int, wavs: torch.Tensor) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=serve, args=(child, family, name, threads, wavs), daemon=True)
        self.process.start()
        if not self.connection.poll(600):
            raise SystemExit(f"{family}: the process running {name} did not start")
        self.unavailable = None if (answer := self.connection.recv()) == "ready" else answer

    def __call__(self, command: str, *args):
        self.connection.send((command, args))
        return self.connection.recv()

    def close(self) -> None:
        if self.unavailable is None:
            self.connection.send(("close", ()))
        self.process.join()


# op names (prefixes) -> the kind a --profile row counts them in; attention done as explicit products
# (transformers eager, WavLM's float bias) counts as matrix products and other
OPERATION_KINDS = {
    "matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "convolutions": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution"),
    "attention": ("aten::_scaled_dot_product",),
    "GELU": ("aten::gelu",),
}


def profile_kinds(run: Callable[[torch.Tensor], torch.Tensor], wavs: torch.Tensor, steps: int = 3) -> dict[str, float]:
    """Seconds of an fp32 step's op self time by kind (:data:`OPERATION_KINDS`, the rest as "other"),
    each the median over ``steps`` steps."""
    samples: dict[str, list[float]] = {kind: [] for kind in [*OPERATION_KINDS, "other"]}
    for _ in range(steps):
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            step_seconds(run, wavs, False)
        seconds = dict.fromkeys(samples, 0.0)
        for event in profiler.key_averages():
            kind = next((kind for kind, prefixes in OPERATION_KINDS.items() if event.key.startswith(prefixes)), "other")
            seconds[kind] += event.self_cpu_time_total / 1e6
        for kind, value in seconds.items():
            samples[kind].append(value)
    return {kind: statistics.median(values) for kind, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--families", default="wav2vec2,hubert,wavlm")
    parser.add_argument("--bf16", choices=("auto", "yes", "no"), default="auto",
                        help="also time bf16 autocast (auto: where the CPU has bf16 hardware)")
    parser.add_argument("--profile", action="store_true", help="then print where each fp32 step spends its time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    native = native_bf16(torch.device("cpu"))
    bf16 = args.bf16 == "yes" or (args.bf16 == "auto" and native)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; native bf16: {native}; "
          f"{torch.get_num_threads()} thread(s); batch {args.batch} x {args.seconds:g} s; "
          f"{'fp32 and bf16 autocast' if bf16 else 'fp32'}; median of {args.rounds} interleaved rounds")
    dtypes = {False: torch.float32} | ({True: torch.bfloat16} if bf16 else {})
    peaks = {half: matmul_peak(dtype) for half, dtype in dtypes.items()}
    wavs = torch.randn(args.batch, int(args.seconds * 16000), generator=torch.Generator().manual_seed(0)) * 0.1
    for family in args.families.split(","):
        workers = {name: Worker(family, name, args.threads, wavs) for name in IMPLEMENTATIONS}
        try:
            for name, worker in list(workers.items()):
                if worker.unavailable:
                    print(f"  {family}: {worker.unavailable}")
                    workers.pop(name).close()
            time_family(family, workers, args, bf16, dtypes, peaks)
        finally:
            for worker in workers.values():
                worker.close()


def time_family(family: str, workers: dict[str, Worker], args: argparse.Namespace, bf16: bool,
                dtypes: dict[bool, torch.dtype], peaks: dict[bool, float]) -> None:
    """Checks the outputs equal, times the interleaved rounds and prints the family's rows."""
    reference = workers["audiossl"]("output")
    for name, worker in workers.items():
        difference = (worker("output") - reference).abs().max().item()
        if difference > 1e-3:
            raise SystemExit(f"{family}: {name}'s output differs from audiossl's by {difference:.2e}")
    modes = [(name, False) for name in workers] + ([(name, True) for name in workers] if bf16 else [])
    times: dict[tuple[str, bool], list[float]] = {mode: [] for mode in modes}
    faults: dict[tuple[str, bool], list[int]] = {mode: [] for mode in modes}
    for _ in range(args.warmup):
        for name, half in modes:
            workers[name]("step", half)
    for _ in range(args.rounds):
        for name, half in modes:
            seconds, count = workers[name]("step", half)
            times[name, half].append(seconds)
            faults[name, half].append(count)
        peaks.update({half: max(peak, matmul_peak(dtypes[half])) for half, peak in peaks.items()})
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    fastest_peer = min((mode for mode in medians if mode[0] != "audiossl" and not mode[1]), key=medians.get)
    flops = workers["torchaudio"]("flops")
    print(f"{family}: outputs equal (1e-3); {flops / 1e9:.0f} GFLOP of matrix products a step; fastest peer "
          f"in fp32: {fastest_peer[0]}; matrix-product peak so far (2048 x 2048): " + ", ".join(
              f"{'bf16' if half else 'fp32'} {peak / 1e9:.0f} GFLOP/s" for half, peak in peaks.items()))
    for (name, half), value in medians.items():
        label = f"{name} bf16 autocast" if half else name
        ratios = [mine / peer for mine, peer in zip(times[name, half], times[fastest_peer])]
        ratio, rate = statistics.median(ratios), flops / value
        print(f"  {label:<33} {value:5.2f} s/step   {ratio:4.2f}x the fastest peer's fp32 step "
              f"({1 / ratio:4.2f}x as fast; rounds {min(ratios):4.2f}-{max(ratios):4.2f})   "
              f"{rate / 1e9:3.0f} GFLOP/s = {rate / peaks[half]:3.0%} of peak   "
              f"{statistics.median(faults[name, half]) / 1e3:4.0f}k page faults")
    if args.profile:
        kinds = [*OPERATION_KINDS, "other", "sum"]
        print("  an fp32 step by kind of operation (s):   " + "".join(f"{kind:>16}" for kind in kinds))
        for name, worker in workers.items():
            seconds = worker("profile")
            print(f"  {name:<39}" + "".join(f"{value:16.3f}" for value in [*seconds.values(), sum(seconds.values())]))

if __name__ == "__main__":
    main()
