"""Bars: validated OHLC series, and ``read_bars`` for parquet and CSV files.

Ingest rules (DESIGN.md): columns match case-insensitively; ``open high low
close`` are required; time comes from ``timestamp``, ``ts_event``,
``datetime``, ``date`` or ``time`` (first found), else from a parquet-stored
pandas index; an optional ``symbol`` column splits the table into series,
ordered by symbol name, each keeping its rows' file order. Timestamps are
int64 nanoseconds since the epoch, UTC: timestamp/date columns are converted
exactly; integer columns are read as epoch seconds, milliseconds,
microseconds or nanoseconds by magnitude (< 1e11 s, < 1e14 ms, < 1e17 us,
else ns); strings must be ISO 8601.

A bar is bad if a price is missing, non-finite or <= 0, if ``low > min(open,
close)`` or if ``high < max(open, close)``. Within a series timestamps must
strictly increase. Policies: ``error`` (default) refuses with the rule, the
count and the first rows; ``drop`` removes bad bars (and bars whose
timestamp does not increase) and records them; ``repair`` widens high/low to
cover open/close, for the two ordering rules only.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import array_module, to_numpy
from .errors import BarsError
from .fileio import sha256_file

PRICE_COLUMNS = ("open", "high", "low", "close")
TIME_COLUMNS = ("timestamp", "ts_event", "datetime", "date", "time")
POLICIES = ("error", "drop", "repair")
NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
READERS = ("auto", "pyarrow", "cudf")
_SHOW_ROWS = 5


@dataclasses.dataclass(frozen=True)
class Bars:
    """OHLC bars of one or several series, concatenated series after series.

    Attributes:
        open, high, low, close: ``[n] float64``, numpy (or CuPy from the cudf reader).
        timestamp: ``[n] int64`` ns since the epoch, UTC; increasing within a series.
        offsets: ``[S] int64`` numpy, first bar of each series (first 0, increasing).
        symbols: ``S`` series names.
        source: where the bars came from (path, bytes, sha256 or generator parameters).
        ingest: what ingest did: policy, dropped and repaired bars by rule.
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


def file_digest(path: str | os.PathLike) -> dict:
    """``{"kind": "file", "path", "bytes", "sha256"}`` of a file (its source record)."""
    return {"kind": "file", "path": str(Path(path).resolve()), "bytes": Path(path).stat().st_size,
            "sha256": sha256_file(path)}


def read_bars(path: str | os.PathLike, on_bad_bars: str = "error", reader: str = "pyarrow") -> Bars:
    """Read and validate bars from a parquet or CSV file.

    Args:
        path: ``.parquet``/``.pq`` or ``.csv``/``.csv.gz`` file.
        on_bad_bars: ``"error"`` (default), ``"drop"`` or ``"repair"`` (see module doc).
        reader: ``"pyarrow"`` (default: numpy arrays), ``"cudf"`` (parquet decoded on the GPU,
            CuPy arrays; needs cudf) or ``"auto"`` (cudf for parquet when it imports, else pyarrow).
            The default stays pyarrow so that code using the arrays gets numpy on every machine;
            ``precompute`` and the CLI, which only hand the prices to an engine, default to auto.

    Returns:
        :class:`Bars` with float64 prices and int64 ns timestamps.

    Raises:
        BarsError: one sentence naming the file, the rule, the count, the first rows and the fix.
    """
    if on_bad_bars not in POLICIES:
        raise BarsError(f"on_bad_bars must be one of {', '.join(POLICIES)}, got {on_bad_bars!r}.")
    if reader not in READERS:
        raise BarsError(f"reader must be one of {', '.join(READERS)}, got {reader!r}.")
    path = Path(path)
    if not path.is_file():
        raise BarsError(f"{path}: no such file; give a parquet or CSV file of OHLC bars.")
    parquet = path.name.lower().endswith((".parquet", ".pq"))
    note = None
    if reader == "cudf" and not parquet:
        raise BarsError(f"{path}: the cudf reader decodes parquet only; use --reader pyarrow for CSV files.")
    if reader == "cudf" or (reader == "auto" and parquet and _cudf() is not None):
        got = _read_bars_cudf(path, on_bad_bars)
        if isinstance(got, Bars):
            return got
        note = got
    table = _read_table(path)
    if table.num_rows == 0:
        raise BarsError(f"{path}: the file holds no bars (0 rows); give a file with at least one bar.")
    prices, ts, symbol = decode_table(path, table)
    bars = assemble(path, prices, ts, symbol, on_bad_bars, file_digest(path))
    bars.ingest["reader"] = "pyarrow"
    if note:
        bars.ingest["reader_note"] = note
    return bars


