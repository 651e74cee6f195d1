"""Kaldi fbank extraction side by side: audiossl, soundfile + torchaudio, fairseq2's native pipeline.

Each path decodes wav files and computes 80-bin Kaldi filterbanks (dither 0). Audio is
synthesized offline into a temporary directory with the mini_tts engines (flite, espeak-ng,
sox). Speed is the best of ``--repeats`` passes over all files; accuracy is the max and mean
absolute difference from ``torchaudio.compliance.kaldi.fbank`` on soundfile-decoded audio.

The process runs on ``--threads`` cores (it restarts itself pinned to them): fairseq2's pipeline
keeps a second thread busy even with one parallel call, so on an unpinned machine it would be
timed on two cores against the others' one. The ``cpu/wall`` column shows the cores each used.

    python bench/fbank.py [--num-utts N] [--repeats R] [--threads T]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import fairseq2
import soundfile
import torch
import torchaudio.compliance.kaldi as kaldi_compliance
from fairseq2.data.audio import AudioDecoder, WaveformToFbankConverter
from fairseq2.data.data_pipeline import FileMapper, read_sequence

from audiossl.audio import load_entry
from audiossl.features.kaldi import INT16_SCALE, FeatureConfig, FeatureExtractor
from speech import synthesize

NUM_MEL_BINS = 80
AUDIOSSL = "audiossl (load_entry + FeatureExtractor)"
REFERENCE = "soundfile + torchaudio kaldi.fbank"
SPEAKERS = ("flite_kal16", "flite_slt", "flite_rms", "espeak_m3", "espeak_f2")
SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "She sells sea shells by the sea shore every summer morning.",
    "A journey of a thousand miles begins with a single step.",
    "The committee will meet again next week to discuss the budget.",
    "Bright stars filled the clear night sky above the quiet village.",
    "He carried the heavy boxes up the narrow stairs without a word.",
    "Fresh bread from the bakery smells wonderful on a cold day.",
    "They planted tall trees along the road to shade the travellers.",
)

Extract = Callable[[list[Path]], list[torch.Tensor]]


def audiossl_fbank() -> Extract:
    """``audiossl.audio.load_entry`` + ``audiossl.features.kaldi.FeatureExtractor`` (built once, as
    fairseq2's decoder and converter are)."""
    extractor = FeatureExtractor(FeatureConfig.from_kaldi_args("fbank", [f"--num-mel-bins={NUM_MEL_BINS}"]))

    def run(paths: list[Path]) -> list[torch.Tensor]:
        return [torch.from_numpy(extractor(load_entry(str(p))[0])) for p in paths]

    return run


def torchaudio_fbank(paths: list[Path]) -> list[torch.Tensor]:
    """``soundfile.read`` + ``torchaudio.compliance.kaldi.fbank`` (the reference)."""
    feats = []
    for p in paths:
        samples, rate = soundfile.read(str(p), dtype="float32")
        wav = torch.from_numpy(samples).unsqueeze(0) * INT16_SCALE
        feats.append(kaldi_compliance.fbank(wav, num_mel_bins=NUM_MEL_BINS, dither=0.0, sample_frequency=rate))
    return feats


def fairseq2_fbank(num_parallel_calls: int) -> Extract:
    """fairseq2's data pipeline: ``FileMapper`` → ``AudioDecoder`` → ``WaveformToFbankConverter``."""
    decoder = AudioDecoder(keepdim=True, dtype=torch.float32)
    to_fbank = WaveformToFbankConverter(num_mel_bins=NUM_MEL_BINS, waveform_scale=INT16_SCALE,
                                        channel_last=True, dtype=torch.float32)

    def run(paths: list[Path]) -> list[torch.Tensor]:
        pipeline = (read_sequence([str(p) for p in paths])
                    .map(FileMapper())
                    .map([decoder, to_fbank], selector="data", num_parallel_calls=num_parallel_calls)
                    .and_return())
        return [example["data"]["fbank"] for example in pipeline]

    return run


def abs_diff(feats: list[torch.Tensor], reference: list[torch.Tensor]) -> tuple[float, float]:
    """``(max, mean)`` absolute difference over all utterances' features."""
    diffs = []
    for f, r in zip(feats, reference):
        if f.shape != r.shape:
            raise RuntimeError(f"feature shapes differ: {tuple(f.shape)} vs {tuple(r.shape)}")
        diffs.append((f - r).abs().flatten())
    diff = torch.cat(diffs)
    return float(diff.max()), float(diff.mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-utts", type=int, default=40, help="utterances to synthesize (default 40)")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes per path; the best counts (default 10)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads, fairseq2 num_parallel_calls and the cores the process is "
                             "pinned to (default 1)")
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > args.threads:  # pinned before any library starts its threads
        os.sched_setaffinity(0, cores[:args.threads])
        os.execv(sys.executable, [sys.executable, *sys.argv])
    missing = [tool for tool in ("flite", "espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"needs {', '.join(missing)} to synthesize the audio")
    torch.set_num_threads(args.threads)
    extractors: dict[str, Extract] = {
        AUDIOSSL: audiossl_fbank(),
        REFERENCE: torchaudio_fbank,
        f"fairseq2 {fairseq2.__version__} pipeline": fairseq2_fbank(args.threads),
    }

    with tempfile.TemporaryDirectory(prefix="bench_fbank_") as tmp:
        start = time.perf_counter()
        wavs = synthesize(Path(tmp), args.num_utts, SPEAKERS, SENTENCES)
        audio_seconds = sum(soundfile.info(str(p)).duration for p in wavs)
        print(f"{len(wavs)} utterances, {audio_seconds:.1f} s of 16 kHz audio "
              f"(synthesized in {time.perf_counter() - start:.1f} s); {NUM_MEL_BINS} mel bins, dither 0; "
              f"{args.threads} thread(s) on {args.threads} core(s); best of {args.repeats} passes")
        best = {name: float("inf") for name in extractors}
        cpu = {name: 0.0 for name in extractors}
        wall = {name: 0.0 for name in extractors}
        feats: dict[str, list[torch.Tensor]] = {}
        for _ in range(args.repeats):
            for name, run in extractors.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                feats[name] = run(wavs)
                seconds = time.perf_counter() - start
                best[name] = min(best[name], seconds)
                wall[name] += seconds
                cpu[name] += time.process_time() - start_cpu

    reference = feats[REFERENCE]
    base = best[AUDIOSSL]
    width = max(map(len, extractors))
    print(f"\n{'path':<{width}}  {'utt/s':>8}  {'audio s/s':>10}  {'vs audiossl':>11}  {'cpu/wall':>8}  "
          f"{'max |diff|':>10}  {'mean |diff|':>11}   (diff: vs torchaudio)")
    for name in extractors:
        worst, mean = abs_diff(feats[name], reference)
        print(f"{name:<{width}}  {len(wavs) / best[name]:8.1f}  {audio_seconds / best[name]:10.1f}  "
              f"{base / best[name]:10.2f}x  {cpu[name] / wall[name]:8.2f}  {worst:10.2e}  {mean:11.2e}")


if __name__ == "__main__":
    main()
