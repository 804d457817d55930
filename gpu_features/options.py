"""Command-line option values, checked where argparse parses them: one sentence naming the option, exit 2.

Every option of ``gpu-features`` and ``python -m train`` takes its value through one of
these ``type=`` hooks, so a bad value never reaches the library (where it would be blamed on a
file, or fail later as a traceback) and an empty value never silently means the default:

- :func:`count` integers in a range (``1e6`` is accepted where it is a whole number);
- :func:`number` finite floats in a range (``nan``, ``inf`` and values outside it refused);
- :func:`character` one character (a CSV delimiter);

Text values need no hook: :class:`OneLineParser` refuses an empty value of any option after
parsing (so a new text option is covered without a row of code), and prints argparse's refusals
as one line (``error: PROG: argument --x: why; see `PROG --help`.``) instead of a usage block,
with control characters escaped.
Ranges that belong to a config (``FeatureConfig``, ``TrainConfig``) stay in the config, which
is the one place that knows them; these hooks only refuse what is never a number or a value.
"""
from __future__ import annotations

import argparse
import math
import re

from .errors import printable

INT64_MAX = (1 << 63) - 1
_INT = re.compile(r"[+-]?\d[\d_]*")


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose refusals are one line and exit 2 (sub-parsers inherit the class)."""

    def error(self, message: str):
        self.exit(2, f"error: {printable(self.prog)}: {printable(message)}; see `{printable(self.prog)} --help`.\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            if action.type is character:  # one character, which may be a tab or a space
                continue
            if _has_empty(getattr(namespace, action.dest, None)):
                name = "/".join(action.option_strings) or action.dest
                self.error(f"argument {name}: an empty value is not allowed (it would not mean the default); "
                           "give a value or leave the option out")
        return namespace, extras


def _has_empty(value) -> bool:
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple)):
        return any(_has_empty(v) for v in value)
    return False


def _describe(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    """``1 .. 64``, ``>= 1``, ``0 < x < 1``: the allowed range in words."""
    show = (lambda v: f"{v:,}") if isinstance(lo if lo is not None else hi, int) else (lambda v: f"{v:g}")
    left = None if lo is None else f"{show(lo)} {'<' if lo_open else '<='} x"
    if hi is None or hi == INT64_MAX:
        return f"x {'>' if lo_open else '>='} {show(lo)}" if lo is not None else "any number"
    if left is None:
        return f"x {'<' if hi_open else '<='} {show(hi)}"
    return f"{left} {'<' if hi_open else '<='} {show(hi)}"


def count(lo: int | None = None, hi: int | None = INT64_MAX, what: str = "a whole number"):
    """A ``type=`` hook: an integer in ``lo .. hi`` (either end may be None). ``1e6`` and ``1_000_000``
    are read as 1,000,000; ``1.5``, ``nan`` and ``inf`` are refused."""
    hi = INT64_MAX if hi is None else hi

    def parse(value: str) -> int:
        text = str(value).strip()
        if _INT.fullmatch(text):
            n = int(text)
        else:
            try:
                x = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{value!r} is not {what}") from None
            if not math.isfinite(x) or x != int(x):
                raise argparse.ArgumentTypeError(f"{value!r} is not {what}")
            n = int(x)
        if (lo is not None and n < lo) or n > hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {_describe(lo, hi)}")
        return n

    parse.__name__ = "count"
    return parse


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    """A ``type=`` hook: a finite float in the range (``lo_open``/``hi_open``: the end itself excluded)."""

    def parse(value: str) -> float:
        try:
            x = float(str(value).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"{value} is not a finite number")
        below = lo is not None and (x <= lo if lo_open else x < lo)
        above = hi is not None and (x >= hi if hi_open else x > hi)
        if below or above:
            raise argparse.ArgumentTypeError(f"{value} is out of range; allowed: {_describe(lo, hi, lo_open, hi_open)}")
        return x

    parse.__name__ = "number"
    return parse


def character(value: str) -> str:
    """A ``type=`` hook: exactly one character (a CSV delimiter: ``;``, ``|``, a tab typed as ``$'\\t'``)."""
    if not value.strip() and len(value) != 1:  # one space or tab is a delimiter; more is an empty value
        raise argparse.ArgumentTypeError("an empty value is not allowed (it would not mean the default); give a "
                                         "value or leave the option out")
    if len(value) != 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not one character; give one, like ';' or '|'")
    return value


__all__ = ["INT64_MAX", "OneLineParser", "character", "count", "number"]
