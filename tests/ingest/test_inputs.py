"""What a read is given: files, directories and globs; each refusal of an input is one sentence."""
import pytest

from gpu_features import read_bars
from gpu_features.errors import BarsError
from tests.ingest.samples import refusal


def test_input_refusals(tmp_path):
    with pytest.raises(BarsError, match="the directory holds no bar files"):
        read_bars(tmp_path)
    with pytest.raises(BarsError, match="the pattern matches no file"):
        read_bars(str(tmp_path / "*.csv"))
    with pytest.raises(BarsError, match="no such file or directory"):
        read_bars(tmp_path / "gone.csv")
    one = tmp_path / "x.csv"
    one.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n")
    with pytest.raises(BarsError, match="given twice"):
        read_bars([one, one])
    with pytest.raises(BarsError, match="unknown format 'metastock'"):
        read_bars(one, format="metastock")


def test_missing_file(tmp_path):
    refusal(tmp_path, None, "no such file", "bars.parquet")
