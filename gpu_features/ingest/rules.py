"""Bars: validated OHLC series; ``read_bars`` applies the ingest rules to any input.

Decoding (files, many files, vendor layouts, DataFrames, time zones) lives in
:mod:`gpu_features.readers` and :mod:`gpu_features.formats`; this module holds the
rules and builds :class:`Bars`.

Ingest rules (README "Inputs"): an optional series key (``symbol``) splits the
rows into series, ordered by name, each keeping its rows' order (bars of one
series spread over several files are joined in the files' time order). A roll
column (``roll_column``) cuts a series into segments where the contract
changes: each segment starts from a fresh engine state, so no window spans a
roll. Timestamps are int64 ns since the epoch, UTC.

A bar is bad if a price is missing, non-finite or <= 0 (only non-finite with
``allow_nonpositive``, for back-adjusted futures), if ``low > min(open,
close)`` or if ``high < max(open, close)``. Within a series timestamps must
strictly increase; the bars out of order are the fewest whose removal
restores it (the complement of a longest strictly increasing subsequence), so
one mistyped timestamp is one bar. Across files, bars at or before the last
bar of the previous file of the series overlap: refused, or with
``on_overlap="skip"`` skipped when identical to a bar already read.

Policies: ``error`` (default) refuses with the rule, the count and the first
rows; ``drop`` removes bad and out-of-order bars and records them, but refuses
when that would remove more than ``max_drop_fraction`` of the rows (1% by
default); ``repair`` widens high/low to cover open/close, for the two ordering
rules only.
"""
from __future__ import annotations

import bisect
import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import array_module, to_numpy
from .errors import BarsError
from .formats import detect_from_columns
from .readers import (NS_PER, PRICE_COLUMNS, TIME_COLUMNS, ReadOptions, _column_map, _epoch_scale, _series_name,
                      decode_inputs, expand_inputs, file_digest, is_table)

POLICIES = ("error", "drop", "repair")
OVERLAP_POLICIES = ("error", "skip")
READERS = ("auto", "pyarrow", "cudf")
DEFAULT_MAX_DROP_FRACTION = 0.01
_SHOW_ROWS = 5
_ORDER_RULE = "timestamp out of order within its series"
__all__ = ["Bars", "read_bars", "assemble", "check_bars", "file_digest", "NS_PER", "TIME_COLUMNS", "PRICE_COLUMNS"]


