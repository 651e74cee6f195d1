"""Model families by name: one plain dict, imported lazily (no import side effects).

Each family module exposes a config class with ``from_dict``/``to_dict`` and a builder
``build(config) -> nn.Module``; checkpoints store the family name and the config dict.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

# family name -> (module, config class, builder function)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "hubert": ("audiossl.models.hubert", "HubertConfig", "build_hubert"),
    "ctc": ("audiossl.models.ctc", "CtcConfig", "build_ctc"),
}


@dataclass(frozen=True)
class Family:
    name: str
    config_class: type
    build: Callable[[Any], nn.Module]


def get_family(name: str) -> Family:
    """The family registered as ``name``; an unknown name lists the known ones."""
    if name not in FAMILIES:
        raise KeyError(f"unknown model family '{name}'; known: {', '.join(sorted(FAMILIES))}")
    module_name, config_name, build_name = FAMILIES[name]
    module = importlib.import_module(module_name)
    return Family(name, getattr(module, config_name), getattr(module, build_name))


def list_models() -> dict[str, list[str]]:
    """Family name -> its named sizes (``NAMED_CONFIGS`` of the family module)."""
    return {name: sorted(getattr(importlib.import_module(FAMILIES[name][0]), "NAMED_CONFIGS", {}))
            for name in FAMILIES}