def assemble(where, prices: dict, ts: np.ndarray, symbol: np.ndarray | None, on_bad_bars: str,
             source: dict) -> Bars:
    """Apply the ingest rules to raw columns and build :class:`Bars`.

    Args:
        where: file name (or description) used in messages.
        prices: ``{"open"|"high"|"low"|"close": [n] float64}`` (NaN for missing).
        ts: ``[n] int64`` ns timestamps.
        symbol: ``[n]`` symbol names, or None for one series.
        on_bad_bars: the policy.
        source: the manifest ``source`` record.
    """
    n = len(ts)
    o, h, l, c = (np.ascontiguousarray(prices[k], dtype=np.float64) for k in PRICE_COLUMNS)
    row = np.arange(n, dtype=np.int64)
    if symbol is None:
        names = (_series_name(where),)
        order = row
        codes = np.zeros(n, dtype=np.int64)
    else:
        codes, names = encode_symbols(symbol)
        order = _series_order(codes)
    if symbol is not None and np.any(order != row):  # one series, or already grouped: no gather copies
        o, h, l, c, ts, codes, row = (a[order] for a in (o, h, l, c, ts, codes, row))
    ingest = _ingest_record(on_bad_bars, n, symbol is not None)
    rules = rule_masks(o, h, l, c)
    bad_price = rules[0][1]
    broken = [(name, mask) for name, mask in rules if mask.any()]
    if broken and on_bad_bars == "error":
        raise BarsError(f"{where}: " + "; ".join(_describe(name, mask, row) for name, mask in broken)
                        + "; fix the data, or pass --on-bad-bars drop (or repair for the high/low ordering rules).")
    if broken and on_bad_bars == "repair":
        if bad_price.any():
            raise BarsError(f"{where}: {_describe(rules[0][0], bad_price, row)}; repair only widens high/low, "
                            "so fix the data or pass --on-bad-bars drop.")
        for name, mask in broken:
            ingest["repaired"][name] = _record(mask, row)
        h = np.maximum(h, np.maximum(o, c))
        l = np.minimum(l, np.minimum(o, c))
    keep = np.ones(n, dtype=bool)
    if broken and on_bad_bars == "drop":
        for name, mask in broken:
            ingest["dropped"][name] = _record(mask, row)
            keep &= ~mask

    # Strictly increasing time within each series: a bar must come after every
    # earlier kept bar of its series (so one bad early timestamp is the one dropped
    # only if it is later than what follows; the rule names the first rows).
    kept = np.flatnonzero(keep)
    kts, kcodes = ts[kept], codes[kept]
    not_after = np.zeros(len(kept), dtype=bool)
    bounds = np.flatnonzero(np.r_[True, kcodes[1:] != kcodes[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        running = np.maximum.accumulate(kts[a:b])
        not_after[a + 1:b] = kts[a + 1:b] <= running[:-1]
    if not_after.any():
        rule = "timestamp not after the previous bar of its series"
        bad_rows = np.zeros(n, dtype=bool)
        bad_rows[kept[not_after]] = True
        if on_bad_bars != "drop":
            raise BarsError(f"{where}: {_describe(rule, bad_rows, row)}; sort the file by time and remove "
                            "duplicates, or pass --on-bad-bars drop.")
        ingest["dropped"][rule] = _record(bad_rows, row)
        keep &= ~bad_rows

    if not keep.all():  # nothing dropped: no copies
        o, h, l, c, ts, codes = (a[keep] for a in (o, h, l, c, ts, codes))
    if len(c) == 0:
        raise BarsError(f"{where}: no bars are left after dropping bad bars; fix the data.")
    present = np.unique(codes)
    if len(present) < len(names):
        gone = [names[k] for k in range(len(names)) if k not in set(present.tolist())]
        raise BarsError(f"{where}: symbol(s) {', '.join(gone)} have no bars left after dropping bad bars; "
                        "fix the data or remove those symbols.")
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]).astype(np.int64)
    ingest["bars"] = int(len(c))
    return Bars(o, h, l, c, ts.astype(np.int64), starts, names, source, ingest)


def decode_table(path: Path, table) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """The columns of a pyarrow table as ``(prices {name: [n] float64}, ts [n] int64 ns, symbol [n] str or None)``."""
    cols = _match_columns(path, table.column_names)
    prices = {name: _float_column(table.column(cols[name])) for name in PRICE_COLUMNS}
    return prices, _time_column(path, table, cols), _symbol_column(path, table, cols)


def encode_symbols(symbol: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``(codes [n] int64, names)``: each row's index into the sorted distinct symbol names."""
    names, codes = np.unique(symbol, return_inverse=True)
    return codes.astype(np.int64), tuple(str(x) for x in names)


def rule_masks(o, h, l, c) -> list:
    """The per-bar ingest rules: ``[(rule, [n] bool mask of the bars breaking it)]``, numpy or CuPy alike."""
    xp = array_module(c)
    finite = xp.isfinite(o) & xp.isfinite(h) & xp.isfinite(l) & xp.isfinite(c)
    with np.errstate(invalid="ignore"):
        bad_price = ~finite | (o <= 0) | (h <= 0) | (l <= 0) | (c <= 0)
        low_above = ~bad_price & (l > xp.minimum(o, c))
        high_below = ~bad_price & (h < xp.maximum(o, c))
    return [
        ("price missing, non-finite or <= 0", bad_price),
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


def _series_name(where) -> str:
    """Name of the one series of a file without a symbol column: the file name without suffixes."""
    name = Path(str(where)).name
    for suffix in (".gz", ".csv", ".parquet", ".pq"):
        name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
    return name or "series"


def _record(mask: np.ndarray, row: np.ndarray) -> dict:
    bad = np.sort(row[mask])
    return {"count": int(len(bad)), "first_rows": bad[:_SHOW_ROWS].tolist()}


def _describe(rule: str, mask: np.ndarray, row: np.ndarray) -> str:
    r = _record(mask, row)
    rows = ", ".join(str(x) for x in r["first_rows"])
    return f"{r['count']} bar(s) break the rule '{rule}' (first data rows, 0-based: {rows})"


# --- file reading (pyarrow) ------------------------------------------------------------


def _read_table(path: Path):
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if name.endswith((".csv", ".csv.gz")):
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
    except ImportError:
        raise BarsError(f"{path}: reading bars needs pyarrow; run `pip install pyarrow`.") from None
    except Exception as err:  # pyarrow raises ArrowInvalid and friends with useful text
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BarsError(f"{path}: the file could not be parsed ({first}); check that it is a valid "
                        f"{'parquet' if name.endswith(('.parquet', '.pq')) else 'CSV'} file.") from None
    raise BarsError(f"{path}: unsupported file type '{path.suffix}'; give a .parquet, .pq, .csv or .csv.gz file.")


def _match_columns(path: Path, column_names) -> dict:
    """``{lower-case name: name in the file}``; refuses names equal but for case, and missing prices."""
    column_names = [str(x) for x in column_names]
    by_lower: dict[str, str] = {}
    for name in column_names:
        key = name.lower()
        if key in by_lower:
            raise BarsError(f"{path}: columns '{by_lower[key]}' and '{name}' differ only in case; "
                            "keep one of them.")
        by_lower[key] = name
    missing = [c for c in PRICE_COLUMNS if c not in by_lower]
    if missing:
        raise BarsError(f"{path}: missing column(s) {', '.join(missing)}; required (any case): "
                        f"{', '.join(PRICE_COLUMNS)}, found: {', '.join(column_names)}.")
    return by_lower


def _float_column(col) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type)):
        col = pc.cast(col, pa.float64(), safe=False)
    col = pc.cast(col, pa.float64())
    return col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def _time_column(path: Path, table, cols: dict) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    name = next((cols[t] for t in TIME_COLUMNS if t in cols), None)
    if name is None:
        name = _pandas_index_column(table)
    if name is None:
        raise BarsError(f"{path}: no time column; name one of {', '.join(TIME_COLUMNS)} (any case) "
                        "or store the time as the parquet index.")
    col = table.column(name)
    if col.null_count:
        first = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[:_SHOW_ROWS].tolist()
        raise BarsError(f"{path}: {col.null_count} bar(s) have no time in column '{name}' "
                        f"(first data rows, 0-based: {', '.join(map(str, first))}); fill or remove them.")
    t = col.type
    try:
        if pa.types.is_integer(t):
            v = col.to_numpy(zero_copy_only=False).astype(np.int64)
            return v * _epoch_scale(v)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            col = pc.cast(col, pa.timestamp("ns"))
            t = col.type
        if pa.types.is_date(t):
            col = pc.cast(pc.cast(col, pa.timestamp("s")), pa.timestamp("ns"))
            t = col.type
        if pa.types.is_timestamp(t):
            col = pc.cast(col, pa.timestamp("ns", tz=t.tz))
            return col.cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise BarsError(f"{path}: time column '{name}' could not be read as timestamps "
                        f"({str(err).splitlines()[0]}); use ISO 8601 text, a timestamp type or epoch integers.") from None
    raise BarsError(f"{path}: time column '{name}' has type {t}, which is not a time; use ISO 8601 text, "
                    "a timestamp type or epoch integers.")


def _epoch_scale(v) -> int:
    """ns per unit of integer epoch times ``v`` (numpy or CuPy), judged by the largest magnitude."""
    mag = int(abs(v).max()) if len(v) else 0
    return NS_PER["s"] if mag < 1e11 else NS_PER["ms"] if mag < 1e14 else NS_PER["us"] if mag < 1e17 else 1


def _pandas_index_column(table) -> str | None:
    import json

    meta = (table.schema.metadata or {}).get(b"pandas")
    if not meta:
        return None
    for idx in json.loads(meta).get("index_columns", []):
        if isinstance(idx, str) and idx in table.column_names:
            return idx
    return None


def _symbol_column(path: Path, table, cols: dict) -> np.ndarray | None:
    if "symbol" not in cols:
        return None
    col = table.column(cols["symbol"])
    if col.null_count:
        first = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[:_SHOW_ROWS].tolist()
        raise BarsError(f"{path}: {col.null_count} bar(s) have no symbol (first data rows, 0-based: "
                        f"{', '.join(map(str, first))}); fill the symbol column or remove it.")
    return np.asarray(col.to_pylist(), dtype=object).astype(str)


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
    cols = _match_columns(path, df.columns)
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
