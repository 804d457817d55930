"""Time columns to UTC: epochs by magnitude, a pandas index, warnings and refusals of times that cannot be read."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_features import read_bars
from gpu_features.cli import main
from gpu_features.errors import BarsError
from tests.ingest.samples import MIN, T0, refusal, table, write


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


def test_no_time_column(tmp_path):
    refusal(tmp_path, table().drop(["timestamp"]), "no time column", "timestamp, ts_event, datetime, date, time")


def test_integer_times_in_the_1970s_are_warned_on_screen(tmp_path, capsys):
    path = tmp_path / "small.csv"
    path.write_text("time,open,high,low,close\n" + "".join(f"{k},1,2,0.5,1.5\n" for k in range(2000)))
    bars = read_bars(path)
    assert any("fall before 1980" in w and "1970-01-01T00:00:00Z" in w for w in bars.ingest["warnings"])
    assert main(["precompute", "--input", str(path), "--output", str(tmp_path / "s"), "--quiet", "--engine",
                 "reference"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning:" in err and "read as epoch s fall before 1980" in err


def test_date_only_time_on_intraday_data_names_the_time_column(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"date": ["2024-01-02"] * 3, "clock": ["09:30", "09:31", "09:32"], "open": [1.0] * 3,
                             "high": [2.0] * 3, "low": [0.5] * 3, "close": [1.5] * 3}), path)
    with pytest.raises(BarsError, match="holds dates only but 1 day\\(s\\) have several bars.*--date-column date "
                                        "--time-column clock"):
        read_bars(path)
    assert read_bars(path, date_column="date", time_column="clock").n == 3
