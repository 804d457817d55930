"""The ingest rules: which bars are bad, which are out of order, which overlap, and when two bars are the same.

A bar is bad if a price is missing, non-finite or <= 0 (only non-finite with
``allow_nonpositive``, for back-adjusted futures), if ``low > min(open,
close)`` or if ``high < max(open, close)``. Within a series timestamps must
strictly increase; the bars out of order are the fewest whose removal
restores it (the complement of a longest strictly increasing subsequence), so
one mistyped timestamp is one bar. Across files, bars at or before the last
bar of the previous file of the series overlap: refused, or with
``on_overlap="skip"`` skipped when identical (:func:`identical_bars`: the same
time and bit-equal prices) to a bar already read; ``--append`` checks bars it
skips against the store's source bars with the same definition.

Refusals name the rule, the count and the first rows (0-based data rows of the
input, ``file:row`` for several files). :func:`.assemble.assemble` applies the
policies (``error``, ``drop``, ``repair``) with these masks.
"""
from __future__ import annotations

import bisect

import numpy as np

from ..arrays import array_module
from ..errors import BarsError
from .bars import Bars
from .presets import PRICE_COLUMNS

SHOW_ROWS = 5  # first rows named in a refusal or record
ORDER_RULE = "timestamp out of order within its series"


def rule_masks(o, h, l, c, allow_nonpositive: bool = False) -> list:
    """The per-bar ingest rules: ``[(rule, [n] bool mask of the bars breaking it)]``, numpy or CuPy alike.

    With ``allow_nonpositive`` (back-adjusted futures) only missing or non-finite prices are bad.
    """
    xp = array_module(c)
    finite = xp.isfinite(o) & xp.isfinite(h) & xp.isfinite(l) & xp.isfinite(c)
    with np.errstate(invalid="ignore"):
        bad_price = ~finite
        if not allow_nonpositive:
            bad_price = bad_price | (o <= 0) | (h <= 0) | (l <= 0) | (c <= 0)
        low_above = ~bad_price & (l > xp.minimum(o, c))
        high_below = ~bad_price & (h < xp.maximum(o, c))
    return [
        ("price missing or non-finite" if allow_nonpositive else "price missing, non-finite or <= 0", bad_price),
        ("low above min(open, close)", low_above),
        ("high below max(open, close)", high_below),
    ]


def identical_bars(a, b) -> np.ndarray:
    """``[n] bool``: bar ``k`` of ``a`` is bar ``k`` of ``b`` repeated: the same timestamp and bit-equal open, high,
    low and close (a repeated bar is a copy, not a close value; -0.0 and 0.0 differ).

    Args:
        a, b: mappings of ``timestamp`` and the four prices to ``[n]`` numpy arrays.
    """
    same = np.asarray(a["timestamp"], dtype=np.int64) == np.asarray(b["timestamp"], dtype=np.int64)
    for k in PRICE_COLUMNS:
        bits_a = np.ascontiguousarray(a[k], dtype=np.float64).view(np.uint64)
        bits_b = np.ascontiguousarray(b[k], dtype=np.float64).view(np.uint64)
        same &= bits_a == bits_b
    return same


def longest_increasing(ts: np.ndarray) -> np.ndarray:
    """``[n] bool``: a longest strictly increasing subsequence of ``ts`` (O(n log n) patience sorting).

    Its complement is the fewest bars whose removal leaves ``ts`` strictly increasing. Among equal
    choices it keeps the earlier rows (the first of a repeated time; a bar that jumps back is the one
    out of place): the search runs from the end over negated times, keeping the latest-found chain.
    """
    n = len(ts)
    rev = (-np.asarray(ts, dtype=np.int64)[::-1]).tolist()
    tails_val: list[int] = []
    tails_idx: list[int] = []
    parent = np.full(n, -1, dtype=np.int64)
    for i, v in enumerate(rev):
        k = bisect.bisect_left(tails_val, v)
        if k:
            parent[i] = tails_idx[k - 1]
        if k == len(tails_val):
            tails_val.append(v)
            tails_idx.append(i)
        else:
            tails_val[k] = v
            tails_idx[k] = i
    keep = np.zeros(n, dtype=bool)
    i = tails_idx[-1] if tails_idx else -1
    while i >= 0:
        keep[n - 1 - i] = True
        i = parent[i]
    return keep


