"""Vendor layouts of 1-minute bar files: the presets behind ``--format``, their detection, and the rules
that name columns.

A preset says how a vendor lays out its bars: which columns hold the time,
the prices and the series key, how the time is written and in which zone,
and at which scale prices are stored. :func:`detect_from_file` (file name,
first line) and :func:`detect_from_columns` (column names) pick one only where
that is unambiguous; :func:`pick_layout` is the one place where ``--format NAME``
overrides what was detected. Every preset has a row in the README's "Inputs"
table and a test that writes a file the way the vendor documents it.

Columns: :func:`column_map` names a file's columns case-insensitively,
:func:`resolve_columns` applies the preset's and the user's renames, and
:func:`series_key_column` is the one rule for which column keys the series
(used by the decoders, the cudf reader and the distributed scan).

Nothing here reads whole files: :mod:`.files` and :mod:`.decode` do; this
module only describes layouts (so it imports nothing of the package but the errors).
"""
from __future__ import annotations

import dataclasses
import re

from ..errors import BarsError
from .spec import ReadSpec


@dataclasses.dataclass(frozen=True)
class Preset:
    """One vendor layout.

    Attributes:
        name: the ``--format`` value.
        rename: ``{vendor column (lower case, stripped): our column}``; ours are
            ``open high low close``, ``time`` and ``symbol``.
        time: how the ``time`` column is written: ``auto`` (ISO text, timestamp type or epoch
            integers by magnitude), ``yyyymmdd hhmmss`` (NinjaTrader), ``ib`` (``yyyymmdd hh:mm:ss
            [zone]`` or ``yyyymmdd``), ``date+time`` (a ``date`` column and a ``time``-of-day column).
        needs_timezone: the vendor writes local time of the exporting machine, so ``--timezone``
            is required (there is no safe default).
        csv_header: column names for a file without a header line (None: the file has one).
        delimiter: the vendor's CSV delimiter (None: sniffed).
        fixed_point: integer prices are fixed-point with this many units per 1.0 (Databento 1e9).
        bar_time: ``start`` or ``end``: which edge of the bar the time stamps (recorded, not shifted).
        symbol_fallback: a column keying the series when the file has no ``symbol`` column.
    """

    name: str
    rename: dict = dataclasses.field(default_factory=dict)
    time: str = "auto"
    needs_timezone: bool = False
    csv_header: tuple | None = None
    delimiter: str | None = None
    fixed_point: int | None = None
    bar_time: str = "start"
    symbol_fallback: str | None = None


PRESETS = {
    "generic": Preset("generic"),
    # Databento OHLCV (parquet, CSV, DBN transcoded to CSV): ts_event ns UTC, prices fixed-point 1e-9
    # unless pretty_px; series by symbol (map_symbols) else instrument_id.
    "databento": Preset("databento", rename={"ts_event": "time"}, fixed_point=1_000_000_000,
                        symbol_fallback="instrument_id"),
    # Polygon flat files (ticker, window_start ns) and REST aggregates (t ms, o h l c).
    "polygon": Preset("polygon", rename={"ticker": "symbol", "window_start": "time", "t": "time", "o": "open",
                                         "h": "high", "l": "low", "c": "close"}),
    # NinjaTrader 8 export: no header, ';', "yyyyMMdd HHmmss" in the PC's zone, time = bar END.
    "ninjatrader": Preset("ninjatrader", time="yyyymmdd hhmmss", needs_timezone=True,
                          csv_header=("time", "open", "high", "low", "close", "volume"), delimiter=";",
                          bar_time="end"),
    # Sierra Chart text export: "Date, Time, Open, High, Low, Last, Volume, ..." in the chart's zone.
    "sierrachart": Preset("sierrachart", rename={"last": "close"}, time="date+time", needs_timezone=True),
    # Sierra Chart intraday file (.scid): SCDateTime microseconds since 1899-12-30, UTC.
    "scid": Preset("scid"),
    # TradingView chart export: time (unix seconds, or ISO 8601 with offset), open, high, low, close, ...
    "tradingview": Preset("tradingview"),
    # Interactive Brokers TWS historical bars: date "yyyymmdd hh:mm:ss US/Eastern" (or "yyyymmdd" daily).
    "ib": Preset("ib", time="ib"),
    # Separate Date and Time columns (Kibot, FirstRate Data, many exports): MM/DD/YYYY or ISO dates.
    "date-time": Preset("date-time", time="date+time"),
}
FORMATS = ("auto",) + tuple(PRESETS)
PRICE_COLUMNS = ("open", "high", "low", "close")
TIME_COLUMNS = ("timestamp", "ts_event", "datetime", "date", "time")
_SEPARATE_DATE_TIME = {"date", "time"}
_NINJA_LINE = re.compile(r"^\d{8} \d{6};")
_IB_TIME = re.compile(r"^\d{8}( +\d{2}:\d{2}:\d{2}( +\S+)?)?$")


