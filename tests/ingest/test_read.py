"""Ingest rules: every refusal names the file, the rule, the count, the first rows and the fix."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_features import read_bars
from gpu_features.errors import BarsError

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00Z
MIN = 60_000_000_000


def table(n=5, **override):
    cols = {
        "timestamp": pa.array(T0 + np.arange(n) * MIN, type=pa.timestamp("ns", tz="UTC")),
        "open": np.full(n, 100.0), "high": np.full(n, 101.0), "low": np.full(n, 99.0), "close": np.full(n, 100.5),
    }
    cols.update(override)
    return pa.table(cols)


def write(tmp_path, tbl, name="bars.parquet"):
    path = tmp_path / name
    if name.endswith(".csv"):
        import pyarrow.csv as pcsv

        pcsv.write_csv(tbl, path)
    else:
        pq.write_table(tbl, path)
    return path


def test_parquet_round_trip(tmp_path):
    bars = read_bars(write(tmp_path, table()))
    assert bars.n == 5 and bars.n_series == 1 and bars.symbols == ("bars",)
    assert bars.open.dtype == np.float64 and bars.timestamp.dtype == np.int64
    np.testing.assert_array_equal(bars.timestamp, T0 + np.arange(5) * MIN)
    assert bars.source["kind"] == "file" and bars.source["bytes"] > 0 and len(bars.source["sha256"]) == 64


def test_csv_with_mixed_case_columns_and_iso_times(tmp_path):
    path = tmp_path / "nq.csv"
    path.write_text("Date,OPEN,High,low,Close\n2024-01-01T00:00:00,1,2,0.5,1.5\n2024-01-01T00:01:00,1.5,2,1,1\n")
    bars = read_bars(path)
    assert bars.n == 2 and bars.symbols == ("nq",)
    assert bars.timestamp.tolist() == [T0, T0 + MIN]
    assert bars.high.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("values, scale", [([1_704_067_200, 1_704_067_260], 10**9),
                                           ([1_704_067_200_000, 1_704_067_260_000], 10**6),
                                           ([T0, T0 + MIN], 1)])
def test_integer_epochs_by_magnitude(tmp_path, values, scale):
    tbl = table(2, timestamp=pa.array(values, type=pa.int64()))
    tbl = tbl.rename_columns(["ts_event"] + tbl.column_names[1:])
    bars = read_bars(write(tmp_path, tbl))
    assert bars.timestamp.tolist() == [v * scale for v in values]


def test_time_from_a_pandas_index(tmp_path):
    tbl = table(3).drop(["timestamp"]).append_column(
        "__index_level_0__", pa.array(T0 + np.arange(3) * MIN, type=pa.timestamp("ns")))
    meta = {"index_columns": ["__index_level_0__"], "columns": []}
    tbl = tbl.replace_schema_metadata({b"pandas": json.dumps(meta).encode()})
    assert read_bars(write(tmp_path, tbl)).timestamp.tolist() == (T0 + np.arange(3) * MIN).tolist()


def test_symbols_split_into_series_sorted_by_name(tmp_path):
    tbl = table(6, symbol=["NQ", "ES", "NQ", "ES", "NQ", "ES"],
                timestamp=pa.array(T0 + np.array([0, 0, 1, 1, 2, 2]) * MIN, type=pa.timestamp("ns")),
                close=np.array([100.0, 200.5, 100.25, 200.25, 100.5, 200.0]),
                high=np.full(6, 201.0), low=np.full(6, 99.0), open=np.array([100.0, 200.0] * 3))
    bars = read_bars(write(tmp_path, tbl))
    assert bars.symbols == ("ES", "NQ") and bars.offsets.tolist() == [0, 3]
    assert bars.close.tolist() == [200.5, 200.25, 200.0, 100.0, 100.25, 100.5]


def refusal(tmp_path, tbl, *fragments, name="bars.parquet", **kw):
    path = write(tmp_path, tbl, name) if tbl is not None else tmp_path / name
    with pytest.raises(BarsError) as err:
        read_bars(path, **kw)
    msg = str(err.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in: {msg}"
    return msg


def test_missing_file(tmp_path):
    refusal(tmp_path, None, "no such file", "bars.parquet")


def test_unsupported_type(tmp_path):
    (tmp_path / "bars.xlsx").write_text("x")
    with pytest.raises(BarsError, match="unsupported file type '.xlsx'; give a .parquet"):
        read_bars(tmp_path / "bars.xlsx")


def test_unparseable_file(tmp_path):
    (tmp_path / "bars.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(BarsError, match="could not be parsed .*valid parquet file"):
        read_bars(tmp_path / "bars.parquet")


def test_empty_file(tmp_path):
    refusal(tmp_path, table(0), "holds no bars (0 rows)")


def test_missing_columns(tmp_path):
    refusal(tmp_path, table().drop(["high"]), "missing column(s) high", "required (any case): open, high, low, close")


def test_no_time_column(tmp_path):
    refusal(tmp_path, table().drop(["timestamp"]), "no time column", "timestamp, ts_event, datetime, date, time")


def test_columns_differing_only_in_case(tmp_path):
    refusal(tmp_path, table().append_column("Close", pa.array(np.ones(5))), "'close' and 'Close' differ only in case")


@pytest.mark.parametrize("column, values, rule", [
    ("close", [100.5, np.nan, 100.5, 0.0, 100.5], "price missing, non-finite or <= 0"),
    ("low", [99.0, 100.75, 99.0, 101.0, 99.0], "low above min(open, close)"),
    ("high", [101.0, 100.25, 101.0, 101.0, 100.0], "high below max(open, close)"),
])
def test_bad_bar_rules(tmp_path, column, values, rule):
    tbl = table(**{column: np.array(values)})
    msg = refusal(tmp_path, tbl, "bars.parquet", f"break the rule '{rule}'", "--on-bad-bars drop")
    bad = [i for i in range(5) if (column == "close" and not (np.isfinite(values[i]) and values[i] > 0))
           or (column == "low" and values[i] > 100.0) or (column == "high" and values[i] < 100.5)]
    assert f"{len(bad)} bar(s)" in msg and f"(first data rows, 0-based: {', '.join(map(str, bad))})" in msg


def test_timestamps_must_increase(tmp_path):
    ts = pa.array(T0 + np.array([0, 1, 1, 3, 2]) * MIN, type=pa.timestamp("ns"))
    refusal(tmp_path, table(timestamp=ts), "2 bar(s) break the rule 'timestamp out of order within its series'",
            "first data rows, 0-based: 2, 4", "the fewest bars whose removal leaves every series strictly increasing")


def test_drop_policy_records_what_it_dropped(tmp_path):
    ts = pa.array(T0 + np.array([0, 1, 1, 3, 4]) * MIN, type=pa.timestamp("ns"))
    bars = read_bars(write(tmp_path, table(timestamp=ts, low=np.array([99.0, 99.0, 99.0, 100.75, 99.0]))),
                     on_bad_bars="drop", max_drop_fraction=0.5)
    assert bars.n == 3 and bars.timestamp.tolist() == (T0 + np.array([0, 1, 4]) * MIN).tolist()
    assert bars.ingest["dropped"] == {"low above min(open, close)": {"count": 1, "first_rows": [3]},
                                      "timestamp out of order within its series": {"count": 1, "first_rows": [2]}}


def test_repair_widens_high_and_low(tmp_path):
    bars = read_bars(write(tmp_path, table(low=np.array([99.0, 100.75, 99, 99, 99]),
                                           high=np.array([101.0, 101, 100.0, 101, 101]))), on_bad_bars="repair")
    assert bars.low[1] == 100.0 and bars.high[2] == 100.5 and bars.n == 5
    assert bars.ingest["repaired"]["low above min(open, close)"]["first_rows"] == [1]


def test_repair_refuses_non_finite_prices(tmp_path):
    refusal(tmp_path, table(open=np.array([100.0, np.inf, 100, 100, 100])), "repair only widens high/low",
            "--on-bad-bars drop", on_bad_bars="repair")


def test_a_symbol_with_no_bars_left_is_refused(tmp_path):
    tbl = table(4, symbol=["A", "B", "A", "B"], timestamp=pa.array(T0 + np.array([0, 0, 1, 1]) * MIN,
                                                                  type=pa.timestamp("ns")),
                close=np.array([100.5, -1.0, 100.5, -1.0]))
    refusal(tmp_path, tbl, "symbol(s) B have no bars left", on_bad_bars="drop", max_drop_fraction=1.0)


def test_missing_time_and_symbol_values(tmp_path):
    ts = pa.array([T0, None, T0 + 2 * MIN, T0 + 3 * MIN, T0 + 4 * MIN], type=pa.timestamp("ns"))
    refusal(tmp_path, table(timestamp=ts), "1 bar(s) have no time in column 'timestamp'", "0-based: 1")
    refusal(tmp_path, table(symbol=["A", None, "A", "A", "A"]), "1 bar(s) have no symbol")


def test_unknown_policy():
    with pytest.raises(BarsError, match="on_bad_bars must be one of error, drop, repair"):
        read_bars("x.parquet", on_bad_bars="fix")
