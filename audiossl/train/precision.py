"""Which floating-point precision a run trains in on the machine it runs on.

bf16 autocast pays only where the hardware does bf16 arithmetic: CUDA GPUs that support it,
and CPUs with AMX or AVX512-BF16. Elsewhere torch emulates it: on a 2-core AVX2 CPU a
training update of the small HuBERT took 26x as long in bf16 as in fp32 (``bench/precision.py``).
``auto`` picks bf16 where it is native and fp32 otherwise.
"""
from __future__ import annotations

import torch

from audiossl.errors import ConfigError
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` does bf16 arithmetic in hardware."""
    if device.type == "cuda":  # emulation does not count: it is what auto avoids
        with torch.cuda.device(device):
            return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
                    or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """``bf16``, ``fp16`` or ``fp32`` for a run configured with ``requested`` on ``device``.

    ``auto`` becomes bf16 where it is native, fp32 elsewhere. An explicit bf16 is kept where it
    is emulated (it still works, many times slower: see :func:`emulation_warning`).
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not '{requested}'")
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return requested


def emulation_warning(precision: str, device: torch.device) -> str | None:
    """The warning a run in ``precision`` on ``device`` deserves, or None: bf16 where it is emulated."""
    if precision == "bf16" and not native_bf16(device):
        return (f"precision bf16 on a {device.type.upper()} without native bf16 (no AMX or AVX512-BF16 on a CPU): "
                "torch emulates it, many times slower than fp32; precision auto picks fp32 here")
    return None