def out_of_order(ts, codes, keep) -> np.ndarray:
    """``[n] bool`` kept bars outside a longest strictly increasing subsequence of their series."""
    n = len(ts)
    out = np.zeros(n, dtype=bool)
    every = bool(keep.all())
    kept = np.arange(n) if every else np.flatnonzero(keep)
    kts, kcodes = (ts, codes) if every else (ts[kept], codes[kept])  # no identity gather on clean input
    back = kts[1:] <= kts[:-1]
    if not back.any():
        return out
    same = kcodes[1:] == kcodes[:-1]
    if not np.any(back & same):
        return out
    bounds = np.flatnonzero(np.r_[True, ~same, True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        seg = kts[a:b]
        if np.any(seg[1:] <= seg[:-1]):
            out[kept[a:b][~longest_increasing(seg)]] = True
    return out


def overlaps(where, o, h, l, c, ts, codes, files, names, on_overlap, file_names, label, row) -> np.ndarray:
    """``[n] bool`` rows to skip: bars of a series at or before the last bar of its earlier files.

    Refuses unless ``on_overlap == "skip"`` and every such bar is :func:`identical_bars` to a bar
    already read; rows are in series/file order (see :func:`.assemble.series_file_order`).
    """
    skip = np.zeros(len(ts), dtype=bool)
    piece = np.flatnonzero(np.r_[True, (codes[1:] != codes[:-1]) | (files[1:] != files[:-1]), True])
    for k in range(1, len(piece) - 1):
        a, b = piece[k], piece[k + 1]
        s = piece[k - 1]
        while s > 0 and codes[s - 1] == codes[a]:  # first row of this series
            s = piece[np.searchsorted(piece, s) - 1]
        if codes[s] != codes[a] or s >= a:
            continue
        earlier = np.arange(s, a)
        earlier = earlier[~skip[earlier]]
        over = ts[a:b] <= ts[earlier].max()
        if not over.any():
            continue
        rows = a + np.flatnonzero(over)
        prev_file = file_names[int(files[a - 1])] if file_names else "the previous file"
        this_file = file_names[int(files[a])] if file_names else "the next file"
        if on_overlap != "skip":
            raise BarsError(f"{where}: {len(rows)} bar(s) of {names[int(codes[a])]} in {this_file} are at or before the "
                            f"last bar of {prev_file} (first data rows, 0-based: {', '.join(label(row[rows][:SHOW_ROWS]))});"
                            " the files overlap: remove the overlap, or pass --on-overlap skip to skip bars repeated "
                            "identically.")
        srt = earlier[np.argsort(ts[earlier], kind="stable")]
        pos = np.minimum(np.searchsorted(ts[srt], ts[rows]), len(srt) - 1)
        match = srt[pos]
        columns = dict(zip(("open", "high", "low", "close", "timestamp"), (o, h, l, c, ts)))
        same = identical_bars({k: v[match] for k, v in columns.items()}, {k: v[rows] for k, v in columns.items()})
        if not same.all():
            bad = rows[~same]
            raise BarsError(f"{where}: {len(bad)} bar(s) of {names[int(codes[a])]} in {this_file} repeat a time of "
                            f"{prev_file} with different prices (first data rows, 0-based: "
                            f"{', '.join(label(row[bad][:SHOW_ROWS]))}); the files disagree, so fix or remove one.")
        skip[rows] = True
    return skip


def check_bars(bars: Bars) -> None:
    """Refuse a :class:`Bars` (built by hand) that breaks a structural or ingest rule.

    Checks: equal lengths, offsets (first 0, strictly increasing, inside the bars) with one name
    each, the per-bar price rules (prices <= 0 allowed when ``bars.ingest['allow_nonpositive']``
    or the source's read record says so) and strictly increasing time within each series.
    """
    b = bars.on_host()
    n = b.n
    lengths = {k: len(getattr(b, k)) for k in PRICE_COLUMNS + ("timestamp",)}
    if len(set(lengths.values())) != 1:
        raise BarsError(f"the bars have columns of different lengths ({lengths}); give equal-length arrays.")
    off = np.asarray(b.offsets, dtype=np.int64)
    if n == 0:
        raise BarsError("the bars are empty; give at least one bar.")
    if len(off) == 0 or off[0] != 0 or np.any(np.diff(off) <= 0) or off[-1] >= n or len(b.segment_names) != len(off):
        raise BarsError(f"the bars' offsets {off[:6].tolist()} must start at 0, strictly increase, stay below "
                        f"{n} and have one symbol each ({len(b.segment_names)} given); fix the Bars.")
    allow = bool(b.ingest.get("allow_nonpositive") or b.source.get("read", {}).get("allow_nonpositive"))
    rows = np.arange(n)
    for name, mask in rule_masks(b.open, b.high, b.low, b.close, allow):
        if mask.any():
            raise BarsError(f"the bars given to precompute: {describe(name, mask, rows)}; build Bars with read_bars "
                            "(which applies the ingest rules and policies) or fix the arrays.")
    segment = b.segment_of()
    back = (np.diff(b.timestamp) <= 0) & (segment[1:] == segment[:-1])
    if back.any():
        bad = np.r_[False, back]
        raise BarsError(f"the bars given to precompute: {describe(ORDER_RULE, bad, rows)}; timestamps must strictly "
                        "increase within each series: build Bars with read_bars or sort them.")


def record_rows(mask: np.ndarray, row: np.ndarray, label=None) -> dict:
    """``{"count", "first_rows"}`` of the rows a mask selects (0-based data rows of the input)."""
    bad = np.sort(row[mask])
    out = {"count": int(len(bad)), "first_rows": bad[:SHOW_ROWS].tolist()}
    if label is not None:
        named = label(bad[:SHOW_ROWS])
        if named != [str(x) for x in out["first_rows"]]:
            out["first_rows_named"] = named
    return out


def describe(rule: str, mask: np.ndarray, row: np.ndarray, label=None) -> str:
    """``"N bar(s) break the rule 'RULE' (first data rows, 0-based: ...)"``, the core of every rule's refusal."""
    r = record_rows(mask, row, label)
    rows = ", ".join(r.get("first_rows_named") or [str(x) for x in r["first_rows"]])
    return f"{r['count']} bar(s) break the rule '{rule}' (first data rows, 0-based: {rows})"
