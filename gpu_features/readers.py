"""Decoding bar files and tables into plain columns: prices, UTC times, series keys.

What comes in: parquet; CSV (``.csv``, ``.txt``, compressed ``.gz``/``.bz2``/``.zst``;
delimiter sniffed, header or not); Databento DBN (``.dbn``, ``.dbn.zst``; needs the
``databento`` extra); Sierra Chart ``.scid``; Polygon REST aggregates ``.json``; many
files at once (a list, a directory, a glob); and any table that speaks the Arrow
interface (pyarrow, pandas, polars: ``pyarrow.table(obj)``).

What goes out: :class:`Decoded` columns for ``bars.assemble``, which applies the
ingest rules. Decoding uses pyarrow's readers and compute kernels, never per-row
Python: the series key is read dictionary-encoded (integer codes), times are
parsed by regular-expression kernels and numpy arithmetic.

Times: int64 ns since the epoch, UTC. Naive times (no zone in the text or type)
are read in ``timezone`` (an IANA name; default UTC) and converted; in the hour a
clock falls back, the repeated times take the later offset once the clock is
seen to go back. Integer epochs are judged by magnitude (s, ms, us, ns); a
``date`` column of yyyymmdd integers is read as dates.
"""
from __future__ import annotations

import dataclasses
import glob as globmod
import io
import json
import os
import re
from pathlib import Path

import numpy as np

from . import formats
from .errors import BarsError

PRICE_COLUMNS = ("open", "high", "low", "close")
TIME_COLUMNS = ("timestamp", "ts_event", "datetime", "date", "time")
FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".txt", ".txt.gz", ".txt.zst",
                 ".dbn", ".dbn.zst", ".scid", ".json")
NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
NS_PER_DAY = 86_400 * NS_PER["s"]
EPOCH_1980_S = 315_532_800          # integer times below this many seconds are 1970s: warned
_SHOW_ROWS = 5
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """How to read bar files; every field is optional and JSON-able (recorded in the manifest).

    Attributes:
        format: a preset of :mod:`gpu_features.formats` or ``auto`` (detected).
        time_column: the column holding the time (default: the first of ``TIME_COLUMNS``).
        date_column: a date column combined with ``time_column`` (time of day).
        time_format: strptime format of the time column (``%Y%m%d %H%M%S``...).
        timezone: IANA zone of naive times (default UTC).
        symbol_column: the column naming each bar's series (default ``symbol``).
        roll_column: a contract/instrument column; a series is cut into segments where it changes.
        rename: ``{file column: our column}`` (``open``, ``high``, ``low``, ``close``, ``time``, ``symbol``).
        delimiter: CSV delimiter (default: sniffed from the first line among ``, ; tab |``).
        header: False for a CSV without a header line (columns: ``columns``).
        columns: column names of a headerless CSV [time, open, high, low, close, volume].
        price_scale: multiply prices by this (``1e-9`` for fixed-point prices).
    """

    format: str = "auto"
    time_column: str | None = None
    date_column: str | None = None
    time_format: str | None = None
    timezone: str | None = None
    symbol_column: str | None = None
    roll_column: str | None = None
    rename: dict | None = None
    delimiter: str | None = None
    header: bool = True
    columns: tuple | None = None
    price_scale: float | None = None

    def record(self) -> dict:
        """The fields that differ from the defaults (what the manifest records)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v != f.default:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_record(cls, rec: dict | None) -> "ReadOptions":
        rec = dict(rec or {})
        if "columns" in rec and rec["columns"] is not None:
            rec["columns"] = tuple(rec["columns"])
        return cls(**{k: v for k, v in rec.items() if k in {f.name for f in dataclasses.fields(cls)}})


@dataclasses.dataclass
class Decoded:
    """Decoded columns of one or several files (rows in file order, files in input order).

    Attributes:
        prices: ``{"open"|"high"|"low"|"close": [n] float64}`` (NaN where missing).
        timestamp: ``[n] int64`` ns since the epoch, UTC.
        symbol_codes: ``[n] int64`` index into ``symbol_names`` (sorted), or None for one series.
        symbol_names: series names (one name, the file's, when ``symbol_codes`` is None).
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


# --- inputs: files, directories, globs, tables ------------------------------------------------


def is_table(obj) -> bool:
    """True for a pyarrow Table or anything exporting the Arrow C stream (polars) or a pandas DataFrame."""
    return hasattr(obj, "__arrow_c_stream__") or type(obj).__name__ in ("Table", "DataFrame", "RecordBatch")


def expand_inputs(inputs) -> list[Path]:
    """Files of one or several inputs: a file, a directory (its bar files, by name), a glob.

    Raises:
        BarsError: an input that names nothing readable, or no files at all.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise BarsError("no input given; pass a bar file, several files, a directory or a glob.")
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.name.lower().endswith(FILE_SUFFIXES)
                           and not q.name.startswith("."))
            if not found:
                raise BarsError(f"{p}: the directory holds no bar files ({', '.join(FILE_SUFFIXES)}); "
                                "give a directory of bar files or the files themselves.")
            files += found
        elif p.is_file():
            files.append(p)
        elif any(ch in str(item) for ch in "*?["):
            found = sorted(Path(q) for q in globmod.glob(str(item), recursive=True) if Path(q).is_file())  # ** recurses
            if not found:
                raise BarsError(f"{item}: the pattern matches no file; check the path and the quoting.")
            files += found
        elif p.exists():
            raise BarsError(f"{p}: not a regular file or directory; give a bar file, a directory or a glob.")
        else:
            raise BarsError(f"{p}: no such file or directory; give a bar file, several files, a directory or a glob.")
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key in seen:
            raise BarsError(f"{f}: given twice; each input file may be named once.")
        seen.add(key)
        unique.append(f)
    return unique


def decode_inputs(inputs, opts: ReadOptions) -> Decoded:
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


def table_from_object(obj):
    """A pyarrow Table from a pyarrow/pandas/polars table (the Arrow C stream interface)."""
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    try:
        return pa.table(obj)
    except Exception as err:  # pyarrow says what it could not convert
        raise BarsError(f"the table could not be converted to Arrow ({str(err).splitlines()[0]}); pass a pyarrow, "
                        "pandas or polars table of bars.") from None


def _concat(parts: list[Decoded]) -> Decoded:
    names = sorted(set().union(*[p.symbol_names for p in parts]))
    has_symbols = any(p.symbol_codes is not None for p in parts)
    if not has_symbols and len(set(p.symbol_names for p in parts)) > 1:
        # Files without a symbol column are one series (the time order joins them): name it after the first.
        names = [parts[0].symbol_names[0]]
    index = {n: k for k, n in enumerate(names)}
    codes = []
    for p in parts:
        if p.symbol_codes is None:
            codes.append(np.full(p.n, index.get(p.symbol_names[0], 0), dtype=np.int64))
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
        symbol_codes=np.concatenate(codes) if has_symbols else None,
        symbol_names=tuple(names),
        roll_codes=None if rolls[0] is None else np.concatenate(rolls),
        file_of_row=np.concatenate([np.full(p.n, k, dtype=np.int32) for k, p in enumerate(parts)]),
        files=files, format=parts[0].format, bar_time=parts[0].bar_time,
        warnings=[w for p in parts for w in p.warnings], roll_names=tuple(roll_names))


# --- one file ---------------------------------------------------------------------------------


def file_digest(path: str | os.PathLike) -> dict:
    """``{"kind": "file", "path", "bytes", "sha256"}`` of a file (its source record)."""
    from .fileio import sha256_file

    return {"kind": "file", "path": str(Path(path).resolve()), "bytes": Path(path).stat().st_size,
            "sha256": sha256_file(path)}


def decode_file(path: Path, opts: ReadOptions) -> Decoded:
    """Decode one file (kind chosen by its name; see module doc)."""
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise BarsError(f"{path}: no such file; give a parquet, CSV, DBN or SCID file of OHLC bars.")
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise BarsError(f"{path}: the file cannot be read (permission denied); check its permissions "
                        "(chmod u+r) or run as a user who may read it.") from None
    except OSError as err:
        raise BarsError(f"{path}: the file cannot be read ({err.strerror}); check the disk and the path.") from None
    if not name.endswith(FILE_SUFFIXES):
        raise BarsError(f"{path}: unsupported file type '{path.suffix}'; give a " + ", ".join(FILE_SUFFIXES) + " file.")
    digest = file_digest(path)
    if name.endswith((".parquet", ".pq")):
        table = _read_parquet(path, opts)
        fmt = None
    elif name.endswith((".dbn", ".dbn.zst")):
        table, fmt = _read_dbn(path), "databento"
    elif name.endswith(".scid"):
        table, fmt = _read_scid(path), "scid"
    elif name.endswith(".json"):
        table, fmt = _read_polygon_json(path), "polygon"
    else:
        table, fmt = _read_csv(path, opts)
    if opts.format != "auto":
        fmt = opts.format
    return decode_table(path, table, opts, digest, fmt)


def _fail(path, err, what: str):
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise BarsError(f"{path}: the file could not be parsed as {what} ({first}); check that it is a valid {what} "
                    "file.") from None


def _read_parquet(path: Path, opts: ReadOptions):
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        sym = _pick(list(schema.names), [opts.symbol_column or "symbol", "ticker"])
        # ParquetFile, not read_table: read_table goes through pyarrow.dataset, whose import loads pandas
        # where it is installed (0.2-0.5 s of a 1 s CLI run); one file reads to the same table either way.
        return pq.ParquetFile(path, read_dictionary=[sym] if sym else None).read()
    except BarsError:
        raise
    except Exception as err:  # pyarrow raises ArrowInvalid and friends with useful text
        _fail(path, err, "parquet")


def _pick(names: list[str], wanted: list[str]) -> str | None:
    """The first name in ``names`` equal (case-insensitively, spaces stripped) to one of ``wanted``."""
    by = {str(n).strip().lower(): n for n in names}
    return next((by[w.strip().lower()] for w in wanted if w and w.strip().lower() in by), None)


def _head(path: Path, n: int = 1 << 16) -> bytes:
    import pyarrow as pa

    try:
        with pa.input_stream(str(path), compression="detect") as f:
            return f.read(n)
    except Exception as err:
        _fail(path, err, "compressed CSV" if path.suffix.lower() in (".gz", ".zst", ".bz2") else "CSV")


def sniff_delimiter(first_line: str) -> str:
    """The most frequent of ``, ; tab |`` in a CSV's first line (``,`` when none occurs)."""
    counts = {d: first_line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _read_csv(path: Path, opts: ReadOptions, data: bytes | None = None, fmt: str | None = None):
    """A CSV file (or ``data``, its bytes) as a pyarrow table, and the preset its first line shows."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    head = data[: 1 << 16] if data is not None else _head(path)
    fmt = fmt or formats.detect_from_file(path.name.lower(), head)
    preset = formats.preset(opts.format if opts.format != "auto" else (fmt or "generic"))
    text = head.decode("utf-8", "replace")
    first = text.split("\n", 1)[0].rstrip("\r")
    delimiter = opts.delimiter or preset.delimiter or sniff_delimiter(first)
    header = opts.header and preset.csv_header is None
    if header:
        names = [c.strip().strip('"').strip() for c in first.split(delimiter)]
    else:
        names = list(opts.columns or preset.csv_header or ("time", "open", "high", "low", "close", "volume"))
        width = len(first.split(delimiter))
        if width != len(names):
            names = (names + [f"extra{k}" for k in range(width)])[:width]
    if fmt is None:
        lower = [n.lower() for n in names]
        sample = None
        if "date" in lower and "\n" in text:
            row = text.split("\n", 2)[1].rstrip("\r").split(delimiter)
            sample = row[lower.index("date")].strip().strip('"') if len(row) > lower.index("date") else None
        fmt = formats.detect_from_columns(lower, sample)
    # Text columns that carry times are read as text (our parsers), the series key dictionary-encoded.
    types = {}
    sym = _pick(names, [opts.symbol_column or "symbol", "ticker"])
    if sym:
        types[sym] = pa.dictionary(pa.int32(), pa.string())
    for col in (opts.time_column, opts.date_column, "date", "time"):
        got = _pick(names, [col]) if col else None
        if got and (fmt in ("sierrachart", "date-time", "ninjatrader", "ib") or col in (opts.time_column,
                                                                                        opts.date_column)):
            types[got] = pa.string()
    read = pcsv.ReadOptions(column_names=None if header else names, block_size=1 << 24)
    parse = pcsv.ParseOptions(delimiter=delimiter)
    convert = pcsv.ConvertOptions(column_types=types, strings_can_be_null=False)
    source = io.BytesIO(data) if data is not None else str(path)
    try:
        table = pcsv.read_csv(source, read_options=read, parse_options=parse, convert_options=convert)
    except Exception as err:
        first_err = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = ""
        other = sniff_delimiter(first) if opts.delimiter else None
        if other and other != delimiter:
            hint = f" (the first line looks '{other}'-separated: try --delimiter '{other}')"
        elif "columns" in first_err and "," in text and delimiter == ",":
            hint = " (a ',' inside a value, such as a thousands separator in '1,199.5', splits it: quote such values)"
        raise BarsError(f"{path}: the file could not be parsed as CSV with delimiter '{delimiter}' ({first_err})"
                        f"{hint}; fix the file or pass --delimiter.") from None
    return table, fmt


def _read_dbn(path: Path):
    """A DBN file (plain or zstd) transcoded to CSV by databento-dbn: integer ns times, fixed-point prices."""
    import pyarrow as pa

    try:
        import databento_dbn as dbn
    except ImportError:
        raise BarsError(f"{path}: reading DBN files needs databento-dbn; run `pip install 'gpu-features[databento]'` "
                        "or convert the file to parquet with the databento client.") from None
    compression = "zstd" if path.name.lower().endswith(".zst") else None
    try:
        with pa.input_stream(str(path), compression=compression) as f:
            raw = f.read()
        out = io.BytesIO()
        trans = dbn.Transcoder(out, dbn.Encoding.CSV, dbn.Compression.NONE, pretty_px=False, pretty_ts=False,
                               map_symbols=True)
        trans.write(raw)
        trans.flush()
    except Exception as err:  # databento-dbn and pyarrow's zstd say what is wrong
        _fail(path, err, "DBN")
    table, _ = _read_csv(path, ReadOptions(), out.getvalue(), fmt="databento")
    sym = _pick(table.column_names, ["symbol"])
    if sym is not None and table.num_rows and _all_empty(table.column(sym)):
        table = table.drop_columns([sym])  # no symbology in the file: instrument_id keys the series
    return table


def _all_empty(col) -> bool:
    import pyarrow.compute as pc

    col = col.cast(col.type.value_type) if hasattr(col.type, "value_type") else col
    return bool(pc.all(pc.equal(pc.utf8_length(col.fill_null("")), 0)).as_py())


# Sierra Chart intraday data file: a 56-byte header, then 40-byte records (s_IntradayRecord).
SCID_HEADER = np.dtype([("magic", "S4"), ("header_size", "<u4"), ("record_size", "<u4"), ("version", "<u2"),
                        ("unused", "<u2"), ("utc_start_index", "<u4"), ("reserve", "S36")])
SCID_RECORD = np.dtype([("datetime", "<i8"), ("open", "<f4"), ("high", "<f4"), ("low", "<f4"), ("close", "<f4"),
                        ("num_trades", "<u4"), ("total_volume", "<u4"), ("bid_volume", "<u4"), ("ask_volume", "<u4")])
SCID_EPOCH_DAYS = 25_569  # 1899-12-30 .. 1970-01-01


def _read_scid(path: Path):
    """A ``.scid`` file: SCDateTime int64 microseconds since 1899-12-30 (UTC), float32 prices."""
    import pyarrow as pa

    raw = path.read_bytes()
    if len(raw) < SCID_HEADER.itemsize or raw[:4] != b"SCID":
        raise BarsError(f"{path}: not a Sierra Chart intraday file (no 'SCID' header); give a .scid file or export "
                        "the chart as text.")
    head = np.frombuffer(raw, SCID_HEADER, count=1)[0]
    if head["record_size"] != SCID_RECORD.itemsize or head["header_size"] < SCID_HEADER.itemsize:
        raise BarsError(f"{path}: SCID header says {head['header_size']}-byte header and {head['record_size']}-byte "
                        f"records; only the {SCID_RECORD.itemsize}-byte record layout is read, re-export the file.")
    body = raw[int(head["header_size"]):]
    n = len(body) // SCID_RECORD.itemsize
    if n * SCID_RECORD.itemsize != len(body):
        raise BarsError(f"{path}: {len(body) % SCID_RECORD.itemsize} trailing bytes after {n} records (truncated); "
                        "copy the file again.")
    rec = np.frombuffer(body, SCID_RECORD, count=n)
    us = rec["datetime"] - SCID_EPOCH_DAYS * 86_400 * 1_000_000
    plausible = (us >= EPOCH_1980_S * 1_000_000) & (us < 7_258_118_400 * 1_000_000)  # 1980 .. 2200
    if n and not plausible.all():
        k = int(np.flatnonzero(~plausible)[0])
        raise BarsError(f"{path}: record {k} has SCDateTime {int(rec['datetime'][k])}, not a time between 1980 and 2200 "
                        "as 64-bit microseconds since 1899-12-30 (an old-format or damaged .scid?); open and re-save "
                        "it in a current Sierra Chart, or export the chart as text.")
    ts = us * 1000
    return pa.table({"timestamp": pa.array(ts, type=pa.timestamp("ns", tz="UTC")),
                     **{k: rec[k].astype(np.float64) for k in PRICE_COLUMNS},
                     "volume": rec["total_volume"].astype(np.int64)})


def _read_polygon_json(path: Path):
    """A Polygon REST aggregates response: ``{"ticker", "results": [{"t", "o", "h", "l", "c", ...}]}``."""
    import pyarrow as pa

    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BarsError(f"{path}: not valid JSON ({err}); give a Polygon aggregates response.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise BarsError(f"{path}: a JSON input must be a Polygon aggregates response with a 'results' list.")
    table = pa.Table.from_pylist(doc["results"])
    if doc.get("ticker") and "ticker" not in table.column_names:
        table = table.append_column("ticker", pa.array([str(doc["ticker"])] * table.num_rows).dictionary_encode())
    return table


# --- columns of a table -------------------------------------------------------------------


def decode_table(where, table, opts: ReadOptions, source: dict, fmt: str | None = None) -> Decoded:
    """Decode a pyarrow table of bars (see module doc).

    Args:
        where: the file (or a description) named in messages.
        table: the raw table.
        opts: read options.
        source: the file's digest (``{"kind": "memory"}`` for a table in memory).
        fmt: the preset the file's name or first line chose (None: detect from the columns).
    """
    if table.num_rows == 0:
        raise BarsError(f"{where}: the file holds no bars (0 rows); give a file with at least one bar.")
    by_lower = _column_map(where, table.column_names)
    if opts.format != "auto":
        fmt = opts.format
    if fmt is None:
        sample = None
        if "date" in by_lower:
            v = table.column(by_lower["date"])[0].as_py()
            sample = v if isinstance(v, str) else None
        fmt = formats.detect_from_columns(list(by_lower), sample)
    preset = formats.preset(fmt)
    cols = dict(by_lower)
    for vendor, ours in preset.rename.items():
        if vendor in by_lower and ours not in by_lower:
            cols[ours] = by_lower[vendor]
    for theirs, ours in (opts.rename or {}).items():
        got = by_lower.get(str(theirs).strip().lower())
        if got is None:
            raise BarsError(f"{where}: --rename names column '{theirs}', which is not in the file (found: "
                            f"{', '.join(table.column_names)}).")
        cols[str(ours).strip().lower()] = got
    missing = [c for c in PRICE_COLUMNS if c not in cols]
    if missing:
        raise BarsError(f"{where}: missing column(s) {', '.join(missing)}; required (any case): "
                        f"{', '.join(PRICE_COLUMNS)}, found: {', '.join(map(str, table.column_names))}"
                        + (" (a ';'-separated file? pass --delimiter ';')" if any(";" in str(c) for c in table.column_names)
                           else "") + "; or map them with --rename.")
    scale = opts.price_scale
    prices = {k: _float_column(where, table.column(cols[k]), cols[k], preset.fixed_point, scale) for k in PRICE_COLUMNS}
    codes, names = _series_key(where, table, cols, opts, preset)
    roll, roll_names = None, ()
    if opts.roll_column:
        name = cols.get(opts.roll_column.strip().lower())
        if name is None:
            raise BarsError(f"{where}: --roll-column '{opts.roll_column}' is not a column (found: "
                            f"{', '.join(table.column_names)}).")
        roll, roll_names = _codes(where, table.column(name), name, "roll")
    warnings: list[str] = []
    ts = _time(where, table, cols, opts, preset, codes, warnings)
    n = table.num_rows
    return Decoded(prices, ts, codes, names if codes is not None else (_series_name(where),), roll,
                   np.zeros(n, dtype=np.int32), [dict(source, rows=n)], fmt, preset.bar_time, warnings, roll_names)


def _column_map(where, column_names) -> dict:
    """``{lower-case stripped name: name in the file}``; refuses names equal but for case."""
    out: dict[str, str] = {}
    for name in map(str, column_names):
        key = name.strip().lower()
        if key in out:
            raise BarsError(f"{where}: columns '{out[key]}' and '{name}' differ only in case or spaces; keep one of them.")
        out[key] = name
    return out


def _series_name(where) -> str:
    """Name of the one series of a file without a symbol column: the file name without suffixes."""
    name = Path(str(where)).name
    for _ in range(2):
        for suffix in (".gz", ".zst", ".bz2", ".csv", ".txt", ".parquet", ".pq", ".dbn", ".scid", ".json"):
            name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
    return name or "series"


def _numbers(arr) -> np.ndarray:
    """``arr.to_numpy(zero_copy_only=False)`` of a (chunked) pyarrow array of integers or floats, through
    DLPack when it has no nulls: pyarrow's own conversion imports pandas where it is installed (0.2-1 s
    of a CLI run) though numbers do not need it. Read-only, as ``to_numpy`` gives."""
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
    t = arr.type
    if arr.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)) and hasattr(arr, "__dlpack__"):
        out = np.from_dlpack(arr)
        out.flags.writeable = False
        return out
    return arr.to_numpy(zero_copy_only=False)


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
    v = _numbers(col).astype(np.float64, copy=False)
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
        first = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[:_SHOW_ROWS].tolist()
        raise BarsError(f"{where}: {col.null_count} bar(s) have no {what} in column '{name}' (first data rows, 0-based: "
                        f"{', '.join(map(str, first))}); fill the column or remove it.")
    if not pa.types.is_dictionary(col.type):
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pc.cast(col, pa.string())
        col = pc.dictionary_encode(col)
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    values = arr.dictionary.cast(pa.string()).to_pylist()
    codes = _numbers(arr.indices).astype(np.int64)
    used = np.flatnonzero(np.bincount(codes, minlength=len(values)))  # a dictionary may hold unused values
    values = [values[k] for k in used]
    order = np.argsort(np.array(values, dtype=object)) if values else np.zeros(0, dtype=np.int64)
    remap = np.zeros(int(used.max()) + 1 if len(used) else 1, dtype=np.int64)
    remap[used[order]] = np.arange(len(used))
    return remap[codes], tuple(str(values[k]) for k in order)


def _series_key(where, table, cols: dict, opts: ReadOptions, preset) -> tuple:
    name = None
    if opts.symbol_column:
        name = cols.get(opts.symbol_column.strip().lower())
        if name is None:
            raise BarsError(f"{where}: --symbol-column '{opts.symbol_column}' is not a column (found: "
                            f"{', '.join(table.column_names)}).")
    elif "symbol" in cols:
        name = cols["symbol"]
    elif preset.symbol_fallback and preset.symbol_fallback in cols:
        name = cols[preset.symbol_fallback]
    if name is None:
        return None, ()
    return _codes(where, table.column(name), name, "symbol")


# --- time ---------------------------------------------------------------------------------


def _time(where, table, cols: dict, opts: ReadOptions, preset, codes, warnings: list) -> np.ndarray:
    """``[n] int64`` ns UTC from the columns the options and the preset name."""
    tz = _zone(where, opts.timezone)
    if preset.needs_timezone and tz is None:
        raise BarsError(f"{where}: {preset.name} files hold the local time of the exporting machine, with no zone; "
                        "pass --timezone (an IANA name such as America/New_York).")
    date_name = cols.get(opts.date_column.strip().lower()) if opts.date_column else None
    if opts.date_column and date_name is None:
        raise BarsError(f"{where}: --date-column '{opts.date_column}' is not a column (found: "
                        f"{', '.join(table.column_names)}).")
    time_name = None
    if opts.time_column:
        time_name = cols.get(opts.time_column.strip().lower())
        if time_name is None:
            raise BarsError(f"{where}: --time-column '{opts.time_column}' is not a column (found: "
                            f"{', '.join(table.column_names)}).")
    if date_name is None and time_name is None and preset.time == "date+time":
        date_name, time_name = cols.get("date"), cols.get("time")
        if date_name is None or time_name is None:
            raise BarsError(f"{where}: the {preset.name} layout needs a Date and a Time column; found "
                            f"{', '.join(table.column_names)}.")
    if time_name is None and date_name is None:
        renamed = "time" in preset.rename.values() or preset.time != "auto"
        time_name = next((cols[t] for t in (("time",) if renamed else ()) + TIME_COLUMNS if t in cols), None)
    if time_name is None and date_name is None:
        time_name = _pandas_index_column(table)
    if time_name is None and date_name is None:
        raise BarsError(f"{where}: no time column; name one of {', '.join(TIME_COLUMNS)} (any case), pick one with "
                        "--time-column, or store the time as the parquet index.")
    for name in (date_name, time_name):
        if name is not None and table.column(name).null_count:
            col = table.column(name)
            first = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[:_SHOW_ROWS].tolist()
            raise BarsError(f"{where}: {col.null_count} bar(s) have no time in column '{name}' (first data rows, "
                            f"0-based: {', '.join(map(str, first))}); fill or remove them.")
    if date_name is not None:
        if time_name is None:
            raise BarsError(f"{where}: --date-column needs --time-column (the time of day) to combine with.")
        local = _days(where, table.column(date_name), date_name) * NS_PER_DAY + \
            _time_of_day(where, table.column(time_name), time_name)
        return _localize(where, local, tz, date_name)
    col = table.column(time_name)
    if opts.time_format:
        return _strptime(where, col, time_name, opts.time_format, tz)
    if preset.time == "yyyymmdd hhmmss":
        return _localize(where, _ninja(where, col, time_name), tz, time_name)
    if preset.time == "ib":
        return _ib(where, col, time_name, tz)
    return _auto_time(where, table, col, time_name, tz, codes, cols, warnings)


def _zone(where, name: str | None):
    if not name:
        return None
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise BarsError(f"{where}: --timezone {name!r} is not a known IANA time zone; use a name such as "
                        "America/New_York, Europe/London or UTC.") from None
    return name


def _localize(where, local_ns: np.ndarray, tz: str | None, column: str) -> np.ndarray:
    """UTC ns of naive local times in zone ``tz`` (UTC when None); the repeated fall-back hour is resolved
    by the clock going back, a time in the skipped spring hour is refused."""
    if tz is None or tz == "UTC":
        return local_ns.astype(np.int64)
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pa.array(local_ns, type=pa.timestamp("ns"))
    try:
        early = pc.assume_timezone(arr, timezone=tz, ambiguous="earliest", nonexistent="raise")
    except pa.ArrowInvalid as err:
        raise BarsError(f"{where}: column '{column}' holds a time that does not exist in {tz} (the clock skips it in "
                        f"spring; {str(err).splitlines()[0]}); check --timezone.") from None
    late = pc.assume_timezone(arr, timezone=tz, ambiguous="latest", nonexistent="earliest")
    e = early.cast(pa.int64()).to_numpy(zero_copy_only=False)
    lt = late.cast(pa.int64()).to_numpy(zero_copy_only=False)
    amb = e != lt
    if not amb.any():
        return e
    # In a repeated hour, rows after the local clock goes back are the second pass (the later offset).
    run = np.cumsum(~amb)
    back = np.r_[False, local_ns[1:] < local_ns[:-1]] & amb
    marker = np.maximum.accumulate(np.where(back, run, -1))
    return np.where(amb & (marker == run), lt, e)


def _ints_of(col, what: str):
    import pyarrow.compute as pc

    return _numbers(pc.cast(col, "int64"))


def _extract(where, col, name: str, patterns: list[str], what: str):
    """The named groups of the first matching regex per row, as ``{group: [n] int64}`` (missing groups 0)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    n = len(col)
    out: dict[str, np.ndarray] = {}
    done = np.zeros(n, dtype=bool)
    for pat in patterns:
        got = pc.extract_regex(col, pat)
        hit = got.is_valid().to_numpy(zero_copy_only=False) & ~done
        if not hit.any():
            continue
        for field in got.type:
            vals = pc.struct_field(got, field.name)
            vals = pc.if_else(pc.equal(pc.utf8_length(vals), 0), "0", vals)
            arr = pc.cast(vals.fill_null("0"), pa.int64()).to_numpy(zero_copy_only=False)
            if field.name == "frac":  # fraction of a second: scale its digits to ns
                width = pc.utf8_length(pc.struct_field(got, field.name).fill_null("")).to_numpy(zero_copy_only=False)
                arr = arr * 10 ** np.maximum(9 - width, 0) // 10 ** np.maximum(width - 9, 0)
            out.setdefault(field.name, np.zeros(n, dtype=np.int64))[hit] = arr[hit]
        done |= hit
    if not done.all():
        bad = int(np.flatnonzero(~done)[0])
        raise BarsError(f"{where}: column '{name}' row {bad} (0-based data row) holds {col[bad].as_py()!r}, which is not "
                        f"{what}; fix the value or give the format with --time-format.")
    return out


def days_from_civil(y, m, d) -> np.ndarray:
    """``[n] int64`` days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = np.asarray(y, dtype=np.int64) - (np.asarray(m) <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    m = np.asarray(m, dtype=np.int64)
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + np.asarray(d, dtype=np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _check_date(where, name, y, m, d):
    bad = (m < 1) | (m > 12) | (d < 1) | (d > 31)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise BarsError(f"{where}: column '{name}' row {k} (0-based data row) is not a valid date (year {y[k]}, month "
                        f"{m[k]}, day {d[k]}); dates are read as YYYY-MM-DD, YYYYMMDD, YYYY/M/D or MM/DD/YYYY.")


def _days(where, col, name: str) -> np.ndarray:
    """``[n] int64`` days since the epoch of a date column (date type, yyyymmdd integers or date text)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_date(t) or pa.types.is_timestamp(t):
        return pc.cast(pc.cast(col, pa.date32()), pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    if pa.types.is_integer(t):
        v = _ints_of(col, "date")
        y, m, d = v // 10000, v // 100 % 100, v % 100
    else:
        g = _extract(where, col, name, [r"^(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})$",
                                         r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$",
                                         r"^(?P<m>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})$"], "a date")
        y, m, d = g["y"], g["m"], g["d"]
    _check_date(where, name, y, m, d)
    return days_from_civil(y, m, d)


def _time_of_day(where, col, name: str) -> np.ndarray:
    """``[n] int64`` ns since midnight of a time-of-day column (time type, HH:MM[:SS[.f]], HHMMSS)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_time(t):
        return pc.cast(pc.cast(col, pa.time64("ns")), pa.int64()).to_numpy(zero_copy_only=False)
    if pa.types.is_integer(t):
        v = _ints_of(col, "time")
        h, mi, s = v // 10000, v // 100 % 100, v % 100
        frac = np.zeros_like(v)
    else:
        g = _extract(where, col, name, [r"^(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<frac>\d+))?)?$",
                                         r"^(?P<h>\d{2})(?P<mi>\d{2})(?P<s>\d{2})?$"], "a time of day")
        h, mi, s, frac = g["h"], g["mi"], g.get("s", 0), g.get("frac", 0)
    bad = (h > 23) | (mi > 59) | (np.asarray(s) > 60)
    if np.any(bad):
        k = int(np.flatnonzero(bad)[0])
        raise BarsError(f"{where}: column '{name}' row {k} (0-based data row) is not a valid time of day; "
                        "times are read as HH:MM, HH:MM:SS[.fff] or HHMMSS.")
    return ((h * 60 + mi) * 60 + s) * NS_PER["s"] + frac


def _ninja(where, col, name: str) -> np.ndarray:
    g = _extract(where, col, name, [r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2}) (?P<h>\d{2})(?P<mi>\d{2})(?P<s>\d{2})$"],
                 "a NinjaTrader time (yyyyMMdd HHmmss)")
    _check_date(where, name, g["y"], g["m"], g["d"])
    return days_from_civil(g["y"], g["m"], g["d"]) * NS_PER_DAY + ((g["h"] * 60 + g["mi"]) * 60 + g["s"]) * NS_PER["s"]


def _ib(where, col, name: str, tz: str | None) -> np.ndarray:
    """IB TWS times: ``yyyymmdd hh:mm:ss [zone]`` (zone names per row) or ``yyyymmdd`` (daily bars, midnight)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    g = _extract(where, text, name, [r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?: +(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2}))?"
                                     r"(?: +\S+)?$"], "an IB time (yyyymmdd hh:mm:ss zone)")
    _check_date(where, name, g["y"], g["m"], g["d"])
    local = days_from_civil(g["y"], g["m"], g["d"]) * NS_PER_DAY + ((g["h"] * 60 + g["mi"]) * 60 + g["s"]) * NS_PER["s"]
    zones = pc.extract_regex(text, r"^\d{8} +\d{2}:\d{2}:\d{2} +(?P<z>\S+)$")
    zone = pc.struct_field(zones, "z").fill_null("")
    enc = pc.dictionary_encode(zone)
    enc = enc.combine_chunks() if isinstance(enc, pa.ChunkedArray) else enc
    names = enc.dictionary.to_pylist()
    idx = enc.indices.to_numpy(zero_copy_only=False)
    out = np.empty(len(local), dtype=np.int64)
    for k, z in enumerate(names):
        sel = idx == k
        intraday = bool(np.any(local[sel] % NS_PER_DAY))
        if not z and intraday and tz is None:
            raise BarsError(f"{where}: column '{name}' holds IB times without a zone (TWS local time); pass "
                            "--timezone (the TWS zone, e.g. America/New_York) or request times with their zone.")
        out[sel] = _localize(where, local[sel], _zone(where, z) if z else tz, name)
    return out