@dataclasses.dataclass(frozen=True)
class Bars:
    """OHLC bars of one or several series, concatenated series after series.

    Attributes:
        open, high, low, close: ``[n] float64``, numpy (or CuPy from the cudf reader).
        timestamp: ``[n] int64`` ns since the epoch, UTC; increasing within a series.
        offsets: ``[S] int64`` numpy, first bar of each series (first 0, increasing).
        symbols: ``S`` series names; a name repeats for the segments of one symbol cut at rolls
            (consecutive, in time order).
        source: where the bars came from (path, bytes, sha256 and read options; or generator parameters).
        ingest: what ingest did: policy, dropped and repaired bars by rule, skipped overlaps, warnings.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    timestamp: np.ndarray
    offsets: np.ndarray
    symbols: tuple
    source: dict = dataclasses.field(default_factory=dict)
    ingest: dict = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(len(self.close))

    @property
    def n_series(self) -> int:
        return int(len(self.offsets))

    def series_bounds(self) -> np.ndarray:
        """``[S + 1] int64``: series ``s`` is bars ``bounds[s] : bounds[s + 1]``."""
        return np.append(self.offsets, self.n).astype(np.int64)

    def series_of(self) -> np.ndarray:
        """``[n] int64`` series index of every bar."""
        return np.repeat(np.arange(self.n_series, dtype=np.int64), np.diff(self.series_bounds()))

    def on_host(self) -> "Bars":
        """These bars with numpy arrays (copied from the GPU where the cudf reader left them)."""
        return dataclasses.replace(self, **{k: to_numpy(getattr(self, k)) for k in PRICE_COLUMNS + ("timestamp",)})

    def take(self, start: int, stop: int, series: int = 0) -> "Bars":
        """Bars ``start:stop`` (global positions, all inside ``series``) as a one-series Bars.

        The source record gains ``"take": [start, stop, series]``, so a store built from
        the slice can still re-derive exactly these bars from the original source.
        """
        bounds = self.series_bounds()
        if not (bounds[series] <= start < stop <= bounds[series + 1]):
            raise BarsError(f"take({start}, {stop}) must lie inside series {series} "
                            f"(bars {bounds[series]} .. {bounds[series + 1]}).")
        sl = slice(start, stop)
        source = dict(self.source, take=[int(start), int(stop), int(series)])
        return Bars(self.open[sl], self.high[sl], self.low[sl], self.close[sl], self.timestamp[sl],
                    np.zeros(1, dtype=np.int64), (self.symbols[series],), source, self.ingest)


def read_bars(source, on_bad_bars: str = "error", reader: str = "pyarrow", *, allow_nonpositive: bool = False,
              max_drop_fraction: float = DEFAULT_MAX_DROP_FRACTION, on_overlap: str = "error",
              options: ReadOptions | None = None, **read_options) -> Bars:
    """Read and validate bars from files or a table.

    Args:
        source: a file (parquet, CSV, compressed CSV, DBN, SCID, Polygon JSON), a list of files, a
            directory, a glob, or a pyarrow/pandas/polars table (the Arrow interface).
        on_bad_bars: ``"error"`` (default), ``"drop"`` or ``"repair"`` (see module doc).
        reader: ``"pyarrow"`` (default: numpy arrays), ``"cudf"`` (parquet decoded on the GPU,
            CuPy arrays; needs cudf) or ``"auto"`` (cudf for one generic parquet file when it imports,
            else pyarrow). ``precompute`` and the CLI, which only hand the prices to an engine,
            default to auto.
        allow_nonpositive: accept prices <= 0 (back-adjusted continuous futures); non-finite
            prices are still bad.
        max_drop_fraction: ``drop`` refuses to remove more than this share of the rows.
        on_overlap: ``"error"`` or ``"skip"``: bars of a series repeated across files.
        options, **read_options: :class:`~gpu_features.readers.ReadOptions` fields (``format``,
            ``timezone``, ``time_column``, ``date_column``, ``symbol_column``, ``roll_column``...).

    Returns:
        :class:`Bars` with float64 prices and int64 ns timestamps.

    Raises:
        BarsError: one sentence naming the file, the rule, the count, the first rows and the fix.
    """
    if on_bad_bars not in POLICIES:
        raise BarsError(f"on_bad_bars must be one of {', '.join(POLICIES)}, got {on_bad_bars!r}.")
    if reader not in READERS:
        raise BarsError(f"reader must be one of {', '.join(READERS)}, got {reader!r}.")
    if on_overlap not in OVERLAP_POLICIES:
        raise BarsError(f"on_overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {on_overlap!r}.")
    if not 0.0 <= float(max_drop_fraction) <= 1.0:
        raise BarsError(f"max_drop_fraction must lie in [0, 1], got {max_drop_fraction}.")
    try:
        opts = options or ReadOptions(**read_options)
    except TypeError as err:
        raise BarsError(f"read_bars: {err}; see gpu_features.readers.ReadOptions for the read options.") from None
    rules = dict(allow_nonpositive=allow_nonpositive, max_drop_fraction=max_drop_fraction, on_overlap=on_overlap)
    note = None
    if not is_table(source):
        paths = expand_inputs(source)
        one_parquet = len(paths) == 1 and paths[0].name.lower().endswith((".parquet", ".pq"))
        plain = opts == ReadOptions() and not allow_nonpositive
        if reader == "cudf" and not (one_parquet and plain):
            raise BarsError(f"{paths[0]}: the cudf reader decodes parquet only (one generic file, default read options); "
                            "use --reader pyarrow for other inputs.")
        if reader == "cudf" or (reader == "auto" and one_parquet and plain and _cudf() is not None):
            got = _read_bars_cudf(paths[0], on_bad_bars)
            if isinstance(got, Bars):
                return got
            note = got
        source = paths
    elif reader == "cudf":
        raise BarsError("the cudf reader decodes parquet files; use reader='pyarrow' for a table in memory.")
    dec = decode_inputs(source, opts)
    where = ("the table" if is_table(source) else str(source[0]) if len(source) == 1
             else f"{len(source)} input files")
    record = _source_record(dec, opts, rules)
    bars = assemble(where, dec.prices, dec.timestamp, None, on_bad_bars, record, codes=dec.symbol_codes,
                    names=dec.symbol_names if dec.symbol_codes is not None else None,
                    one_name=dec.symbol_names[0] if dec.symbol_codes is None else None, roll=dec.roll_codes,
                    file_of_row=dec.file_of_row if len(dec.files) > 1 else None, label=dec.row_label,
                    file_names=[Path(f.get("path", "table")).name for f in dec.files], **rules)
    bars.ingest["reader"] = "pyarrow"
    if dec.warnings:
        bars.ingest["warnings"] = list(dec.warnings)
    if note:
        bars.ingest["reader_note"] = note
    return bars


def _source_record(dec, opts: ReadOptions, rules: dict) -> dict:
    """The manifest source: the file digest(s), plus how they were read when that differs from the defaults."""
    read = opts.record()
    if dec.format != "generic":
        read["format"] = dec.format
    if dec.bar_time != "start":
        read["bar_time"] = dec.bar_time
    if rules["allow_nonpositive"]:
        read["allow_nonpositive"] = True
    if rules["max_drop_fraction"] != DEFAULT_MAX_DROP_FRACTION:
        read["max_drop_fraction"] = rules["max_drop_fraction"]
    if rules["on_overlap"] != "error":
        read["on_overlap"] = rules["on_overlap"]
    files = [{k: v for k, v in f.items() if k != "rows"} for f in dec.files]
    rec = dict(files[0]) if len(files) == 1 else {"kind": "files", "files": files}
    if read:
        rec["read"] = read
    return rec


def read_kwargs(read: dict | None) -> dict:
    """``read_bars`` keywords that re-read a source the way its manifest ``read`` record says."""
    read = dict(read or {})
    read.pop("bar_time", None)
    kw = {k: read.pop(k) for k in ("allow_nonpositive", "max_drop_fraction", "on_overlap") if k in read}
    kw["options"] = ReadOptions.from_record(read)
    return kw


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


def assemble(where, prices: dict, ts: np.ndarray, symbol: np.ndarray | None, on_bad_bars: str,
             source: dict, *, codes: np.ndarray | None = None, names: tuple | None = None,
             one_name: str | None = None, roll: np.ndarray | None = None, file_of_row: np.ndarray | None = None,
             label=None, file_names: list | None = None, allow_nonpositive: bool = False,
             max_drop_fraction: float = DEFAULT_MAX_DROP_FRACTION, on_overlap: str = "error") -> Bars:
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
        allow_nonpositive, max_drop_fraction, on_overlap: see :func:`read_bars`.
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
        names = (one_name or _series_name(where),)
        codes = np.zeros(n, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    if file_of_row is None:
        order = _series_order(codes) if keyed and len(names) > 1 else row  # one clean series: no gather
    else:
        order = _series_file_order(codes, np.asarray(file_of_row, dtype=np.int64), ts)
    if order is not row:
        o, h, l, c, ts, codes, row = (a[order] for a in (o, h, l, c, ts, codes, row))
        roll = roll[order] if roll is not None else None
    ingest = _ingest_record(on_bad_bars, n, keyed)
    keep = np.ones(n, dtype=bool)
    if file_of_row is not None:
        skipped = _overlaps(where, o, h, l, c, ts, codes, np.asarray(file_of_row)[row], names, on_overlap,
                            file_names or [], label, row)
        if skipped.any():
            ingest["skipped_overlap"] = _record(skipped, row, label)
            keep &= ~skipped
    rules = rule_masks(o, h, l, c, allow_nonpositive)
    bad_price = rules[0][1]
    broken = [(name, mask) for name, mask in rules if mask.any()]
    fix_policy = "fix the data, or pass --on-bad-bars drop (or repair for the high/low ordering rules)"
    if broken and on_bad_bars == "error":
        raise BarsError(f"{where}: " + "; ".join(_describe(name, mask, row, label) for name, mask in broken)
                        + f"; {fix_policy}" + (" (back-adjusted futures: --allow-nonpositive-prices)"
                                               if not allow_nonpositive and bool(np.any(c <= 0)) else "") + ".")
    if broken and on_bad_bars == "repair":
        if bad_price.any():
            raise BarsError(f"{where}: {_describe(rules[0][0], bad_price, row, label)}; repair only widens high/low, "
                            "so fix the data or pass --on-bad-bars drop.")
        for name, mask in broken:
            ingest["repaired"][name] = _record(mask, row, label)
        h = np.maximum(h, np.maximum(o, c))
        l = np.minimum(l, np.minimum(o, c))
    if broken and on_bad_bars == "drop":
        for name, mask in broken:
            ingest["dropped"][name] = _record(mask & keep, row, label)
            keep &= ~mask

    # Strictly increasing time within each series: the out-of-order bars are the complement of a
    # longest strictly increasing subsequence of the kept bars (one mistyped time = one bar).
    out_of_order = _out_of_order(ts, codes, keep)
    if out_of_order.any():
        if on_bad_bars != "drop":
            raise BarsError(f"{where}: {_describe(_ORDER_RULE, out_of_order, row, label)}; these are the fewest bars "
                            "whose removal leaves every series strictly increasing: fix their times (or remove "
                            "duplicates), or pass --on-bad-bars drop.")
        ingest["dropped"][_ORDER_RULE] = _record(out_of_order, row, label)
        keep &= ~out_of_order
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
    if len(off) == 0 or off[0] != 0 or np.any(np.diff(off) <= 0) or off[-1] >= n or len(b.symbols) != len(off):
        raise BarsError(f"the bars' offsets {off[:6].tolist()} must start at 0, strictly increase, stay below "
                        f"{n} and have one symbol each ({len(b.symbols)} given); fix the Bars.")
    allow = bool(b.ingest.get("allow_nonpositive") or b.source.get("read", {}).get("allow_nonpositive"))
    rows = np.arange(n)
    for name, mask in rule_masks(b.open, b.high, b.low, b.close, allow):
        if mask.any():
            raise BarsError(f"the bars given to precompute: {_describe(name, mask, rows)}; build Bars with read_bars "
                            "(which applies the ingest rules and policies) or fix the arrays.")
    series = b.series_of()
    back = (np.diff(b.timestamp) <= 0) & (series[1:] == series[:-1])
    if back.any():
        bad = np.r_[False, back]
        raise BarsError(f"the bars given to precompute: {_describe(_ORDER_RULE, bad, rows)}; timestamps must strictly "
                        "increase within each series: build Bars with read_bars or sort them.")


def _out_of_order(ts, codes, keep) -> np.ndarray:
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


def _series_file_order(codes, file_of_row, ts) -> np.ndarray:
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


def _overlaps(where, o, h, l, c, ts, codes, files, names, on_overlap, file_names, label, row) -> np.ndarray:
    """``[n] bool`` rows to skip: bars of a series at or before the last bar of its earlier files.

    Refuses unless ``on_overlap == "skip"`` and every such bar equals (time and prices, bit for bit)
    a bar already read; rows are in series/file order (see :func:`_series_file_order`).
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
                            f"last bar of {prev_file} (first data rows, 0-based: {', '.join(label(row[rows][:_SHOW_ROWS]))});"
                            " the files overlap: remove the overlap, or pass --on-overlap skip to skip bars repeated "
                            "identically.")
        srt = earlier[np.argsort(ts[earlier], kind="stable")]
        pos = np.minimum(np.searchsorted(ts[srt], ts[rows]), len(srt) - 1)
        match = srt[pos]
        same = ts[match] == ts[rows]
        for arr in (o, h, l, c):
            same &= arr[match].view(np.uint64) == arr[rows].view(np.uint64)
        if not same.all():
            bad = rows[~same]
            raise BarsError(f"{where}: {len(bad)} bar(s) of {names[int(codes[a])]} in {this_file} repeat a time of "
                            f"{prev_file} with different prices (first data rows, 0-based: "
                            f"{', '.join(label(row[bad][:_SHOW_ROWS]))}); the files disagree, so fix or remove one.")
        skip[rows] = True
    return skip


