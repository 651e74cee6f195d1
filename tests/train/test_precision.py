from pathlib import Path

import pytest
import torch

from audiossl.train import precision
from audiossl.train.precision import emulation_warning, native_bf16, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_takes_bf16_only_where_native(monkeypatch, native, expected):
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    assert resolve_precision("auto", CPU) == expected


def test_explicit_bf16_is_kept_and_warned_about_only_where_emulated(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert resolve_precision("bf16", CPU) == "bf16"
    assert "emulates" in emulation_warning("bf16", CPU)
    assert emulation_warning("fp32", CPU) is None
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert emulation_warning("bf16", CPU) is None


@pytest.mark.parametrize("requested", ["fp32", "fp16"])
def test_explicit_precisions_pass_through(requested):
    assert resolve_precision(requested, CPU) == requested


def test_unknown_precision_names_the_choices():
    with pytest.raises(ValueError, match="auto, bf16, fp16, fp32"):
        resolve_precision("int8", CPU)


def test_cpu_answer_matches_the_linux_cpu_flags():
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert native_bf16(CPU) == bool(flags & {"amx_tile", "avx512_bf16"})