def _strptime(where, col, name: str, fmt: str, tz: str | None) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        got = pc.strptime(pc.utf8_trim_whitespace(pc.cast(col, pa.string())), format=fmt, unit="ns")
    except pa.ArrowInvalid as err:
        raise BarsError(f"{where}: column '{name}' does not match --time-format {fmt!r} "
                        f"({str(err).splitlines()[0]}); fix the format (strptime codes such as %Y%m%d %H%M%S).") from None
    if got.type.tz is not None:
        return _numbers(got.cast(pa.int64()))
    return _localize(where, _numbers(got.cast(pa.int64())), tz, name)


def _auto_time(where, table, col, name: str, tz, codes, cols: dict, warnings: list) -> np.ndarray:
    """Time of the generic layout: timestamp/date types, ISO text, epoch integers by magnitude, yyyymmdd dates."""
    import pyarrow as pa

    t = col.type
    ns_stamps = pa.types.is_timestamp(t) and t.unit == "ns"
    if not ns_stamps:  # ns timestamps, the common case, need no cast, so not pyarrow.compute (50 ms to import)
        import pyarrow.compute as pc
    date_only = False
    try:
        if pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
            t = col.type
        if (pa.types.is_string(t) or pa.types.is_large_string(t)) and \
                pc.all(pc.match_substring_regex(col, r"^\s*-?\d+\s*$")).as_py():
            col = pc.cast(pc.utf8_trim_whitespace(col), pa.int64())  # digits only: epoch integers (or yyyymmdd)
            t = col.type
        if pa.types.is_integer(t):
            v = _ints_of(col, "time")
            lo, hi = (int(v.min()), int(v.max())) if len(v) else (0, 0)
            if name.strip().lower() == "date" and 19_000_101 <= lo and hi <= 21_001_231:
                ts = _localize(where, _days(where, col, name) * NS_PER_DAY, tz, name)
                date_only = True
            else:
                ts = v * _epoch_scale(v)
                if hi * _epoch_scale(v) < EPOCH_1980_S * NS_PER["s"]:
                    warnings.append(f"{where}: integer times in column '{name}' read as epoch "
                                    f"{ {v: k for k, v in NS_PER.items()}[_epoch_scale(v)]} fall before 1980 "
                                    f"(first {_iso(int(ts[0]))}); if they are not epoch times, give real times")
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            text = pc.utf8_trim_whitespace(col)
            date_only = bool(pc.all(pc.match_substring_regex(text, r"^\d{4}-\d{2}-\d{2}$")).as_py())
            try:
                ts = _numbers(pc.cast(text, pa.timestamp("ns", tz="UTC")).cast(pa.int64()))
            except pa.ArrowInvalid:
                naive = _numbers(pc.cast(text, pa.timestamp("ns")).cast(pa.int64()))
                ts = _localize(where, naive, tz, name)
        elif pa.types.is_date(t):
            date_only = True
            ts = _localize(where, _days(where, col, name) * NS_PER_DAY, tz, name)
        elif ns_stamps:  # their int64 ns counts as stored, what a cast to int64 gives
            v = _numbers(pa.chunked_array([c.view(pa.int64()) for c in col.chunks], pa.int64()))
            ts = v if t.tz is not None else _localize(where, v, tz, name)
        elif pa.types.is_timestamp(t):
            v = _numbers(pc.cast(col, pa.timestamp("ns", tz=t.tz)).cast(pa.int64()))
            ts = v if t.tz is not None else _localize(where, v, tz, name)
        else:
            raise BarsError(f"{where}: time column '{name}' has type {t}, which is not a time; use ISO 8601 text, a "
                            "timestamp type or epoch integers, or give --time-format.")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise BarsError(f"{where}: time column '{name}' could not be read as timestamps "
                        f"({str(err).splitlines()[0]}); use ISO 8601 text, a timestamp type or epoch integers, or give "
                        "--time-format.") from None
    if date_only:
        _refuse_dates_on_intraday(where, ts, codes, name, table, cols)
    return np.asarray(ts, dtype=np.int64)


