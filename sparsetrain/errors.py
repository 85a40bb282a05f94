"""Errors meant for the user as one line, and the checks that raise them.

A :class:`ConfigError` is a configuration that cannot run: the command prints its message as
``sparsetrain: error: <message>`` and exits with code 2 before any worker starts. Messages name
the key, the value and what is allowed (``ratio=1.5 is not allowed: use a number > 0 and <= 1``).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["ConfigError", "require", "check_number"]


class ConfigError(ValueError):
    """A configuration value that cannot run; the message is meant for the user as it is."""


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def check_number(
    key: str,
    value: Any,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    integer: bool = False,
    nullable: bool = False,
) -> None:
    """Raise a :class:`ConfigError` naming ``key`` unless ``value`` is a number in [low, high]
    ((low, high] if ``low_open``), an integer if ``integer``, or None if ``nullable``. Booleans are
    not numbers here."""
    if nullable and value is None:
        return
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    bound = f"> {_number(low)}" if low_open else f">= {_number(low)}"
    allowed = ("null or " if nullable else "") + ("an integer " if integer else "a number ") + bound
    allowed += f" and <= {_number(high)}" if high != math.inf else ""
    require(ok, f"{key}={value!r} is not allowed: use {allowed}")
