"""A forward+backward step of BASE-size wav2vec 2.0, HuBERT and WavLM: audiossl against torchaudio and transformers.

    python bench/encoder_step.py [--rounds 3] [--batch 2] [--seconds 4] [--threads 0] [--families wav2vec2,hubert,wavlm]

For each family, one randomly initialised audiossl BASE model (waveform front end, layer drop 0)
is converted to torchaudio's ``Wav2Vec2Model`` and to transformers' model with eager and with sdpa
attention (where transformers has it), so every peer holds the same weights. Their last hidden
states on the same batch are checked equal (1e-3) before any timing. A step is the forward pass
in eval mode (no dropout, so the outputs compare) and the backward of the mean last hidden state.
The implementations are interleaved within each round; the median over rounds is printed, with
each one's time over the fastest peer's (below 1: audiossl is faster). fp32 only.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import transformers

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


def implementations(family: str) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """name -> ``run(wavs (B, S)) -> last hidden state (B, T, D)``, every model with the same weights."""
    config_class, build = BUILDERS[family]
    torch.manual_seed(0)
    ours = build(config_class.base()).with_layer_drop(0.0).encoder_only().eval()
    runs = {"audiossl": lambda wavs: ours.extract_features(wavs, full_lengths(wavs))[0][-1]}
    audio = to_torchaudio(ours).eval()
    runs["torchaudio"] = lambda wavs: audio(wavs)[0]
    entry = HF_CLASSES[family]
    converters = HF_FAMILIES[family]
    hf_state = converters.state_dict_to_hf(ours.state_dict())
    for attention in ("eager", "sdpa"):
        try:
            config = entry.config_class(**converters.config_to_hf(ours.config), attn_implementation=attention)
            hf = entry(config).eval()
        except (ValueError, ImportError) as err:
            print(f"  {family}: transformers {attention} attention not available: {str(err).split('. ')[0]}")
            continue
        hf.load_state_dict(hf_state)
        runs[f"transformers {attention}"] = lambda wavs, hf=hf: hf(wavs).last_hidden_state
    return runs


def step_seconds(run: Callable[[torch.Tensor], torch.Tensor], wavs: torch.Tensor) -> float:
    start = time.perf_counter()
    run(wavs).mean().backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--families", default="wav2vec2,hubert,wavlm")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}; {torch.get_num_threads()} thread(s); "
          f"batch {args.batch} x {args.seconds:g} s; fp32; median of {args.rounds} interleaved rounds")
    wavs = torch.randn(args.batch, int(args.seconds * 16000), generator=torch.Generator().manual_seed(0)) * 0.1
    for family in args.families.split(","):
        runs = implementations(family)
        with torch.no_grad():
            reference = runs["audiossl"](wavs)
            for name, run in runs.items():
                difference = (run(wavs) - reference).abs().max().item()
                if difference > 1e-3:
                    raise SystemExit(f"{family}: {name}'s output differs from audiossl's by {difference:.2e}")
        times = {name: [] for name in runs}
        for name, run in runs.items():  # warm-up
            step_seconds(run, wavs)
        for _ in range(args.rounds):
            for name, run in runs.items():
                times[name].append(step_seconds(run, wavs))
        medians = {name: statistics.median(values) for name, values in times.items()}
        fastest_peer = min(value for name, value in medians.items() if name != "audiossl")
        print(f"{family}: outputs equal (1e-3)")
        for name, value in medians.items():
            print(f"  {name:<22} {value:7.2f} s/step   {value / fastest_peer:5.2f}x the fastest peer")


if __name__ == "__main__":
    main()
