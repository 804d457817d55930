"""Chronological train / val / test splits, by fractions of bars or by dates.

A split is a half-open time range ``[start, end)`` in int64 ns; the three
ranges tile the time axis, so every bar belongs to exactly one split by its
timestamp, and every symbol is cut at the same instants (no symbol's test
period leaks into another's training period). Fractions are turned into
boundary timestamps once, from the sorted timestamps of all bars
(``boundary = t_sorted[floor(f * n)]``), and recorded in the manifest; a
window belongs to a split only if all of its K bars do.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from .errors import GpuFeaturesError

SPLIT_NAMES = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.9, 0.05, 0.05)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_NS_MIN, _NS_MAX = -(1 << 63), (1 << 63) - 1  # the int64 nanosecond range of stored times (1677 .. 2262)


class SplitError(GpuFeaturesError):
    """A split specification is malformed."""


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.9,0.05,0.05"`` -> fractions; three non-negative numbers summing to 1."""
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise SplitError(f"--split-fractions {text!r} must be three numbers like 0.9,0.05,0.05.") from None
    return check_fractions(parts)


def check_fractions(parts) -> tuple[float, float, float]:
    parts = tuple(float(x) for x in parts)
    if len(parts) != 3 or any(not np.isfinite(x) or x < 0 for x in parts) or abs(sum(parts) - 1.0) > 1e-9:
        raise SplitError(f"split fractions {parts} must be three non-negative numbers (train, val, test) "
                         "that sum to 1, like 0.9,0.05,0.05.")
    return parts  # type: ignore[return-value]


