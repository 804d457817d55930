"""Bar files to raw pyarrow tables: parquet, CSV (plain or compressed), Databento DBN, Sierra Chart SCID and
Polygon JSON, each with the layout its name or first line shows.

CSV: ``.csv``, ``.txt``, compressed ``.gz``/``.bz2``/``.zst``; the delimiter is
sniffed, the header may be missing (a preset's or the user's column names). DBN
(``.dbn``, ``.dbn.zst``; needs the ``databento`` extra) is transcoded to CSV by
databento-dbn. The series key (:func:`.presets.series_key_column`) is read
dictionary-encoded, and text columns that hold times are read as text for
:mod:`.times`. Nothing here interprets values: :mod:`.decode` does.
"""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np

from ..errors import BarsError
from .inputs import FILE_SUFFIXES
from .presets import (PRESETS, PRICE_COLUMNS, TIME_COLUMNS, Preset, check_forced_layout, detect_from_columns,
                      detect_from_file, pick_layout, resolve_columns, series_key_column)
from .spec import ReadSpec
from .times import EPOCH_1980_S


def read_file(path: Path, spec: ReadSpec):
    """One file as ``(pyarrow table, detected layout or None)``; the kind is chosen by the file's name.

    The layout is what the file's kind or first line shows (DBN, SCID, JSON, NinjaTrader
    lines, or a CSV's column names); None for parquet, whose columns :mod:`.decode` reads.

    Raises:
        BarsError: a missing, unreadable or unsupported file, or one its decoder cannot parse.
    """
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
    check_forced_layout(path, name, spec.format)
    if name.endswith((".parquet", ".pq")):
        return read_parquet(path, spec), None
    if name.endswith((".dbn", ".dbn.zst")):
        return _read_dbn(path), "databento"
    if name.endswith(".scid"):
        return _read_scid(path), "scid"
    if name.endswith(".json"):
        return _read_polygon_json(path), "polygon"
    return read_csv(path, spec)


def _fail(path, err, what: str):
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    raise BarsError(f"{path}: the file could not be parsed as {what} ({first}); check that it is a valid {what} "
                    "file.") from None


def _key_to_encode(names, spec: ReadSpec, layout: Preset | None) -> str | None:
    """The series-key column (:func:`.presets.series_key_column`) of a file's raw names, to read
    dictionary-encoded; None for an unknown ``--format`` (refused when the columns are decoded). A
    ``--rename``d key and a vendor's numeric instrument id (the preset's fallback) keep their own type
    and are encoded when the series are keyed."""
    if layout is None:
        return None
    cols = resolve_columns(None, {str(n).strip().lower(): n for n in names}, layout, None, names)
    key = series_key_column(cols, layout, spec.symbol_column)
    if not spec.symbol_column and layout.symbol_fallback and key == cols.get(layout.symbol_fallback):
        return None
    return key


def read_parquet(path: Path, spec: ReadSpec):
    """A parquet file as a pyarrow table, its series key dictionary-encoded."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
        names = list(schema.names)
        detected = detect_from_columns([str(n).strip().lower() for n in names])
        sym = _key_to_encode(names, spec, PRESETS.get(spec.format if spec.format != "auto" else detected))
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


def read_csv(path: Path, opts: ReadSpec, data: bytes | None = None, fmt: str | None = None):
    """A CSV file (or ``data``, its bytes) as a pyarrow table, and the preset its first line shows."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    head = data[: 1 << 16] if data is not None else _head(path)
    fmt = fmt or detect_from_file(path.name.lower(), head)
    preset = pick_layout(opts.format, lambda: fmt or "generic")
    text = head.decode("utf-8", "replace")
    first = text.split("\n", 1)[0].rstrip("\r")
    delimiter = opts.delimiter or preset.delimiter or sniff_delimiter(first)
    header = opts.header and preset.csv_header is None
    _check_csv_options(path, opts, first, header)
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
        fmt = detect_from_columns(lower, sample)
    # Text columns that carry times are read as text (our parsers), the series key dictionary-encoded. Which
    # time columns are text follows the layout the file shows (detected), as a forced --format has always left it.
    types = {}
    sym = _key_to_encode(names, opts, pick_layout(opts.format, lambda: fmt))
    if sym:
        types[sym] = pa.dictionary(pa.int32(), pa.string())
    # --time-format describes the file's text, so with it the time columns are read as text, never inferred.
    text_times = (opts.time_column, opts.date_column, "date", "time") + (TIME_COLUMNS if opts.time_format else ())
    for col in text_times:
        got = _pick(names, [col]) if col else None
        if got and (fmt in ("sierrachart", "date-time", "ninjatrader", "ib") or opts.time_format
                    or col in (opts.time_column, opts.date_column)):
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


def _check_csv_options(path, opts: ReadSpec, first: str, header: bool) -> None:
    """Refuse CSV options the file's first line contradicts, naming the option (not the file's columns)."""
    if opts.delimiter and first and opts.delimiter not in first:
        looks = sniff_delimiter(first)
        raise BarsError(f"{path}: --delimiter {opts.delimiter!r} does not occur in the first line (which looks "
                        f"{looks!r}-separated); leave --delimiter out (it is sniffed) or give the file's own.")
    if opts.columns and header:
        raise BarsError(f"{path}: --columns names the columns of a CSV without a header line, but the file's first "
                        "line is read as its header; add --no-header if that line is a bar, or drop --columns.")
    if not opts.header:
        fields = {f.strip().strip('"').strip().lower() for f in re.split(r"[,;\t|]", first)}
        if len(fields & set(PRICE_COLUMNS)) >= 2:
            raise BarsError(f"{path}: --no-header reads the first line as a bar, but it names columns "
                            f"({first.strip()[:80]}); drop --no-header (the header names the columns).")


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
    table, _ = read_csv(path, ReadSpec(), out.getvalue(), fmt="databento")
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
