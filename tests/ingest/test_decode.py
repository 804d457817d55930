"""Files and tables to plain columns: empty files, missing columns and values, prices that are not numbers, the
column that keys the series, files with and without one."""
import numpy as np
import pyarrow as pa
import pytest

from gpu_features import read_bars
from gpu_features.cli import main
from gpu_features.errors import BarsError
from tests.ingest.samples import MIN, T0, refusal, table, write


def test_empty_file(tmp_path):
    refusal(tmp_path, table(0), "holds no bars (0 rows)")


def test_missing_columns(tmp_path):
    refusal(tmp_path, table().drop(["high"]), "missing column(s) high", "required (any case): open, high, low, close")


def test_missing_time_and_symbol_values(tmp_path):
    ts = pa.array([T0, None, T0 + 2 * MIN, T0 + 3 * MIN, T0 + 4 * MIN], type=pa.timestamp("ns"))
    refusal(tmp_path, table(timestamp=ts), "1 bar(s) have no time in column 'timestamp'", "0-based: 1")
    refusal(tmp_path, table(symbol=["A", None, "A", "A", "A"]), "1 bar(s) have no symbol")


@pytest.mark.parametrize("text, hint", [("abc", "plain numbers"), ('"1,199.5"', "thousands separators")])
@pytest.mark.parametrize("policy", ["error", "drop", "repair"])
def test_price_text_is_one_sentence_under_every_policy(tmp_path, text, hint, policy):
    path = tmp_path / "bad.csv"
    path.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n"
                    f"2024-01-01T00:01:00Z,1,2,0.5,{text}\n")
    with pytest.raises(BarsError, match=rf"bad.csv: column 'close' row 1 \(0-based data row\) holds .*not a number.*{hint}"):
        read_bars(path, on_bad_bars=policy)
    assert main(["precompute", "--input", str(path), "--output", str(tmp_path / "s"), "--quiet",
                 "--on-bad-bars", policy]) == 2


# --- which column keys the series: never a price or time column; files with and without one are not mixed ------

KEYS = [  # (read settings, the words of the refusal)
    ({"symbol_column": "close"}, "--symbol-column close names the close price column 'close', which would make a "
                                 "series of every price"),
    ({"symbol_column": "timestamp"}, "--symbol-column timestamp names the time column 'timestamp'"),
    ({"rename": {"close": "symbol"}}, "the series column 'close' names the close price column 'close'"),
    ({"roll_column": "high"}, "--roll-column high names the high price column 'high', which would start a new "
                              "segment at every price change"),
]


@pytest.mark.parametrize("settings, words", KEYS, ids=[str(s) for s, _ in KEYS])
def test_a_price_or_time_column_is_not_a_series_or_contract_column(tmp_path, settings, words):
    refusal(tmp_path, table(20), words, **settings)


@pytest.mark.parametrize("series, single, warned", [(20, 20, True), (10, 5, True), (10, 4, False), (9, 8, False)])
def test_a_series_column_that_leaves_most_series_one_bar_is_warned_about(tmp_path, series, single, warned):
    """Warned from 10 series on, when at least half of them are a single bar (too short for any window)."""
    longer = series - single
    names = [f"S{k:02d}" for k in range(single)] + [f"L{k % longer:02d}" for k in range(20 - single)]
    bars = read_bars(write(tmp_path, table(20, symbol=names)))
    said = " ".join(bars.ingest.get("warnings", []))
    assert len(set(bars.segment_names)) == series
    assert (f"the series column 'symbol' splits 20 rows into {series} series" in said) is warned


@pytest.mark.parametrize("given", ["list", "glob", "directory"])
def test_files_with_and_without_a_series_column_are_not_mixed(tmp_path, given):
    write(tmp_path, table(5, symbol=["NQ"] * 5), "a.parquet")
    write(tmp_path, table(5, timestamp=pa.array(T0 + (10 + np.arange(5)) * MIN, pa.timestamp("ns", tz="UTC"))),
          "b.parquet")
    source = {"list": [tmp_path / "a.parquet", tmp_path / "b.parquet"], "glob": str(tmp_path / "*.parquet"),
              "directory": tmp_path}[given]
    with pytest.raises(BarsError) as err:
        read_bars(source)
    msg = str(err.value)
    assert f"{tmp_path / 'b.parquet'} has no series column but {tmp_path / 'a.parquet'} has one" in msg
    assert "a series of its own named 'b'" in msg and "give every file the series column" in msg
