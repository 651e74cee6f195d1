"""Resolving a run config's ``model`` section to a family's named size with changes."""
from __future__ import annotations

import importlib
from typing import Any

from audiossl.registry import FAMILIES, get_family


def _merge(base: dict, changes: dict, where: str) -> dict:
    out = dict(base)
    for key, value in changes.items():
        if key not in out:
            raise KeyError(f"{where}: unknown key '{key}'; known: {sorted(out)}")
        out[key] = _merge(out[key], value, f"{where}.{key}") if isinstance(value, dict) else value
    return out


def model_config_from_section(section: dict[str, Any]):
    """The config a run's ``model`` section describes.

    ``{"family": "hubert", "size": "small", "args": {"frontend": "fbank"}, "set": {"num_classes": 100}}``:
    the family's named size (``NAMED_CONFIGS[size](**args)``), then the ``set`` fields changed.
    Returns ``(family_name, config)``.
    """
    name = section.get("family")
    if name not in FAMILIES:
        raise KeyError(f"model.family must be one of {sorted(FAMILIES)}, not {name!r}")
    named = importlib.import_module(FAMILIES[name][0]).NAMED_CONFIGS
    size = section.get("size", "base")
    if size not in named:
        raise KeyError(f"model.size must be one of {sorted(named)} for {name}, not {size!r}")
    config = named[size](**section.get("args", {}))
    if section.get("set"):
        config = get_family(name).config_class.from_dict(_merge(config.to_dict(), section["set"], "model.set"))
    return name, config