def encode_symbols(symbol: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``(codes [n] int64, names)``: each row's index into the sorted distinct symbol names."""
    names, codes = np.unique(symbol, return_inverse=True)
    return codes.astype(np.int64), tuple(str(x) for x in names)


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
        order = _series_order(codes)
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
    ingest = _ingest_record(on_bad_bars, n, codes is not None)
    ingest.update(bars=int(n), reader=reader)
    return Bars(o, h, l, c, ts, offsets, tuple(names), source, ingest)


def _series_order(codes):
    """``[n]`` row order putting series in code order, each keeping file order (numpy or CuPy).

    The row number breaks ties inside the key, so the result is stable whatever sort the array
    module uses.
    """
    xp = array_module(codes)
    n = len(codes)
    return xp.argsort(codes.astype(xp.int64) * n + xp.arange(n, dtype=xp.int64))


def _ingest_record(on_bad_bars: str, rows: int, symbol_column: bool) -> dict[str, Any]:
    return {"policy": on_bad_bars, "rows_read": int(rows), "symbol_column": symbol_column,
            "dropped": {}, "repaired": {}}


def _record(mask: np.ndarray, row: np.ndarray, label=None) -> dict:
    """``{"count", "first_rows"}`` of the rows a mask selects (0-based data rows of the input)."""
    bad = np.sort(row[mask])
    out = {"count": int(len(bad)), "first_rows": bad[:_SHOW_ROWS].tolist()}
    if label is not None:
        named = label(bad[:_SHOW_ROWS])
        if named != [str(x) for x in out["first_rows"]]:
            out["first_rows_named"] = named
    return out


def _describe(rule: str, mask: np.ndarray, row: np.ndarray, label=None) -> str:
    r = _record(mask, row, label)
    rows = ", ".join(r.get("first_rows_named") or [str(x) for x in r["first_rows"]])
    return f"{r['count']} bar(s) break the rule '{rule}' (first data rows, 0-based: {rows})"


# --- file reading on the GPU (cudf) -----------------------------------------------------


@functools.lru_cache(maxsize=1)
def _cudf():
    """The cudf module, or None where it does not import (not installed, or no usable GPU)."""
    try:
        import cudf

        return cudf
    except Exception:  # ImportError, or cudf's own error when no CUDA driver or device is present
        return None


def _read_bars_cudf(path: Path, on_bad_bars: str) -> Bars | str:
    """Bars of a parquet file decoded by cudf, kept on the GPU (see module doc).

    Returns:
        :class:`Bars` with CuPy arrays, or a sentence saying why the pyarrow path must read the file.
    """
    cudf = _cudf()
    if cudf is None:
        raise BarsError(f"{path}: the cudf reader needs cudf and a CUDA GPU, and cudf does not import here; "
                        "install gpu-features[cudf] on a GPU machine or use --reader pyarrow.")
    try:
        df = cudf.read_parquet(str(path))
    except Exception as err:  # the pyarrow path reports unreadable files with its own message
        return f"cudf could not decode the file ({type(err).__name__})"
    if len(df) == 0:
        return "the file holds no rows"
    cols = _column_map(path, df.columns)
    layout = detect_from_columns(list(cols))
    if layout != "generic":
        return f"the {layout} layout is decoded on the CPU"
    if any(name not in cols for name in PRICE_COLUMNS):
        return "price columns are missing"
    time_name = next((cols[t] for t in TIME_COLUMNS if t in cols), None)
    if time_name is None:
        return "no time column (the time may be the parquet index)"
    for name in PRICE_COLUMNS:
        if df[cols[name]].dtype.kind not in "fiu":
            return f"column '{cols[name]}' has type {df[cols[name]].dtype}, not a float or integer"
    prices = {name: df[cols[name]].astype("float64").to_cupy(na_value=np.nan) for name in PRICE_COLUMNS}
    t = df[time_name]
    if t.null_count:
        return f"time column '{time_name}' has missing values"
    if t.dtype.kind == "M":  # datetime64, naive or with a time zone: int64 counts of its unit since the epoch, UTC
        unit = getattr(t.dtype, "unit", None) or np.datetime_data(t.dtype)[0]
        if unit not in NS_PER:
            return f"time column '{time_name}' has unit {unit}"
        ts = t.astype("int64").to_cupy() * NS_PER[unit]
    elif t.dtype.kind in "iu":
        ts = t.astype("int64").to_cupy()
        ts = ts * _epoch_scale(ts)
    else:
        return f"time column '{time_name}' has type {t.dtype}, decoded on the CPU"
    codes, names = None, (_series_name(path),)
    if "symbol" in cols:
        sym = df[cols["symbol"]]
        if sym.null_count or str(sym.dtype) not in ("object", "str", "string"):
            return f"symbol column '{cols['symbol']}' has missing values or type {sym.dtype}, not text"
        codes, uniques = cudf.factorize(sym, sort=True)
        names = tuple(str(x) for x in uniques.to_arrow().to_pylist())
    bars = assemble_clean(path, prices, ts, codes, names, on_bad_bars, file_digest(path), "cudf")
    return bars if bars is not None else "some bars break an ingest rule"