def parse_time(item, what: str = "time") -> int:
    """An ISO 8601 date or time (UTC unless it says otherwise), or int ns, as int64 ns since the epoch.

    Raises:
        SplitError: not ISO 8601, or outside the int64 nanosecond range (1677 .. 2262) a store holds.
    """
    if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
        ns = int(item)
    else:
        try:
            t = dt.datetime.fromisoformat(str(item).strip())
        except ValueError:
            raise SplitError(f"{what} {item!r} is not an ISO 8601 date or time (like 2023-01-01).") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.timezone.utc)
        delta = t - _EPOCH
        ns = (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if not _NS_MIN <= ns <= _NS_MAX:
        raise SplitError(f"{what} {item!r} is outside 1677-09-22 .. 2262-04-11 (UTC), the times a store's "
                         "int64 nanosecond timestamps can hold; give a date inside that range.")
    return ns


def parse_dates(text) -> tuple[int, int]:
    """``"2023-01-01,2023-07-01"`` (UTC) -> two increasing ns timestamps: val start, test start."""
    items = text.split(",") if isinstance(text, str) else list(text)
    if len(items) != 2:
        raise SplitError(f"--split-dates {text!r} must be two dates, val start and test start, "
                         "like 2023-01-01,2023-07-01.")
    out = [parse_time(item, "split date") for item in items]
    if out[0] >= out[1]:
        raise SplitError(f"split dates {items} must increase: val starts before test.")
    return out[0], out[1]


def resolve(spec, timestamps: np.ndarray) -> dict:
    """Turn a split spec into the manifest's ``splits`` record (boundaries fixed in ns).

    Args:
        spec: None (default fractions), ``{"fractions": [...]}`` or ``{"dates": [...]}``.
        timestamps: ``[n] int64`` timestamps of all bars (no full sort: :func:`order_statistics`).

    Returns:
        ``{"method", "fractions" | "dates", "boundaries": [[start, end], ...]}``
        with ``start``/``end`` ns or None (open).
    """
    spec = {"fractions": DEFAULT_FRACTIONS} if spec is None else dict(spec)
    if set(spec) == {"fractions"}:
        t = np.asarray(timestamps, dtype=np.int64)
        return _record(spec, order_statistics(t, _fraction_ranks(spec, len(t))))
    return _record(spec, None)


def resolve_counted(spec, times: np.ndarray, counts: np.ndarray) -> dict:
    """:func:`resolve` from the distinct timestamps and how many bars carry each.

    The distributed build merges these per task, so the driver never holds every
    bar's timestamp, and the boundaries are those :func:`resolve` gives for all bars.

    Args:
        spec: as for :func:`resolve`.
        times: ``[u] int64`` distinct timestamps, increasing; counts: ``[u] int64`` bars at each.
    """
    spec = {"fractions": DEFAULT_FRACTIONS} if spec is None else dict(spec)
    if set(spec) == {"fractions"}:
        times = np.asarray(times, dtype=np.int64)
        ends = np.cumsum(np.asarray(counts, dtype=np.int64))  # bars at or before each distinct time
        n = int(ends[-1]) if len(ends) else 0
        # the k-th smallest timestamp of all bars
        cuts = [int(times[np.searchsorted(ends, k, side="right")]) if k < n else int(times[-1]) + 1
                for k in _fraction_ranks(spec, n)]
        return _record(spec, cuts)
    return _record(spec, None)


def _fraction_ranks(spec: dict, n: int) -> list[int]:
    """Ranks ``floor(f * n)`` of the val and test boundaries among the ``n`` sorted bar timestamps."""
    fr = check_fractions(spec["fractions"])
    return [int(np.floor(f * n + 1e-9)) for f in (fr[0], fr[0] + fr[1])]


def _record(spec: dict, fraction_cuts) -> dict:
    """The ``splits`` record of ``spec``; ``fraction_cuts`` are the boundary timestamps of fractions."""
    if set(spec) == {"fractions"}:
        cuts = [int(x) for x in fraction_cuts]
        record = {"method": "fractions", "fractions": list(check_fractions(spec["fractions"]))}
    elif set(spec) == {"dates"}:
        cuts = list(parse_dates(spec["dates"]))
        record = {"method": "dates", "dates": [iso_time(x) for x in cuts]}
    else:
        raise SplitError(f"splits must be given as fractions or as dates, got keys {sorted(spec)}.")
    record["boundaries"] = [[None, cuts[0]], [cuts[0], cuts[1]], [cuts[1], None]]
    return record


def order_statistics(t: np.ndarray, ks: list[int]) -> list[int]:
    """``sorted(t)[k]`` for each ``k`` (``max(t) + 1`` where ``k >= len(t)``), without sorting ``t``.

    Already sorted timestamps (one series) are indexed directly; otherwise ``np.partition``
    finds the few order statistics in linear time.
    """
    n = len(t)
    inside = sorted({k for k in ks if k < n})
    if n and np.all(t[1:] >= t[:-1]):
        picked = {k: t[k] for k in inside}
    else:
        part = np.partition(t, inside) if inside else t
        picked = {k: part[k] for k in inside}
    return [int(picked[k]) if k < n else int(t.max()) + 1 for k in ks]


def split_ids(timestamps: np.ndarray, record: dict) -> np.ndarray:
    """``[n] int8`` split index (0 train, 1 val, 2 test) of each bar."""
    t = np.asarray(timestamps, dtype=np.int64)
    # The number of boundaries at or before each bar (searchsorted side="right"), as two comparisons:
    # a binary search per bar costs ten times more on tens of millions of bars.
    ids = (t >= record["boundaries"][1][0]).view(np.int8)
    ids += t >= record["boundaries"][2][0]
    return ids


def iso_time(ns: int) -> str:
    """ISO 8601 UTC text of an int64 ns timestamp (messages, tables, the manifest's split dates)."""
    return dt.datetime.fromtimestamp(ns / 1e9, tz=dt.timezone.utc).isoformat()


def merge_counted(a: tuple, b: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Merge two ``(times [u] int64, counts [u] int64)`` of distinct timestamps (for :func:`resolve_counted`)."""
    times = np.concatenate([a[0], b[0]]).astype(np.int64)
    counts = np.concatenate([a[1], b[1]]).astype(np.int64)
    out, inverse = np.unique(times, return_inverse=True)
    total = np.zeros(len(out), dtype=np.int64)
    np.add.at(total, inverse.ravel(), counts)  # integer sums: exact at any count
    return out, total
