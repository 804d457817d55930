"""dates.py: a time beyond what 64-bit nanoseconds hold (before 1677-09-22, after 2262-04-11) is refused naming its
column and row, in every way a time can be written; never wrapped around, never blamed on the format."""
import numpy as np
import pyarrow as pa
import pytest

from gpu_features import read_bars
from gpu_features.errors import BarsError
from gpu_features.ingest.dates import DAY_MAX, DAY_MIN, NS_MAX, NS_MIN, NS_PER_DAY, days_from_civil
from tests.ingest.samples import table, write

PRICES = "1,2,0.5,1.5"


def _csv(tmp_path, header: str, times: list[str], name="bars.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "".join(f"{t},{PRICES}\n" for t in times))
    return path


def _iso(year: int, k: int) -> str:
    return f"{year}-01-02T00:{k:02d}:00"


# (what, file lines, read settings, the row named, the value shown)
CASES = [
    ("ISO text", ("timestamp,open,high,low,close", [_iso(2300, k) for k in range(3)]), {}, 0, "2300-01-02"),
    ("ISO text, a later row", ("timestamp,open,high,low,close", [_iso(2024, 0), _iso(2024, 1), _iso(2300, 2)]), {},
     2, "2300-01-02"),
    ("ISO text with a zone", ("timestamp,open,high,low,close", [_iso(2300, k) + "Z" for k in range(3)]), {}, 0,
     "2300-01-02"),
    ("ISO text before 1677", ("timestamp,open,high,low,close", [_iso(1600, k) for k in range(3)]), {}, 0, "1600-01-02"),
    ("--time-format", ("timestamp,open,high,low,close", [_iso(2300, k) for k in range(3)]),
     {"time_format": "%Y-%m-%dT%H:%M:%S"}, 0, "'2300-01-02T00:00:00'"),
    ("epoch seconds", ("time,open,high,low,close", [str(10_000_000_000 + 60 * k) for k in range(3)]), {}, 0,
     "10000000000 (read as epoch s)"),
    ("epoch milliseconds", ("time,open,high,low,close", [str(10_000_000_000_000 + 60_000 * k) for k in range(3)]), {},
     0, "10000000000000 (read as epoch ms)"),
    ("date and time columns", ("Date,Time,open,high,low,close", [f"2300-01-02,09:3{k}" for k in range(3)]), {}, 0,
     "'2300-01-02'"),
    ("NinjaTrader", ("", [f"23000102 09300{k};1;2;0.5;1.5" for k in range(3)]),
     {"format": "ninjatrader", "timezone": "UTC"}, 0, "'23000102 093000'"),
]


@pytest.mark.parametrize("what, lines, settings, row, shown", CASES, ids=[c[0] for c in CASES])
def test_a_time_outside_the_int64_range_names_its_row(tmp_path, what, lines, settings, row, shown):
    header, times = lines
    if not header:  # NinjaTrader: no header, ';'
        path = tmp_path / "NQ.txt"
        path.write_text("".join(t + "\n" for t in times))
    else:
        path = _csv(tmp_path, header, times)
    with pytest.raises(BarsError) as err:
        read_bars(path, **settings)
    msg = str(err.value)
    assert f"row {row} (0-based data row) holds" in msg and shown in msg, msg
    assert "outside 1677-09-22 .. 2262-04-11 (UTC)" in msg and "zone offset" not in msg and "does not match" not in msg


@pytest.mark.parametrize("typ, value", [(pa.timestamp("s"), np.datetime64("2300-01-02T00:00:00", "s")),
                                        (pa.date32(), np.datetime64("2300-01-02", "D"))])
def test_typed_times_outside_the_range_name_their_row_too(tmp_path, typ, value):
    col = pa.array(np.array([value + k for k in range(3)]), type=typ)
    with pytest.raises(BarsError, match=r"column 'timestamp' row 0 \(0-based data row\) holds '2300-01-0.*outside "
                                        r"1677-09-22 \.\. 2262-04-11"):
        read_bars(write(tmp_path, table(3, timestamp=col)))


def test_the_first_and_last_days_of_the_range_are_read_exactly(tmp_path):
    path = _csv(tmp_path, "timestamp,open,high,low,close", ["1677-09-22T00:00:00", "2262-04-11T23:00:00"])
    bars = read_bars(path)
    assert bars.timestamp.tolist() == [int(np.datetime64("1677-09-22T00:00:00", "ns").astype(np.int64)),
                                       int(np.datetime64("2262-04-11T23:00:00", "ns").astype(np.int64))]


def test_the_day_bounds_are_those_of_int64_nanoseconds():
    assert DAY_MAX == int(days_from_civil(2262, 4, 11)) and DAY_MIN == int(days_from_civil(1677, 9, 21))
    assert DAY_MAX * NS_PER_DAY <= NS_MAX < (DAY_MAX + 1) * NS_PER_DAY
    assert DAY_MIN * NS_PER_DAY <= NS_MIN < (DAY_MIN + 1) * NS_PER_DAY
