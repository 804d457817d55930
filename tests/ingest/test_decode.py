"""Files and tables to plain columns: empty files, missing columns and values, prices that are not numbers."""
import pyarrow as pa
import pytest

from gpu_features import read_bars
from gpu_features.cli import main
from gpu_features.errors import BarsError
from tests.ingest.samples import MIN, T0, refusal, table


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
