"""Raw columns to Bars: series order, roll segments, and the policies drop and repair."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_features import engines, read_bars
from gpu_features.cli import main
from gpu_features.errors import BarsError
from gpu_features.ingest import ReadSpec
from gpu_features.store import open_store, precompute
from gpu_features.verify import verify_store
from tests.ingest.samples import MIN, T0, refusal, sl, table, tbl, walk, write


def test_symbols_split_into_series_sorted_by_name(tmp_path):
    tbl = table(6, symbol=["NQ", "ES", "NQ", "ES", "NQ", "ES"],
                timestamp=pa.array(T0 + np.array([0, 0, 1, 1, 2, 2]) * MIN, type=pa.timestamp("ns")),
                close=np.array([100.0, 200.5, 100.25, 200.25, 100.5, 200.0]),
                high=np.full(6, 201.0), low=np.full(6, 99.0), open=np.array([100.0, 200.0] * 3))
    bars = read_bars(write(tmp_path, tbl))
    assert bars.segment_names == ("ES", "NQ") and bars.offsets.tolist() == [0, 3]
    assert bars.close.tolist() == [200.5, 200.25, 200.0, 100.0, 100.25, 100.5]


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


def test_drop_refuses_above_its_limit_and_the_cli_prints_what_it_dropped(tmp_path, capsys):
    w = walk(1000)
    w["low"] = w["low"].copy()
    w["low"][[5, 50, 500]] = w["high"][[5, 50, 500]] + 1  # 0.3% of bars: low above high
    path = tmp_path / "bad.parquet"
    pq.write_table(tbl(w), path)
    with pytest.raises(BarsError, match=r"would remove 3 of 1000 bars \(0.30%.*more than the 0.10% allowed.*"
                                        "--max-drop-fraction"):
        read_bars(path, on_bad_bars="drop", max_drop_fraction=0.001)
    assert read_bars(path, on_bad_bars="drop").n == 997
    assert main(["precompute", "--input", str(path), "--output", str(tmp_path / "s"), "--quiet", "--engine",
                 "reference", "--on-bad-bars", "drop"]) == 0
    out = capsys.readouterr().out
    assert "1,000 rows read, 997 bars kept; dropped 3 (low above min(open, close); first rows 5, 50, 500)" in " ".join(out.split())


def test_roll_column_cuts_segments_no_window_spans_a_roll_and_append_continues(tmp_path):
    w = walk(1200)
    contract = np.where(np.arange(1200) < 700, "NQH4", "NQM4")
    w2 = dict(w)
    w2["open"], w2["high"], w2["low"], w2["close"] = (np.where(contract == "NQM4", v + 150.0, v)
                                                      for v in (w["open"], w["high"], w["low"], w["close"]))
    path = tmp_path / "nq.parquet"
    pq.write_table(tbl(sl(w2, 0, 1000), symbol=["NQ"] * 1000, contract=contract[:1000]), path)
    bars = read_bars(path, roll_column="contract")
    assert bars.segment_names == ("NQ", "NQ") and bars.offsets.tolist() == [0, 700] and bars.ingest["roll_segments"] == 1
    st = precompute(path, tmp_path / "s", engine="reference", spec=ReadSpec(roll_column="contract"))
    assert [(g.first, g.count, g.start_index, g.restart) for g in st.segments] == [(0, 700, 0, False),
                                                                                  (700, 300, 0, True)]
    K = st.config.window_length
    starts = st.usable_window_starts()
    assert len(starts) and not np.any((starts < 700) & (starts + K > 700))
    fresh = engines.run(w2["open"][700:1000], w2["high"][700:1000], w2["low"][700:1000], w2["close"][700:1000],
                        engine="reference")
    assert np.array_equal(st.array("features")[700:].view(np.uint32), fresh.features.view(np.uint32))
    assert verify_store(tmp_path / "s").ok
    more = tmp_path / "more.parquet"
    pq.write_table(tbl(sl(w2, 1000, 1200), symbol=["NQ"] * 200, contract=contract[1000:]), more)
    st = open_store(tmp_path / "s")
    from gpu_features.store import append_store

    st = append_store(tmp_path / "s", more, engine="reference")
    whole = engines.run(w2["open"][700:], w2["high"][700:], w2["low"][700:], w2["close"][700:], engine="reference")
    assert np.array_equal(st.array("features")[700:].view(np.uint32), whole.features.view(np.uint32))
    assert verify_store(tmp_path / "s").ok
    assert main(["inspect", str(tmp_path / "s")]) == 0


def test_a_roll_between_two_files_is_a_roll_and_a_file_boundary_is_not(tmp_path):
    """Each file's roll column is its own dictionary: codes are compared by contract name across files."""
    w = walk(900)
    a, b, c = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    pq.write_table(tbl(sl(w, 0, 300), symbol=["NQ"] * 300, contract=["NQH4"] * 300), a)  # both code 0 in their file
    pq.write_table(tbl(sl(w, 300, 600), symbol=["NQ"] * 300, contract=["NQM4"] * 300), b)
    bars = read_bars([a, b], roll_column="contract")
    assert bars.offsets.tolist() == [0, 300] and bars.ingest["roll_segments"] == 1
    # NQM4 is code 1 in b (after NQH4) and code 0 in c: the same contract, so no cut at the file boundary
    pq.write_table(tbl(sl(w, 300, 600), symbol=["NQ"] * 300, contract=["NQH4"] * 100 + ["NQM4"] * 200), b)
    pq.write_table(tbl(sl(w, 600, 900), symbol=["NQ"] * 300, contract=["NQM4"] * 300), c)
    bars = read_bars([a, b, c], roll_column="contract")
    assert bars.offsets.tolist() == [0, 400] and bars.ingest["roll_segments"] == 1