def _refuse_dates_on_intraday(where, ts, codes, name, table, cols) -> None:
    """A date-only time column is fine for daily bars; several bars of one series on a day are intraday."""
    key = ts if codes is None else codes.astype(np.int64) * (1 << 40) + ts // NS_PER_DAY
    uniq, counts = np.unique(key, return_counts=True)
    if counts.max(initial=0) <= 1:
        return
    other = next((cols[c] for c in ("time", "hour", "time_of_day") if c in cols and cols[c] != name), None)
    other = other or next((c for c in table.column_names if "time" in c.lower() and c != name), None)
    other = other or next((c for c in table.column_names if c != name and _looks_like_time_of_day(table.column(c))),
                          None)
    fix = (f"combine it with the time column: --date-column {name} --time-column {other.strip()}" if other
           else "give a column with the time of day via --date-column/--time-column, or a full timestamp")
    raise BarsError(f"{where}: time column '{name}' holds dates only but {int((counts > 1).sum())} day(s) have several "
                    f"bars of one series (intraday data); {fix}.")


def _looks_like_time_of_day(col) -> bool:
    """A column whose first value is a time type or text like ``09:30``."""
    import pyarrow as pa

    if pa.types.is_time(col.type):
        return True
    v = col[0].as_py() if len(col) else None
    return isinstance(v, str) and re.match(r"^\s*\d{1,2}:\d{2}", v) is not None


def _epoch_scale(v) -> int:
    """ns per unit of integer epoch times ``v`` (numpy or CuPy), judged by the largest magnitude."""
    mag = int(abs(v).max()) if len(v) else 0
    return NS_PER["s"] if mag < 1e11 else NS_PER["ms"] if mag < 1e14 else NS_PER["us"] if mag < 1e17 else 1


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")) + "Z"


def _pandas_index_column(table) -> str | None:
    meta = (table.schema.metadata or {}).get(b"pandas")
    if not meta:
        return None
    for idx in json.loads(meta).get("index_columns", []):
        if isinstance(idx, str) and idx in table.column_names:
            return idx
    return None
