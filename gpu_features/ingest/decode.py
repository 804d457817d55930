"""Bar files and tables decoded into plain columns: prices, UTC times, series keys.

What comes in: a file, several files, a directory or a glob (:mod:`.inputs`,
each file read by :mod:`.files`), or any table that speaks the Arrow interface
(pyarrow, pandas, polars: ``pyarrow.table(obj)``).

What goes out: :class:`Decoded` columns for :func:`.assemble.assemble`, which
applies the ingest rules. Decoding uses pyarrow's readers and compute kernels,
never per-row Python: the series key is read dictionary-encoded (integer
codes), times are parsed by :mod:`.times`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..arrays import arrow_numbers
from ..errors import BarsError
from .files import read_file
from .inputs import expand_inputs, file_digest, is_table, series_name, table_from_object
from .presets import (PRICE_COLUMNS, TIME_COLUMNS, column_map, detect_from_columns, pick_layout, resolve_columns,
                      series_key_column)
from .spec import ReadSpec
from .times import SHOW_ROWS, parse_times

_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
TINY_SERIES_MIN = 10  # series at least, half of them one bar each: a key column that is not one is warned about


@dataclasses.dataclass
class Decoded:
    """Decoded columns of one or several files (rows in file order, files in input order).

    Attributes:
        prices: ``{"open"|"high"|"low"|"close": [n] float64}`` (NaN where missing).
        timestamp: ``[n] int64`` ns since the epoch, UTC.
        symbol_codes: ``[n] int64`` index into ``symbol_names`` (sorted), or None for one series.
        symbol_names: series names (one name, the file's, when ``symbol_codes`` is None).
        keyed: the files have a series column (False: each file is a series named after it, so several
            files without one have ``symbol_codes`` too).
        roll_codes: ``[n] int64`` contract code per row, an index into ``roll_names`` (sorted); segments
            are cut where it changes. None without a roll column.
        file_of_row: ``[n] int32`` index into ``files``.
        files: ``[{"path", "bytes", "sha256", "rows"}]`` (a table in memory: ``{"kind": "memory"}``).
        format: the preset that decoded the rows.
        bar_time: ``start`` or ``end`` (which edge of the bar the time stamps).
        warnings: sentences to show the user (1970-era times...).
    """

    prices: dict
    timestamp: np.ndarray
    symbol_codes: np.ndarray | None
    symbol_names: tuple
    roll_codes: np.ndarray | None
    file_of_row: np.ndarray
    files: list
    format: str
    bar_time: str = "start"
    warnings: list = dataclasses.field(default_factory=list)
    roll_names: tuple = ()
    keyed: bool = True

    @property
    def n(self) -> int:
        return int(len(self.timestamp))

    def row_label(self, rows: np.ndarray) -> list[str]:
        """Human names of global rows: ``"12"`` for one file, ``"b.csv:12"`` for several (0-based data rows)."""
        starts = np.cumsum([0] + [f.get("rows", 0) for f in self.files])
        if len(self.files) == 1:
            return [str(int(r)) for r in rows]
        out = []
        for r in rows:
            k = int(self.file_of_row[r])
            out.append(f"{Path(self.files[k].get('path', 'table')).name}:{int(r - starts[k])}")
        return out


def decode_inputs(inputs, opts: ReadSpec) -> Decoded:
    """Decode a file, several files, a directory, a glob or a table (see module doc)."""
    if is_table(inputs):
        return decode_table("the table", table_from_object(inputs), opts, {"kind": "memory"})
    paths = expand_inputs(inputs)
    parts = []
    for p in paths:
        try:
            parts.append(decode_file(p, opts))
        except BarsError:
            raise
        except Exception as err:  # a decoder's own error on odd input: still one sentence, exit 2
            import pyarrow as pa

            if not isinstance(err, (pa.ArrowException, ValueError, OSError)):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BarsError(f"{p}: the file could not be decoded ({first}); check its layout against the README's "
                            "Inputs table or pass --format and the column options.") from None
    return parts[0] if len(parts) == 1 else _concat(parts)


def _concat(parts: list[Decoded]) -> Decoded:
    keyed = [p.symbol_codes is not None for p in parts]
    if any(keyed) and not all(keyed):  # a keyless file would be a series of its own among the symbols
        without, having = parts[keyed.index(False)], parts[keyed.index(True)]
        raise BarsError(f"{without.files[0].get('path')} has no series column but {having.files[0].get('path')} "
                        f"has one, so the first would be a series of its own named "
                        f"'{without.symbol_names[0]}' beside the others' symbols (not the continuation of one); "
                        "give every file the series column (or --symbol-column), or read the two kinds of file "
                        "in separate runs.")
    # Files without a series column are each a series named after the file (files of one name join in time order).
    names = sorted(set().union(*[p.symbol_names for p in parts]))
    index = {n: k for k, n in enumerate(names)}
    codes = []
    for p in parts:
        if p.symbol_codes is None:
            codes.append(np.full(p.n, index[p.symbol_names[0]], dtype=np.int64))
        else:
            remap = np.array([index[n] for n in p.symbol_names], dtype=np.int64)
            codes.append(remap[p.symbol_codes])
    formats_seen = sorted({p.format for p in parts})
    if len(formats_seen) > 1:
        raise BarsError(f"the input files have different layouts ({', '.join(formats_seen)}); give files of one layout "
                        "per run (or force one with --format).")
    # Roll codes index each file's own sorted contract names: compare them across files by name.
    roll_names = sorted(set().union(*[p.roll_names for p in parts]))
    roll_index = {n: k for k, n in enumerate(roll_names)}
    rolls = [None if p.roll_codes is None else np.array([roll_index[n] for n in p.roll_names],
                                                         dtype=np.int64)[p.roll_codes] for p in parts]
    files = [f for p in parts for f in p.files]
    return Decoded(
        prices={k: np.concatenate([p.prices[k] for p in parts]) for k in PRICE_COLUMNS},
        timestamp=np.concatenate([p.timestamp for p in parts]),
        symbol_codes=np.concatenate(codes) if all(keyed) or len(names) > 1 else None,
        symbol_names=tuple(names),
        roll_codes=None if rolls[0] is None else np.concatenate(rolls),
        file_of_row=np.concatenate([np.full(p.n, k, dtype=np.int32) for k, p in enumerate(parts)]),
        files=files, format=parts[0].format, bar_time=parts[0].bar_time,
        warnings=[w for p in parts for w in p.warnings], roll_names=tuple(roll_names), keyed=all(keyed))


def decode_file(path: Path, opts: ReadSpec) -> Decoded:
    """Decode one file (kind chosen by its name; see :func:`.files.read_file`)."""
    table, fmt = read_file(path, opts)
    return decode_table(path, table, opts, file_digest(path), fmt)


def decode_table(where, table, opts: ReadSpec, source: dict, fmt: str | None = None) -> Decoded:
    """Decode a pyarrow table of bars (see module doc).

    Args:
        where: the file (or a description) named in messages.
        table: the raw table.
        opts: the read settings.
        source: the file's digest (``{"kind": "memory"}`` for a table in memory).
        fmt: the preset the file's name or first line chose (None: detect from the columns).
    """
    if table.num_rows == 0:
        raise BarsError(f"{where}: the file holds no bars (0 rows); give a file with at least one bar.")
    by_lower = column_map(where, table.column_names)

    def detected() -> str:
        if fmt is not None:
            return fmt
        sample = None
        if "date" in by_lower:
            v = table.column(by_lower["date"])[0].as_py()
            sample = v if isinstance(v, str) else None
        return detect_from_columns(list(by_lower), sample)

    preset = pick_layout(opts.format, detected)
    cols = resolve_columns(where, by_lower, preset, opts.rename, table.column_names)
    missing = [c for c in PRICE_COLUMNS if c not in cols]
    if missing:
        raise BarsError(f"{where}: missing column(s) {', '.join(missing)}; required (any case): "
                        f"{', '.join(PRICE_COLUMNS)}, found: {', '.join(map(str, table.column_names))}"
                        + (" (a ';'-separated file? pass --delimiter ';')" if any(";" in str(c) for c in table.column_names)
                           else "")
                        + (f" (as --format {opts.format} lays the file out; leave --format out to detect the layout)"
                           if opts.format != "auto" else "") + "; or map them with --rename.")
    scale = opts.price_scale
    prices = {k: _float_column(where, table.column(cols[k]), cols[k], preset.fixed_point, scale) for k in PRICE_COLUMNS}
    warnings: list[str] = []
    codes, names = _series_key(where, table, cols, opts, preset, warnings)
    roll, roll_names = None, ()
    if opts.roll_column:
        name = cols.get(opts.roll_column.strip().lower())
        if name is None:
            raise BarsError(f"{where}: --roll-column '{opts.roll_column}' is not a column (found: "
                            f"{', '.join(table.column_names)}).")
        role = _price_or_time(cols, opts, name, times=False)
        if role is not None:
            raise BarsError(f"{where}: --roll-column {opts.roll_column} names the {role} column '{name}', which would "
                            "start a new segment at every price change; give the column that names each bar's "
                            "contract (such as instrument_id), or leave the option out.")
        roll, roll_names = _codes(where, table.column(name), name, "roll")
    ts = parse_times(where, table, cols, opts, preset, codes, warnings)
    n = table.num_rows
    return Decoded(prices, ts, codes, names if codes is not None else (series_name(where),), roll,
                   np.zeros(n, dtype=np.int32), [dict(source, rows=n)], preset.name, preset.bar_time, warnings,
                   roll_names)


def _float_column(where, col, name: str, fixed_point: int | None, scale: float | None) -> np.ndarray:
    """``[n] float64`` prices; text is checked for numbers first so a bad cell is named, not a traceback."""
    import pyarrow as pa

    t = col.type
    if pa.types.is_dictionary(t):
        col = col.cast(t.value_type)
        t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        import pyarrow.compute as pc

        trimmed = pc.utf8_trim_whitespace(col)
        ok = pc.match_substring_regex(trimmed, _NUMBER)
        ok = pc.or_kleene(ok, pc.equal(pc.utf8_length(trimmed), 0))  # empty: missing, a bad-bar rule
        bad = np.flatnonzero(~ok.to_numpy(zero_copy_only=False).astype(bool) & ~col.is_null().to_numpy(zero_copy_only=False))
        if len(bad):
            value = trimmed[int(bad[0])].as_py()
            hint = ("remove the thousands separators" if "," in value else
                    "write prices as plain numbers (a '.' for the decimal point)")
            raise BarsError(f"{where}: column '{name}' row {int(bad[0])} (0-based data row) holds {value!r}, which is "
                            f"not a number ({len(bad)} such row(s)); {hint}.")
        col = pc.if_else(pc.equal(pc.utf8_length(trimmed), 0), pa.scalar(None, pa.string()), trimmed)
        col = pc.cast(col, pa.float64())
        t = col.type
    if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t)):
        raise BarsError(f"{where}: column '{name}' has type {t}, not a number; give prices as numbers.")
    integer = pa.types.is_integer(t)
    if t != pa.float64():  # doubles as they are: pyarrow.compute (50 ms to import) only where a cast is needed
        import pyarrow.compute as pc

        col = pc.cast(col, pa.float64())
    v = arrow_numbers(col).astype(np.float64, copy=False)
    if fixed_point and integer:
        v = v / fixed_point  # one correctly rounded division: the nearest double to the decimal price
    if scale is not None:
        inv = 1.0 / scale
        v = v / inv if inv == round(inv) else v * scale
    return v


def _codes(where, col, name: str, what: str) -> tuple[np.ndarray, tuple]:
    """``(codes [n] int64, names)`` of a key column via its dictionary, names sorted; no Python strings per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if col.null_count:
        first = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[:SHOW_ROWS].tolist()
        raise BarsError(f"{where}: {col.null_count} bar(s) have no {what} in column '{name}' (first data rows, 0-based: "
                        f"{', '.join(map(str, first))}); fill the column or remove it.")
    if not pa.types.is_dictionary(col.type):
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pc.cast(col, pa.string())
        col = pc.dictionary_encode(col)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    values = arr.dictionary.cast(pa.string()).to_pylist()
    codes = arrow_numbers(arr.indices).astype(np.int64)
    used = np.flatnonzero(np.bincount(codes, minlength=len(values)))  # a dictionary may hold unused values
    values = [values[k] for k in used]
    order = np.argsort(np.array(values, dtype=object)) if values else np.zeros(0, dtype=np.int64)
    remap = np.zeros(int(used.max()) + 1 if len(used) else 1, dtype=np.int64)
    remap[used[order]] = np.arange(len(used))
    return remap[codes], tuple(str(values[k]) for k in order)


def _price_or_time(cols: dict, opts: ReadSpec, name: str, times: bool = True) -> str | None:
    """``"close price"``, ``"time"``...: what the file column ``name`` already is to the decoder, or None."""
    price = next((p for p in PRICE_COLUMNS if cols.get(p) == name), None)
    if price is not None:
        return f"{price} price"
    named = [cols.get(c.strip().lower()) for c in (opts.time_column, opts.date_column) if c]
    if times and name in named + [cols[t] for t in TIME_COLUMNS if t in cols]:
        return "time"
    return None


def _series_key(where, table, cols: dict, opts: ReadSpec, preset, warnings: list) -> tuple:
    """``(codes, names)`` of the column :func:`.presets.series_key_column` names, or ``(None, ())``.

    A price or time column is refused as the key (``--symbol-column close`` would make a "symbol" of every
    price); a key that leaves at least half of its (10 or more) series a single bar is warned about.
    """
    name = series_key_column(cols, preset, opts.symbol_column)
    if name is None and opts.symbol_column:
        raise BarsError(f"{where}: --symbol-column '{opts.symbol_column}' is not a column (found: "
                        f"{', '.join(table.column_names)}).")
    if name is None:
        return None, ()
    role = _price_or_time(cols, opts, name)
    if role is not None:
        given = f"--symbol-column {opts.symbol_column}" if opts.symbol_column else f"the series column '{name}'"
        raise BarsError(f"{where}: {given} names the {role} column '{name}', which would make a series of every "
                        f"{role.split()[-1]}; give the column that names each bar's symbol or contract, or leave the "
                        "option out (a file without one is one series, named after the file).")
    codes, names = _codes(where, table.column(name), name, "symbol")
    sizes = np.bincount(codes, minlength=len(names))
    single = int(np.count_nonzero(sizes == 1))
    if len(names) >= TINY_SERIES_MIN and 2 * single >= len(names):
        warnings.append(f"{where}: the series column '{name}' splits {len(codes):,} rows into {len(names):,} series, "
                        f"{single:,} of them a single bar (too short for any window); check that '{name}' names each "
                        "bar's symbol (--symbol-column)")
    return codes, names
