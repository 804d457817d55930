"""The ingest rules: every refusal names the file, the rule, the count, the first rows and the fix."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_features import engines, read_bars
from gpu_features.errors import BarsError
from gpu_features.ingest import Bars, ReadSpec, longest_increasing
from gpu_features.store import precompute
from gpu_features.verify import verify_store
from tests.ingest.samples import MIN, T0, YEAR, refusal, sl, table, tbl, walk


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


def test_overlapping_files_refused_or_identical_bars_skipped(tmp_path):
    w = walk(300)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(tbl(sl(w, 0, 200), symbol=["a"] * 200), a)  # one series over two files: its symbol in both
    pq.write_table(tbl(sl(w, 150, 300), symbol=["a"] * 150), b)
    with pytest.raises(BarsError, match=r"50 bar\(s\) of a in b.parquet are at or before the last bar of a.parquet "
                                         r"\(first data rows, 0-based: b.parquet:0, b.parquet:1.*--on-overlap skip"):
        read_bars([a, b])
    bars = read_bars([a, b], on_overlap="skip")
    assert bars.n == 300 and bars.timestamp.tolist() == w["timestamp"].tolist()
    assert bars.ingest["skipped_overlap"]["count"] == 50 and bars.ingest["dropped"] == {}
    changed = dict(sl(w, 150, 300))
    changed["close"] = changed["close"].copy()
    changed["close"][3] += 0.25
    changed["high"] = np.maximum(changed["high"], changed["close"])
    pq.write_table(tbl(changed, symbol=["a"] * 150), b)
    with pytest.raises(BarsError, match=r"1 bar\(s\) of a in b.parquet repeat a time of a.parquet with different prices"):
        read_bars([a, b], on_overlap="skip")


def test_one_year_ahead_typo_costs_one_bar(tmp_path):
    w = walk(20_000)
    w["timestamp"] = w["timestamp"].copy()
    w["timestamp"][10] += YEAR
    path = tmp_path / "typo.parquet"
    pq.write_table(tbl(w), path)
    with pytest.raises(BarsError, match=r"1 bar\(s\) break the rule 'timestamp out of order within its series' "
                                        r"\(first data rows, 0-based: 10\)"):
        read_bars(path)
    bars = read_bars(path, on_bad_bars="drop")
    assert bars.n == 19_999 and 10 not in set((bars.timestamp - T0) // MIN)
    assert bars.ingest["dropped"] == {"timestamp out of order within its series": {"count": 1, "first_rows": [10]}}


def test_longest_increasing_keeps_the_most_bars():
    ts = np.array([0, 1, 2, 50, 3, 4, 4, 5, -1, 6])
    keep = longest_increasing(ts)
    assert np.flatnonzero(~keep).tolist() == [3, 6, 8]
    assert np.all(np.diff(ts[keep]) > 0)


def test_back_adjusted_prices_need_the_flag_and_features_are_shift_invariant(tmp_path):
    w = walk(3000, start=15000.0)
    shifted = {k: (v - 20000.0 if k != "timestamp" else v) for k, v in w.items()}  # exact: a 0.25 grid below 2**40
    assert shifted["close"].max() < 0
    path = tmp_path / "adj.parquet"
    pq.write_table(tbl(shifted), path)
    with pytest.raises(BarsError, match="<= 0.*--allow-nonpositive-prices"):
        read_bars(path)
    bars = read_bars(path, allow_nonpositive=True)
    a = engines.run(w["open"], w["high"], w["low"], w["close"], engine="reference")
    b = engines.run(bars.open, bars.high, bars.low, bars.close, engine="reference")
    assert np.array_equal(a.features.view(np.uint32), b.features.view(np.uint32))
    assert np.array_equal(a.valid, b.valid) and a.valid.any()
    st = precompute(path, tmp_path / "s", engine="reference", spec=ReadSpec(allow_nonpositive=True))
    assert np.array_equal(st.array("features").view(np.uint32), a.features.view(np.uint32))
    assert verify_store(tmp_path / "s").ok


def test_precompute_refuses_hand_built_bars_that_break_the_rules(tmp_path):
    w = walk(200)
    ts = w["timestamp"].copy()
    ts[50] = ts[10]
    backwards = Bars(w["open"], w["high"], w["low"], w["close"], ts, np.zeros(1, np.int64), ("X",))
    with pytest.raises(BarsError, match="timestamps must strictly increase within each series"):
        precompute(backwards, tmp_path / "a", engine="reference")
    low = w["low"].copy()
    low[7] = w["high"][7] + 1
    crossed = Bars(w["open"], w["high"], low, w["close"], w["timestamp"], np.zeros(1, np.int64), ("X",))
    with pytest.raises(BarsError, match=r"low above min\(open, close\).*0-based: 7"):
        precompute(crossed, tmp_path / "b", engine="reference")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_identical_bars_are_the_same_time_and_bit_equal_prices():
    from gpu_features.ingest import identical_bars

    a = {"timestamp": np.array([1, 2, 3, 4]), "open": np.array([1.0, 2.0, 0.0, 1.0]),
         "high": np.array([2.0, 3.0, 1.0, 2.0]), "low": np.array([0.5, 1.0, 0.0, 0.5]), "close": np.array([1.5, 2.5, 0.5, 1.5])}
    b = {k: v.copy() for k, v in a.items()}
    assert identical_bars(a, b).tolist() == [True, True, True, True]
    b["open"][2] = -0.0       # equal as numbers, a different bar
    b["close"][1] = np.nextafter(2.5, 3.0)
    b["timestamp"][3] = 5
    assert identical_bars(a, b).tolist() == [True, False, False, False]
