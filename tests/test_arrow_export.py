"""A store as an Arrow table and as a parquet file of one row per bar."""
import pyarrow.parquet as pq

from gpu_features.cli import main
from gpu_features.store import open_store, precompute
from tests.ingest.samples import tbl, walk


def test_export_parquet_layout(tmp_path):
    path = tmp_path / "bars.parquet"
    pq.write_table(tbl(walk(300), symbol=["ES"] * 300), path)
    precompute(path, tmp_path / "s", engine="reference")
    assert main(["export", str(tmp_path / "s"), "--layout", "parquet", "--output", str(tmp_path / "f.parquet")]) == 0
    got = pq.read_table(tmp_path / "f.parquet")
    want = open_store(tmp_path / "s").to_arrow()
    assert got.equals(want)
    assert main(["export", str(tmp_path / "s"), "--layout", "parquet", "--output", str(tmp_path / "f.parquet")]) == 2