def preset(name: str) -> Preset:
    """The preset called ``name`` (refuses unknown names with the list)."""
    if name not in PRESETS:
        raise BarsError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}.")
    return PRESETS[name]


def pick_layout(forced: str, detected) -> Preset:
    """The layout of a file: the ``--format`` preset when one is forced, else ``detected()`` (called only then).

    Args:
        forced: :attr:`ReadSpec.format <gpu_features.ingest.ReadSpec>` (``auto``: detect).
        detected: ``() -> preset name`` (the detection that the file allows at this point).
    """
    return preset(forced if forced != "auto" else detected())


# Files whose kind fixes their layout (by name): --format may name no other layout for them, and "scid" fits
# no other kind of file.
FILE_KIND_LAYOUTS = {".scid": "scid", ".dbn": "databento", ".dbn.zst": "databento", ".json": "polygon"}


def check_forced_layout(where, name: str, forced: str) -> None:
    """Refuse a ``--format`` that cannot describe the file ``name`` (lower case): another layout for a file whose
    kind fixes it (``.scid``, ``.dbn``, Polygon ``.json``), or ``scid`` for a file that is not ``.scid``."""
    kind = next((suffix for suffix in FILE_KIND_LAYOUTS if name.endswith(suffix)), None)
    if forced == "auto" or forced not in PRESETS or (kind is not None and FILE_KIND_LAYOUTS[kind] == forced):
        return
    if kind is not None:
        raise BarsError(f"{where}: --format {forced} does not fit a {kind} file, which is always read as "
                        f"{FILE_KIND_LAYOUTS[kind]}; leave --format out (the layout is detected).")
    if forced == "scid":
        raise BarsError(f"{where}: --format scid is for Sierra Chart intraday files (.scid), not this file; leave "
                        "--format out (the layout is detected), or give --format sierrachart for a Sierra Chart "
                        "text export.")


def detect_from_file(name: str, head: bytes) -> str | None:
    """A preset decided by the file alone (extension or first line), before columns are known.

    Args:
        name: the file name (lower case).
        head: its first bytes (decompressed for compressed CSV).
    """
    if name.endswith(".scid"):
        return "scid"
    if name.endswith((".dbn", ".dbn.zst")):
        return "databento"
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    if _NINJA_LINE.match(first):
        return "ninjatrader"
    return None


def detect_from_columns(columns: list[str], sample_time: str | None = None) -> str:
    """The preset the column names (lower case, stripped) point to; ``generic`` when none does.

    Args:
        columns: the file's column names, lower case and stripped.
        sample_time: the first value of a ``date`` column as text (tells IB's raw TWS times apart).
    """
    cols = set(columns)
    if {"ts_event", "instrument_id"} <= cols or {"ts_event", "rtype"} <= cols:
        return "databento"
    if {"window_start", "ticker"} <= cols or {"t", "o", "h", "l", "c"} <= cols:
        return "polygon"
    if "last" in cols and "close" not in cols and _SEPARATE_DATE_TIME <= cols:
        return "sierrachart"
    if _SEPARATE_DATE_TIME <= cols:
        return "date-time"
    if "date" in cols and sample_time is not None and _IB_TIME.match(sample_time.strip()) \
            and not sample_time.strip().isdigit():
        return "ib"
    return "generic"


