"""read_bars, the entry point of ingest: files and tables in, Bars out; a bad argument is one sentence."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_features import read_bars
from gpu_features.errors import BarsError
from gpu_features.store import precompute
from tests.ingest.samples import MIN, T0, sl, table, tbl, walk, write


def test_parquet_round_trip(tmp_path):
    bars = read_bars(write(tmp_path, table()))
    assert bars.n == 5 and bars.n_segments == 1 and bars.segment_names == ("bars",)
    assert bars.open.dtype == np.float64 and bars.timestamp.dtype == np.int64
    np.testing.assert_array_equal(bars.timestamp, T0 + np.arange(5) * MIN)
    assert bars.source["kind"] == "file" and bars.source["bytes"] > 0 and len(bars.source["sha256"]) == 64


def test_csv_with_mixed_case_columns_and_iso_times(tmp_path):
    path = tmp_path / "nq.csv"
    path.write_text("Date,OPEN,High,low,Close\n2024-01-01T00:00:00,1,2,0.5,1.5\n2024-01-01T00:01:00,1.5,2,1,1\n")
    bars = read_bars(path)
    assert bars.n == 2 and bars.segment_names == ("nq",)
    assert bars.timestamp.tolist() == [T0, T0 + MIN]
    assert bars.high.tolist() == [2.0, 2.0]


def test_unknown_policy():
    with pytest.raises(BarsError, match="on_bad_bars must be one of error, drop, repair"):
        read_bars("x.parquet", on_bad_bars="fix")


def _frame_cases():
    cases = ["pyarrow", "pandas"]
    try:
        import polars  # noqa: F401
        cases.append("polars")
    except ImportError:
        cases.append(pytest.param("polars", marks=pytest.mark.skip(reason="polars is not installed")))
    return cases


def test_files_are_joined_in_time_order_and_each_is_a_source(tmp_path):
    w = walk(300)
    for k, (a, b) in enumerate(((200, 300), (0, 100), (100, 200))):  # names not in time order
        pq.write_table(tbl(sl(w, a, b), symbol=["NQ"] * 100), tmp_path / f"part{k}.parquet")
    files = sorted(tmp_path.glob("*.parquet"))
    for given in (files, tmp_path, str(tmp_path / "part*.parquet")):
        bars = read_bars(given)
        assert bars.n == 300 and bars.timestamp.tolist() == w["timestamp"].tolist()
        assert bars.close.tolist() == w["close"].tolist() and bars.segment_names == ("NQ",)
        assert bars.source["kind"] == "files" and [f["path"] for f in bars.source["files"]] == [str(f) for f in files]
        assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in bars.source["files"])


def test_files_without_a_series_column_are_each_a_series_named_after_the_file(tmp_path):
    """Not one joined series (its windows would span the seam): a series per file, files of one name joined."""
    w = walk(300)
    (tmp_path / "later").mkdir()
    for name, (a, b) in (("NQ.parquet", (0, 100)), ("ES.parquet", (100, 200)), ("later/NQ.parquet", (200, 300))):
        pq.write_table(tbl(sl(w, a, b)), tmp_path / name)
    bars = read_bars([tmp_path / "NQ.parquet", tmp_path / "ES.parquet", tmp_path / "later" / "NQ.parquet"])
    assert bars.segment_names == ("ES", "NQ") and bars.offsets.tolist() == [0, 100]
    assert bars.timestamp.tolist() == w["timestamp"][100:200].tolist() + w["timestamp"][:100].tolist() + \
        w["timestamp"][200:].tolist()
    assert bars.ingest["symbol_column"] is False  # recorded as read without a series column
    assert read_bars(tmp_path / "ES.parquet").segment_names == ("ES",)


@pytest.mark.parametrize("kind", _frame_cases())
def test_dataframes_in_apply_every_rule_and_store_to_arrow_comes_out(tmp_path, kind):
    w = walk(500)
    table = tbl(w, symbol=["NQ"] * 500)
    if kind == "pandas":
        pd = pytest.importorskip("pandas", reason="pandas is not installed")
        frame = table.to_pandas()
        indexed = frame.set_index("timestamp")  # the time as a DatetimeIndex
        assert read_bars(indexed).timestamp.tolist() == w["timestamp"].tolist()
        assert isinstance(frame, pd.DataFrame)
    elif kind == "polars":
        import polars as pl

        frame = pl.from_arrow(table)
    else:
        frame = table
    bars = read_bars(frame)
    assert bars.segment_names == ("NQ",) and bars.close.tolist() == w["close"].tolist()
    assert bars.timestamp.tolist() == w["timestamp"].tolist() and bars.source == {"kind": "memory"}
    bad = table.set_column(table.column_names.index("low"), "low", pa.array(np.r_[w["high"][:1] + 1, w["low"][1:]]))
    with pytest.raises(BarsError, match=r"the table: 1 bar\(s\) break the rule 'low above min"):
        read_bars(pl.from_arrow(bad) if kind == "polars" else bad.to_pandas() if kind == "pandas" else bad)
    st = precompute(bars, tmp_path / "s", engine="reference")
    out = st.to_arrow()
    assert out.column_names[:3] == ["timestamp", "symbol", "valid"] and out.num_rows == 500
    assert out.schema.field("timestamp").type == pa.timestamp("ns", tz="UTC")
    assert pa.types.is_dictionary(out.schema.field("symbol").type)
    assert np.array_equal(out.column("range_z").to_numpy(), st.array("features")[:, 5])
    if kind == "pandas":
        assert out.to_pandas()["symbol"].astype(str).unique().tolist() == ["NQ"]
    if kind == "polars":
        assert pl.from_arrow(out).height == 500
