"""Vendor layouts of 1-minute bar files: the presets behind ``--format`` and their detection.

A preset says how a vendor lays out its bars: which columns hold the time,
the prices and the series key, how the time is written and in which zone,
and at which scale prices are stored. :func:`detect` picks one from the file
name, the first line and the column names, only where that is unambiguous;
``--format NAME`` forces one. Every preset has a row in the README's
"Inputs" table and a test that writes a file the way the vendor documents it.

Nothing here reads whole files: the readers module decodes, this module only
describes layouts (so it imports nothing of the package but the errors).
"""
from __future__ import annotations

import dataclasses
import re

from .errors import BarsError


@dataclasses.dataclass(frozen=True)
class Preset:
    """One vendor layout.

    Attributes:
        name: the ``--format`` value.
        rename: ``{vendor column (lower case, stripped): our column}``; ours are
            ``open high low close``, ``time`` and ``symbol``.
        time: how the ``time`` column is written: ``auto`` (ISO text, timestamp type or epoch
            integers by magnitude), ``ns``/``ms``/``s`` (epoch integers of that unit),
            ``yyyymmdd hhmmss`` (NinjaTrader), ``ib`` (``yyyymmdd hh:mm:ss [zone]`` or ``yyyymmdd``),
            ``date+time`` (a ``date`` column and a ``time``-of-day column).
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
_SEPARATE_DATE_TIME = {"date", "time"}
_NINJA_LINE = re.compile(r"^\d{8} \d{6};")
_IB_TIME = re.compile(r"^\d{8}( +\d{2}:\d{2}:\d{2}( +\S+)?)?$")


def preset(name: str) -> Preset:
    """The preset called ``name`` (refuses unknown names with the list)."""
    if name not in PRESETS:
        raise BarsError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}.")
    return PRESETS[name]


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
