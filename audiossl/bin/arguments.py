"""argparse types shared by the ``bin/`` entry points: a bad value is a usage error naming the option."""
from __future__ import annotations

import argparse
import shlex


def _int_at_least(text: str, low: int, expected: str) -> int:
    """``text`` as an integer of at least ``low``; else an ArgumentTypeError saying ``expected``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got '{text}'") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1 (a count, a size)."""
    return _int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (a NumPy seed, an order)."""
    return _int_at_least(text, 0, "an integer of 0 or more")


def positive_ints(text: str) -> list[int]:
    """Space-separated integers of at least 1 (``"8 25"``); none for an empty text."""
    return [positive_int(word) for word in text.split()]


def names(text: str) -> list[str]:
    """Space-separated names, at least one (``"test test_unseen"``)."""
    if not text.split():
        raise argparse.ArgumentTypeError("expected one or more space-separated names, got none")
    return text.split()


def positive_float(text: str) -> float:
    """A finite number above 0 (a duration, a scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def shell_words(text: str) -> list[str]:
    """Words quoted as the shell does (``"--partition=gpu --comment='a b'"``)."""
    try:
        return shlex.split(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{str(err).lower()} in {text!r}") from None
