"""Time columns to int64 ns since the epoch, UTC: every time layout a vendor writes.

Times: int64 ns since the epoch, UTC. Naive times (no zone in the text or type)
are read in ``timezone`` (an IANA name; default UTC) and converted; in the hour a
clock falls back, the repeated times take the later offset once the clock is
seen to go back. Integer epochs are judged by magnitude (s, ms, us, ns); a
``date`` column of yyyymmdd integers is read as dates. Parsing uses pyarrow's
regular-expression kernels and numpy arithmetic, never per-row Python.
"""
from __future__ import annotations

import json
import re

import numpy as np

from ..arrays import arrow_numbers
from ..errors import BarsError
from .dates import (NS_MAX, NS_MIN, NS_PER, NS_PER_DAY, days_from_civil, find_out_of_range, ns_of_days,
                    refuse_out_of_range)
from .presets import TIME_COLUMNS, Preset
from .spec import ReadSpec

EPOCH_1980_S = 315_532_800          # integer times below this many seconds are 1970s: warned
SHOW_ROWS = 5                       # first rows named in a refusal


def parse_times(where, table, cols: dict, opts: ReadSpec, preset: Preset, codes, warnings: list) -> np.ndarray:
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
            first = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[:SHOW_ROWS].tolist()
            raise BarsError(f"{where}: {col.null_count} bar(s) have no time in column '{name}' (first data rows, "
                            f"0-based: {', '.join(map(str, first))}); fill or remove them.")
    if date_name is not None:
        if time_name is None:
            raise BarsError(f"{where}: --date-column needs --time-column (the time of day) to combine with.")
        local = ns_of_days(where, date_name, table.column(date_name), _days(where, table.column(date_name), date_name),
                           _time_of_day(where, table.column(time_name), time_name))
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

    return arrow_numbers(pc.cast(col, "int64"))


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
    return ns_of_days(where, name, col, days_from_civil(g["y"], g["m"], g["d"]),
                      ((g["h"] * 60 + g["mi"]) * 60 + g["s"]) * NS_PER["s"])


def _ib(where, col, name: str, tz: str | None) -> np.ndarray:
    """IB TWS times: ``yyyymmdd hh:mm:ss [zone]`` (zone names per row) or ``yyyymmdd`` (daily bars, midnight)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    g = _extract(where, text, name, [r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})(?: +(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2}))?"
                                     r"(?: +\S+)?$"], "an IB time (yyyymmdd hh:mm:ss zone)")
    _check_date(where, name, g["y"], g["m"], g["d"])
    local = ns_of_days(where, name, text, days_from_civil(g["y"], g["m"], g["d"]),
                       ((g["h"] * 60 + g["mi"]) * 60 + g["s"]) * NS_PER["s"])
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

    text = pc.utf8_trim_whitespace(pc.cast(col, pa.string()))
    try:
        got = pc.strptime(text, format=fmt, unit="ns")
    except pa.ArrowInvalid as err:
        try:  # parsed in microseconds (their range spans 290,000 years), a time past 2262 is said as such
            wide = pc.strptime(text, format=fmt, unit="us").cast(pa.int64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            wide = None
        if wide is not None:
            over = (wide > NS_MAX // 1000) | (wide < NS_MIN // 1000)
            if over.any():
                refuse_out_of_range(where, name, col, int(np.flatnonzero(over)[0]))
        raise BarsError(f"{where}: column '{name}' does not match --time-format {fmt!r} "
                        f"({str(err).splitlines()[0]}); fix the format (strptime codes such as %Y%m%d %H%M%S).") from None
    if got.type.tz is not None:
        return arrow_numbers(got.cast(pa.int64()))
    return _localize(where, arrow_numbers(got.cast(pa.int64())), tz, name)


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
                ts = _localize(where, ns_of_days(where, name, col, _days(where, col, name)), tz, name)
                date_only = True
            else:
                scale = epoch_scale(v)
                over = (v > NS_MAX // scale) | (v < -(NS_MAX // scale))
                if over.any():
                    unit = {v: k for k, v in NS_PER.items()}[scale]
                    refuse_out_of_range(where, name, col, int(np.flatnonzero(over)[0]), f" (read as epoch {unit})")
                ts = v * scale
                if hi * epoch_scale(v) < EPOCH_1980_S * NS_PER["s"]:
                    warnings.append(f"{where}: integer times in column '{name}' read as epoch "
                                    f"{ {v: k for k, v in NS_PER.items()}[epoch_scale(v)]} fall before 1980 "
                                    f"(first {_iso(int(ts[0]))}); if they are not epoch times, give real times")
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            text = pc.utf8_trim_whitespace(col)
            date_only = bool(pc.all(pc.match_substring_regex(text, r"^\d{4}-\d{2}-\d{2}$")).as_py())
            try:
                ts = arrow_numbers(pc.cast(text, pa.timestamp("ns", tz="UTC")).cast(pa.int64()))
            except pa.ArrowInvalid:
                naive = arrow_numbers(pc.cast(text, pa.timestamp("ns")).cast(pa.int64()))
                ts = _localize(where, naive, tz, name)
        elif pa.types.is_date(t):
            date_only = True
            ts = _localize(where, ns_of_days(where, name, col, _days(where, col, name)), tz, name)
        elif ns_stamps:  # their int64 ns counts as stored, what a cast to int64 gives
            v = arrow_numbers(pa.chunked_array([c.view(pa.int64()) for c in col.chunks], pa.int64()))
            ts = v if t.tz is not None else _localize(where, v, tz, name)
        elif pa.types.is_timestamp(t):
            v = arrow_numbers(pc.cast(col, pa.timestamp("ns", tz=t.tz)).cast(pa.int64()))
            ts = v if t.tz is not None else _localize(where, v, tz, name)
        else:
            raise BarsError(f"{where}: time column '{name}' has type {t}, which is not a time; use ISO 8601 text, a "
                            "timestamp type or epoch integers, or give --time-format.")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        find_out_of_range(where, col, name)  # a time past 2262 is said as such, with its row
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


def epoch_scale(v) -> int:
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
