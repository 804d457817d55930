"""Civil dates and the range of a time: day numbers of proleptic Gregorian dates, and the int64
nanoseconds since the epoch (UTC) that every stored time is, 1677-09-21 .. 2262-04-11. A time outside
that range is refused naming its column and row, never allowed to wrap around or be blamed on a format.
"""
from __future__ import annotations

import numpy as np

from ..errors import BarsError

NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
NS_PER_DAY = 86_400 * NS_PER["s"]
# A time is int64 ns since the epoch: 1677-09-21T00:12:43.145224192 .. 2262-04-11T23:47:16.854775807 (UTC).
NS_MIN, NS_MAX = -(1 << 63), (1 << 63) - 1
DAY_MIN, DAY_MAX = NS_MIN // NS_PER_DAY, NS_MAX // NS_PER_DAY    # the first and last day holding such a time
RANGE = "1677-09-22 .. 2262-04-11 (UTC), the times 64-bit nanoseconds hold"


def days_from_civil(y, m, d) -> np.ndarray:
    """``[n] int64`` days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = np.asarray(y, dtype=np.int64) - (np.asarray(m) <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    m = np.asarray(m, dtype=np.int64)
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + np.asarray(d, dtype=np.int64) - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def ns_of_days(where, name: str, col, days, time_of_day=0) -> np.ndarray:
    """``[n] int64`` ns of ``days`` since the epoch plus ``time_of_day`` ns, refusing (naming the row of ``col``)
    a time outside the int64 range instead of letting it wrap around."""
    days = np.asarray(days, dtype=np.int64)
    tod = np.broadcast_to(np.asarray(time_of_day, dtype=np.int64), days.shape)
    bad = (days > DAY_MAX) | (days < DAY_MIN) | ((days == DAY_MAX) & (tod > NS_MAX - DAY_MAX * NS_PER_DAY)) | \
        ((days == DAY_MIN) & (tod < NS_MIN - DAY_MIN * NS_PER_DAY))
    if bad.any():
        refuse_out_of_range(where, name, col, int(np.flatnonzero(bad)[0]))
    return days * NS_PER_DAY + tod


def refuse_out_of_range(where, name: str, col, row: int, read_as: str = ""):
    """Refuse row ``row`` of time column ``name`` as a time no 64-bit nanosecond count holds."""
    value = col[row].as_py()
    shown = repr(value) if isinstance(value, str) else str(value) if isinstance(value, int) else f"'{value}'"
    raise BarsError(f"{where}: column '{name}' row {row} (0-based data row) holds {shown}{read_as}, a time outside "
                    f"{RANGE}; fix or remove the row.")


def find_out_of_range(where, col, name: str) -> None:
    """Refuse the first row of a time column (ISO 8601 text or a timestamp type) whose time lies outside the
    int64 ns range; return when there is none (the column is wrong in some other way)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(col.type):
        v = pc.cast(col, pa.int64()).to_numpy(zero_copy_only=False)
        scale = NS_PER.get(col.type.unit, 1)
        over = (v > NS_MAX // scale) | (v < NS_MIN // scale)
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        got = pc.extract_regex(pc.utf8_trim_whitespace(col), r"^(?P<y>\d{4,})-(?P<m>\d{2})-(?P<d>\d{2})")
        ok = got.is_valid().to_numpy(zero_copy_only=False)
        parts = {f: pc.cast(pc.struct_field(got, f).fill_null("0"), pa.int64()).to_numpy(zero_copy_only=False)
                 for f in ("y", "m", "d")}
        days = days_from_civil(parts["y"], parts["m"], parts["d"])
        over = ok & ((days > DAY_MAX) | (days <= DAY_MIN))
    else:
        return
    if over.any():
        refuse_out_of_range(where, name, col, int(np.flatnonzero(over)[0]))
