"""Resolving a run config's ``model`` section to a family's named size with changes."""
from __future__ import annotations

import typing
from typing import Any

from audiossl.config_fields import checked_value
from audiossl.errors import ConfigError
from audiossl.models.components import ModelConfig
from audiossl.registry import get_family, named_configs, pretraining_families

SECTION_KEYS = ("family", "size", "args", "set")


def merge_settings(base: dict, changes: dict, where: str) -> dict:
    """``base`` with the (nested) ``changes``; a key ``base`` lacks is an error naming ``where``."""
    out = dict(base)
    for key, value in changes.items():
        if key not in out:
            raise ConfigError(f"{where}: unknown key '{key}'; known: {sorted(out)}")
        out[key] = merge_settings(out[key], value, f"{where}.{key}") if isinstance(value, dict) else value
    return out


def model_config_from_section(section: dict[str, Any]) -> ModelConfig:
    """The config a run's ``model`` section describes.

    ``{"family": "hubert", "size": "small", "args": {"frontend": "fbank"}, "set": {"num_classes": 100}}``:
    the family's named size (``NAMED_CONFIGS[size](**args)``), then the ``set`` fields changed.
    Unknown keys, families, sizes and arguments are :class:`~audiossl.errors.ConfigError` listing the known ones.
    """
    if not isinstance(section, dict):
        raise ConfigError(f"model: expected a mapping such as {{family: hubert, size: small}}, got {section!r}")
    unknown = sorted(set(section) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(f"model: unknown keys {unknown}; known: {list(SECTION_KEYS)}")
    name = section.get("family")
    pretraining = pretraining_families()
    if name not in pretraining:
        raise ConfigError(f"model.family must be one of {pretraining}, not {name!r}")
    named = named_configs(name)
    size = section.get("size", "base")
    if size not in named:
        raise ConfigError(f"model.size must be one of {sorted(named)} for {name}, not {size!r}")
    args = section.get("args") or {}
    accepted = typing.get_type_hints(named[size])
    accepted.pop("return", None)
    if not isinstance(args, dict):
        raise ConfigError(f"model.args: expected a mapping of arguments, got {args!r}")
    wrong = sorted(set(args) - set(accepted))
    if wrong:
        raise ConfigError(f"model.args: unknown arguments {wrong} of {name} size {size!r}; known: {sorted(accepted)}")
    config = named[size](**{key: checked_value(value, accepted[key], f"model.args.{key}") for key, value in args.items()})
    if section.get("set") is not None:
        if not isinstance(section["set"], dict):
            raise ConfigError(f"model.set: expected a mapping of config keys to change, got {section['set']!r}")
        config = get_family(name).config_class.from_dict(merge_settings(config.to_dict(), section["set"], "model.set"))
    return config
