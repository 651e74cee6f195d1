"""Dataclass configs from plain dicts (YAML, JSON, ``--set`` overrides), each value checked against
its field's annotation, so a wrong type is a :class:`~audiossl.errors.ConfigError` naming the key
rather than a traceback deep in a model or the trainer."""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from audiossl.errors import ConfigError


def dataclass_from_dict(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` with every value checked (and lists made tuples where the field is a tuple).

    A nested dataclass field takes a dict; the keys it leaves out keep that field's default
    (its ``default_factory``'s values). Unknown keys are errors listing the known ones.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        kind = hints[name]
        default = fields[name].default_factory
        if _is_dataclass_type(kind) and default is not dataclasses.MISSING:
            if value is None:  # an empty section (its keys all commented out) keeps the defaults
                value = {}
            if isinstance(value, dict):
                value = {**plain(dataclasses.asdict(default())), **value}
        values[name] = checked_value(value, kind, f"{where}.{name}")
    return cls(**values)


def checked_value(value: Any, kind: Any, where: str) -> Any:
    """``value`` as a ``kind`` (an annotation: int, float, str, bool, tuples, lists, dicts, unions
    with None, dataclasses); numbers also come as text (YAML 1.1 reads ``2e-3`` as a string)."""
    converted = _convert(value, kind, where)
    if converted is _WRONG:
        hint = ""
        if isinstance(value, bool) and _convert(str(value), kind, where) is not _WRONG:
            hint = " (YAML reads unquoted yes, no, on, off, true and false as booleans: quote the word, e.g. 'no')"
        raise ConfigError(f"{where}: expected {_describe(kind)}, got {value!r}{hint}")
    return converted


_WRONG = object()


def _convert(value: Any, kind: Any, where: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None if type(None) in args else _WRONG
        for option in args:
            converted = _convert(value, option, where) if option is not type(None) else _WRONG
            if converted is not _WRONG:
                return converted
        return _WRONG
    if _is_dataclass_type(kind):
        return dataclass_from_dict(kind, value, where) if isinstance(value, dict) else _WRONG
    if kind is bool:
        return value if isinstance(value, bool) else _WRONG
    if kind is int:
        return _integer(value)
    if kind is float:
        return _number(value)
    if kind is str:
        return value if isinstance(value, str) else _WRONG
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return _WRONG
        item_kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_kinds) != len(value):
            return _WRONG
        return tuple(checked_value(item, item_kind, f"{where}[{i}]")
                     for i, (item, item_kind) in enumerate(zip(value, item_kinds)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return _WRONG
        return [checked_value(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            return _WRONG
        return {checked_value(key, args[0], where): checked_value(item, args[1], f"{where}.{key}")
                for key, item in value.items()}
    raise TypeError(f"{where}: no check for the annotation {kind!r}")  # a field type this module lacks


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return _WRONG
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return _WRONG
    return _WRONG


def _integer(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _number(value)  # 1e3 (text to YAML 1.1) or 1000.0 are whole numbers too
    return int(number) if number is not _WRONG and number.is_integer() else _WRONG


def _is_dataclass_type(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _describe(kind: Any) -> str:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if option is type(None) else _describe(option) for option in args)
    if _is_dataclass_type(kind):
        return f"a mapping of {kind.__name__} keys"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} ({', '.join(_describe(arg) for arg in args)})"
    if origin is list:
        return f"a list of {_describe(args[0])}"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(kind, repr(kind))


def differences(then: dict, now: dict, prefix: str = "", one_sided: bool = True) -> list[tuple[str, Any, Any]]:
    """``(dotted key, then, now)`` of each value that differs between two nested dicts (of configs,
    records); a key only one has counts as None on the other side, or, without ``one_sided``, is
    not compared (e.g. written by another version)."""
    keys = sorted(set(then) | set(now), key=str) if one_sided else [key for key in then if key in now]
    found = []
    for key in keys:
        name = f"{prefix}.{key}" if prefix else str(key)
        old, new = then.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += differences(old, new, name, one_sided)
        elif old != new:
            found.append((name, old, new))
    return found


def plain(value: Any) -> Any:
    """A JSON-like copy: tuples become lists (what a config's ``to_dict`` gives)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value
