"""Holding what a sandboxed child sends back to what its target can return.

A child runs untrusted code, and that code can write the result envelope itself. JSON
already gives exact built-in types (no ``str`` subclass with its own ``__eq__`` crosses
the pipe); these helpers do the rest for a target's ``check`` (see
:meth:`llmatic.sandbox.Sandbox.run`): known keys only, numbers finite and in range,
strings short. Each raises :class:`ValueError` with one line saying what is wrong, and
returns a fresh value, so nothing of the child's object survives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def exact_keys(value: Any, required: Iterable[str], optional: Iterable[str] = ()) -> dict:
    """``value`` as a dict with all of ``required``, perhaps some of ``optional``, no other key."""
    required, optional = set(required), set(optional)
    if type(value) is not dict:
        raise ValueError(f"expected an object, got {type(value).__name__}")
    keys = set(value)
    if not required <= keys or not keys <= required | optional:
        missing, extra = sorted(required - keys), sorted(keys - required - optional)
        raise ValueError(f"unexpected keys (missing {missing}, extra {extra[:5]})")
    return dict(value)


def number(value: Any, *, low: float = -math.inf, high: float = math.inf) -> float:
    """A finite number (not a bool) in ``[low, high]``, as a float."""
    if type(value) not in (int, float):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    result = float(value)
    if not (math.isfinite(result) and low <= result <= high):
        raise ValueError(f"number {result!r} outside [{low}, {high}]")
    return result


def text(value: Any, *, max_chars: int) -> str:
    """A string of at most ``max_chars`` characters."""
    if type(value) is not str:
        raise ValueError(f"expected a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise ValueError(f"string of {len(value)} characters, over {max_chars}")
    return str(value)
