"""Raw columns to :class:`Bars`: series ordered and cut into segments, the ingest policies applied.

Ingest rules (README "Inputs"; the masks are :mod:`.rules`): an optional series
key (``symbol``) splits the rows into series, ordered by name, each keeping its
rows' order (bars of one series spread over several files are joined in the
files' time order). A roll column (``roll_column``) cuts a series into
segments where the contract changes: each segment starts from a fresh engine
state, so no window spans a roll. Timestamps are int64 ns since the epoch, UTC.

Policies: ``error`` (default) refuses with the rule, the count and the first
rows; ``drop`` removes bad and out-of-order bars and records them, but refuses
when that would remove more than ``max_drop_fraction`` of the rows (1% by
default); ``repair`` widens high/low to cover open/close, for the two ordering
rules only. :func:`assemble_clean` is the same for bars that break no rule,
computed where the columns live (numpy or CuPy: the cudf reader's path).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import array_module, to_numpy
from ..errors import BarsError
from .bars import Bars
from .inputs import series_name
from .presets import PRICE_COLUMNS
from .rules import ORDER_RULE, describe, out_of_order, overlaps, record_rows, rule_masks
from .spec import DEFAULT_MAX_DROP_FRACTION


def assemble(where, prices: dict, ts: np.ndarray, symbol: np.ndarray | None, on_bad_bars: str,
             source: dict, *, codes: np.ndarray | None = None, names: tuple | None = None,
             one_name: str | None = None, roll: np.ndarray | None = None, file_of_row: np.ndarray | None = None,
             label=None, file_names: list | None = None, allow_nonpositive: bool = False,
             max_drop_fraction: float = DEFAULT_MAX_DROP_FRACTION, on_overlap: str = "error",
             series_column: bool = True) -> Bars:
    """Apply the ingest rules to raw columns and build :class:`Bars`.

    Args:
        where: file name (or description) used in messages.
        prices: ``{"open"|"high"|"low"|"close": [n] float64}`` (NaN for missing).
        ts: ``[n] int64`` ns timestamps.
        symbol: ``[n]`` symbol names, or None (then ``codes``/``names``, or one series).
        on_bad_bars: the policy.
        source: the manifest ``source`` record.
        codes, names: ``[n] int64`` series codes into ``names`` (sorted), instead of ``symbol``.
        one_name: the name of the one series when there is no key (default: from ``where``).
        roll: ``[n] int64`` contract codes: a series is cut into segments where the code changes.
        file_of_row: ``[n]`` input file of each row, when the rows come from several files.
        label: ``rows -> names`` for messages (default: the 0-based row numbers).
        file_names: names of the input files (messages about overlaps).
        allow_nonpositive, max_drop_fraction, on_overlap: the rule fields of :class:`.spec.ReadSpec`.
        series_column: False when ``codes`` name files without a series column (each a series named after its
            file), recorded as ``ingest["symbol_column"]``.
    """
    n = len(ts)
    label = label or (lambda rows: [str(int(r)) for r in rows])
    o, h, l, c = (np.ascontiguousarray(prices[k], dtype=np.float64) for k in PRICE_COLUMNS)
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    row = np.arange(n, dtype=np.int64)
    keyed = symbol is not None or codes is not None
    if symbol is not None:
        codes, names = encode_symbols(symbol)
    elif codes is None:
        names = (one_name or series_name(where),)
        codes = np.zeros(n, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    if file_of_row is None:
        order = series_order(codes) if keyed and len(names) > 1 else row  # one clean series: no gather
    else:
        order = series_file_order(codes, np.asarray(file_of_row, dtype=np.int64), ts)
    if order is not row:
        o, h, l, c, ts, codes, row = (a[order] for a in (o, h, l, c, ts, codes, row))
        roll = roll[order] if roll is not None else None
    ingest = ingest_record(on_bad_bars, n, keyed and series_column)
    keep = np.ones(n, dtype=bool)
    if file_of_row is not None:
        skipped = overlaps(where, o, h, l, c, ts, codes, np.asarray(file_of_row)[row], names, on_overlap,
                            file_names or [], label, row)
        if skipped.any():
            ingest["skipped_overlap"] = record_rows(skipped, row, label)
            keep &= ~skipped
    rules = rule_masks(o, h, l, c, allow_nonpositive)
    bad_price = rules[0][1]
    broken = [(name, mask) for name, mask in rules if mask.any()]
    fix_policy = "fix the data, or pass --on-bad-bars drop (or repair for the high/low ordering rules)"
    if broken and on_bad_bars == "error":
        raise BarsError(f"{where}: " + "; ".join(describe(name, mask, row, label) for name, mask in broken)
                        + f"; {fix_policy}" + (" (back-adjusted futures: --allow-nonpositive-prices)"
                                               if not allow_nonpositive and bool(np.any(c <= 0)) else "") + ".")
    if broken and on_bad_bars == "repair":
        if bad_price.any():
            raise BarsError(f"{where}: {describe(rules[0][0], bad_price, row, label)}; repair only widens high/low, "
                            "so fix the data or pass --on-bad-bars drop.")
        for name, mask in broken:
            ingest["repaired"][name] = record_rows(mask, row, label)
        h = np.maximum(h, np.maximum(o, c))
        l = np.minimum(l, np.minimum(o, c))
    if broken and on_bad_bars == "drop":
        for name, mask in broken:
            ingest["dropped"][name] = record_rows(mask & keep, row, label)
            keep &= ~mask

    # Strictly increasing time within each series: the out-of-order bars are the complement of a
    # longest strictly increasing subsequence of the kept bars (one mistyped time = one bar).
    back = out_of_order(ts, codes, keep)
    if back.any():
        if on_bad_bars != "drop":
            raise BarsError(f"{where}: {describe(ORDER_RULE, back, row, label)}; these are the fewest bars "
                            "whose removal leaves every series strictly increasing: fix their times (or remove "
                            "duplicates), or pass --on-bad-bars drop.")
        ingest["dropped"][ORDER_RULE] = record_rows(back, row, label)
        keep &= ~back
    dropped = int(sum(r["count"] for r in ingest["dropped"].values()))
    if dropped and dropped > max_drop_fraction * n:
        parts = ", ".join(f"{r['count']} {name}" for name, r in ingest["dropped"].items())
        raise BarsError(f"{where}: --on-bad-bars drop would remove {dropped} of {n} bars ({dropped / n:.2%}: {parts}), "
                        f"more than the {max_drop_fraction:.2%} allowed; fix the data, or raise the limit with "
                        "--max-drop-fraction.")

    if not keep.all():
        o, h, l, c, ts, codes = (a[keep] for a in (o, h, l, c, ts, codes))
        roll = roll[keep] if roll is not None else None
    if len(c) == 0:
        raise BarsError(f"{where}: no bars are left after dropping bad bars; fix the data.")
    present = np.flatnonzero(np.bincount(codes, minlength=len(names)))
    if len(present) < len(names):
        gone = [names[k] for k in range(len(names)) if k not in set(present.tolist())]
        raise BarsError(f"{where}: symbol(s) {', '.join(gone)} have no bars left after dropping bad bars; "
                        "fix the data or remove those symbols.")
    cut = codes[1:] != codes[:-1]
    if roll is not None:
        rolls = (roll[1:] != roll[:-1]) & ~cut
        if rolls.any():
            ingest["roll_segments"] = int(rolls.sum())
        cut = cut | rolls
    starts = np.flatnonzero(np.r_[True, cut]).astype(np.int64)
    seg_names = tuple(names[int(codes[s])] for s in starts)
    ingest["bars"] = int(len(c))
    return Bars(o, h, l, c, ts, starts, seg_names, source, ingest)


def assemble_clean(where, prices: dict, ts, codes, names: tuple, on_bad_bars: str, source: dict,
                   reader: str) -> Bars | None:
    """:func:`assemble` for bars that break no rule, computed where the columns live (numpy or CuPy).

    Args:
        where: file name used for the one-series name.
        prices: ``{"open"|"high"|"low"|"close": [n] float}`` arrays (NaN for missing).
        ts: ``[n] int64`` ns timestamps.
        codes: ``[n]`` integer index into ``names`` per row, or None for one series.
        names: the series names, sorted, each with at least one row (one name when codes is None).
        on_bad_bars, source: as for :func:`assemble` (the policy is only recorded: nothing is broken).
        reader: recorded as ``ingest["reader"]``.

    Returns:
        The same :class:`Bars` as :func:`assemble` (arrays on the columns' device), or None when a bar
        breaks a rule: then :func:`assemble` must report it or apply the policy on the host.
    """
    xp = array_module(ts)
    n = len(ts)
    o, h, l, c = (xp.ascontiguousarray(xp.asarray(prices[k]), dtype=xp.float64) for k in PRICE_COLUMNS)
    ts = xp.ascontiguousarray(xp.asarray(ts), dtype=xp.int64)
    if codes is not None:
        codes = xp.asarray(codes).astype(xp.int64)
        order = series_order(codes)
        o, h, l, c, ts, codes = (a[order] for a in (o, h, l, c, ts, codes))
    if any(bool(mask.any()) for _, mask in rule_masks(o, h, l, c)):
        return None
    # Strictly increasing time within each series: with nothing dropped, each bar against the one before.
    same_series = True if codes is None else codes[1:] == codes[:-1]
    if bool(xp.any((ts[1:] <= ts[:-1]) & same_series)):
        return None
    offsets = np.zeros(1, dtype=np.int64)
    if codes is not None:  # a series starts where the code changes; only these S positions come to the host
        offsets = np.concatenate([offsets, to_numpy(xp.flatnonzero(codes[1:] != codes[:-1]) + 1)]).astype(np.int64)
    ingest = ingest_record(on_bad_bars, n, codes is not None)
    ingest.update(bars=int(n), reader=reader)
    return Bars(o, h, l, c, ts, offsets, tuple(names), source, ingest)


def series_file_order(codes, file_of_row, ts) -> np.ndarray:
    """Row order for several files: by series, then each series' files by their first time, then row."""
    n = len(codes)
    n_files = int(file_of_row.max()) + 1
    pair = codes * n_files + file_of_row
    uniq, first = np.unique(pair, return_index=True)
    first_ts = ts[first]
    rank_in = np.lexsort((first_ts, uniq // n_files))  # pairs by series, then first time
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[rank_in] = np.arange(len(uniq))
    return np.lexsort((np.arange(n), rank[np.searchsorted(uniq, pair)]))


def series_order(codes):
    """``[n]`` row order putting series in code order, each keeping file order (numpy or CuPy).

    The row number breaks ties inside the key, so the result is stable whatever sort the array
    module uses.
    """
    xp = array_module(codes)
    n = len(codes)
    return xp.argsort(codes.astype(xp.int64) * n + xp.arange(n, dtype=xp.int64))


def encode_symbols(symbol: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``(codes [n] int64, names)``: each row's index into the sorted distinct symbol names."""
    names, codes = np.unique(symbol, return_inverse=True)
    return codes.astype(np.int64), tuple(str(x) for x in names)


def ingest_record(on_bad_bars: str, rows: int, symbol_column: bool) -> dict[str, Any]:
    return {"policy": on_bad_bars, "rows_read": int(rows), "symbol_column": symbol_column,
            "dropped": {}, "repaired": {}}