def column_map(where, column_names) -> dict:
    """``{lower-case stripped name: name in the file}``; refuses names equal but for case."""
    out: dict[str, str] = {}
    for name in map(str, column_names):
        key = name.strip().lower()
        if key in out:
            raise BarsError(f"{where}: columns '{out[key]}' and '{name}' differ only in case or spaces; keep one of them.")
        out[key] = name
    return out


def resolve_columns(where, by_lower: dict, layout: Preset, rename: dict | None, column_names) -> dict:
    """``{our name or file name (lower case): file column}`` after the preset's renames and ``--rename``.

    Args:
        where: the file, named in refusals.
        by_lower: :func:`column_map` of the file.
        layout: the file's preset (its renames apply where our name is not already a column).
        rename: ``{file column: our column}`` given by the user (refused when the file lacks the column, and
            when it would make a second column of one name, as two columns differing only in case are).
        column_names: the file's columns, listed in refusals.
    """
    cols = dict(by_lower)
    for vendor, ours in layout.rename.items():
        if vendor in by_lower and ours not in by_lower:
            cols[ours] = by_lower[vendor]
    renamed = {}  # file column (lower case) -> (as given, new name as given, new name lower case)
    for theirs, ours in (rename or {}).items():
        key = str(theirs).strip().lower()
        if by_lower.get(key) is None:
            raise BarsError(f"{where}: --rename names column '{theirs}', which is not in the file (found: "
                            f"{', '.join(column_names)}).")
        renamed[key] = (theirs, ours, str(ours).strip().lower())
    targets: dict[str, str] = {}
    for key, (theirs, ours, target) in renamed.items():
        if target in targets:
            raise BarsError(f"{where}: --rename {targets[target]}={ours} and --rename {theirs}={ours} would both make "
                            f"a column '{ours}'; keep one of them.")
        kept = by_lower.get(target)
        if kept is not None and target != key and target not in renamed:  # a swap (a=b, b=a) leaves no clash
            raise BarsError(f"{where}: --rename {theirs}={ours} would make a second '{ours}' column beside the file's "
                            f"own '{kept}'; rename that one too (--rename {kept}=OTHER) or drop this rename.")
        targets[target] = theirs
        cols[target] = by_lower[key]
    return cols


def series_key_column(cols: dict, layout: Preset, symbol_column: str | None = None) -> str | None:
    """The one rule for which column keys a file's series: ``--symbol-column``, else ``symbol`` (after the
    preset's renames, e.g. Polygon's ``ticker``), else the preset's fallback (Databento's ``instrument_id``).

    Args:
        cols: :func:`resolve_columns` of the file.
        layout: the file's preset.
        symbol_column: the column the user named (None: the layout decides).

    Returns:
        The file's column name, or None: the file holds one series (or the named column is missing,
        which the decoder refuses with the columns it found).
    """
    if symbol_column:
        return cols.get(symbol_column.strip().lower())
    if "symbol" in cols:
        return cols["symbol"]
    if layout.symbol_fallback and layout.symbol_fallback in cols:
        return cols[layout.symbol_fallback]
    return None


def series_key_of(where, column_names, spec: ReadSpec) -> str | None:
    """:func:`series_key_column` of a file known by its column names alone (the layout detected from them unless
    ``spec.format`` forces one; a parquet file's scan), or None."""
    by_lower = column_map(where, column_names)
    layout = pick_layout(spec.format, lambda: detect_from_columns(list(by_lower)))
    cols = resolve_columns(where, by_lower, layout, spec.rename, column_names)
    return series_key_column(cols, layout, spec.symbol_column)
