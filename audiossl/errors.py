"""The errors a user can cause and fix: bad input, config, data or files.

Every such error derives from :class:`UserError`; the ``bin/`` entry points print its message
as one line and exit 1. Anything else is a bug (or out of memory) and keeps its traceback.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Callable


class UserError(Exception):
    """An error in what the user gave (a file, a config, a data dir); the message names it."""


class ConfigError(UserError, ValueError):
    """A bad run config, model config or override; the message names the key."""


class InteropError(UserError, ValueError):
    """A foreign config, checkpoint or state dict that audiossl cannot represent exactly; names what."""


def reports_user_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a ``bin/`` entry point: a :class:`UserError` or ``OSError`` prints ``error: <message>`` on
    stderr and returns 1; any other exception keeps its traceback."""
    @functools.wraps(main)
    def entry_point(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except (UserError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return entry_point
