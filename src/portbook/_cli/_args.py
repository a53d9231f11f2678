"""Argument types for every command: numbers read the same strict way everywhere.

argparse's ``type=float`` takes ``nan``, ``inf`` and ``1e308``, and ``int``
takes Unicode digits (``٩`` is 9) and numbers of any length; a bad value
then surfaces later as a hang, an overflow or a signal nobody meant. These
types refuse all of that at parse time, with argparse's one-line usage error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["number", "seconds", "whole"]


def seconds(low: float, high: float, *, zero: bool = True) -> Callable[[str], float]:
    """A number of seconds in ``low``..``high`` (``zero=False``: above 0)."""
    return number(low, high, zero=zero, what="a number of seconds")


def number(
    low: float, high: float, *, zero: bool = True, what: str = "a number"
) -> Callable[[str], float]:
    """A finite decimal number in ``low``..``high``, in ASCII (``zero=False``: above 0)."""

    def parse(text: str) -> float:
        try:
            value = float(text) if text.strip().isascii() and len(text) <= 32 else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise _type_error(f"not {what}: {text!r}")
        if value < low or value > high or (not zero and value == 0):
            bound = "above 0" if not zero and low == 0 else f"at least {low:g}"
            raise _type_error(f"must be {bound} and at most {high:g}, not {text}")
        return value

    parse.__name__ = "number"  # what argparse names in "invalid number value"
    return parse


def whole(low: int, high: int) -> Callable[[str], int]:
    """A whole number in ``low``..``high``, written in ASCII digits."""

    def parse(text: str) -> int:
        digits = text.strip()
        body = digits[1:] if digits[:1] in "+-" else digits
        if not (body.isascii() and body.isdigit() and len(body) <= 18):
            raise _type_error(f"not a whole number: {text!r}")
        value = int(digits)
        if not low <= value <= high:
            raise _type_error(f"must be {low} to {high}, not {value}")
        return value

    parse.__name__ = "number"
    return parse


def _type_error(message: str) -> Exception:
    """argparse's error for a value its type refuses (argparse is loaded: it is parsing)."""
    import argparse

    return argparse.ArgumentTypeError(message)
