"""Errors meant for the user as one line, and the checks that raise them.

A :class:`ConfigError` is a configuration that cannot run: the command prints its message as
``sparsetrain: error: <message>`` and exits with code 2 before any worker starts. Messages name
the key, the value and what is allowed (``ratio=1.5 is not allowed: use a number > 0 and <= 1``).
"""

from __future__ import annotations

import difflib
import math
import typing
from typing import Any

__all__ = ["ConfigError", "require", "check_number", "check_value", "closest", "describe_type"]


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


def closest(key: str, known: list[str], prefix: str = "") -> str:
    """`` (did you mean <prefix>x?)`` for the known key x nearest to ``key``, or ``""``."""
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return f" (did you mean {prefix}{match[0]}?)" if match else ""


def describe_type(hint: Any) -> str:
    """What a value of type ``hint`` is, for messages: 'true or false', 'an integer', ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return f"null or {describe_type(inner[0])}" if len(inner) == 1 else "a value of the key's type"
    if origin in (list, tuple, typing.List):
        return f"a list of {describe_type(args[0]).removeprefix('a ').removeprefix('an ')}s" if args else "a list"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, "a value of the key's type")


def check_value(key: str, value: Any, hint: Any) -> None:
    """Raise a ConfigError unless ``value`` is strictly of type ``hint`` (no bool for a number, no
    number for a bool, no float for an integer)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        if value is None:
            return
        if len(inner) == 1:
            hint, origin, args = inner[0], typing.get_origin(inner[0]), typing.get_args(inner[0])
    if origin in (list, tuple, typing.List):
        ok = isinstance(value, (list, tuple)) and (
            not args or all(_is_instance(v, args[0]) for v in value)
        )
    else:
        ok = _is_instance(value, hint)
    require(ok, f"{key}={value!r} is not allowed: use {describe_type(hint)}")


def _is_instance(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:  # a number is a fine string (a rate of 10 is refused by its own check, with its form)
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    return True
