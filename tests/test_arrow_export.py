"""A store as an Arrow table and as a parquet file of one row per bar; only our own exports are replaced."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_features.arrow_export import PARQUET_KEY, is_parquet_export, write_parquet
from gpu_features.cli import main
from gpu_features.errors import GpuFeaturesError
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


# --- only our own files: a parquet file is replaced only when it is one of our exports ---


def test_a_parquet_export_overwrites_only_our_exports(fresh_store, tmp_path):
    ours = write_parquet(fresh_store, tmp_path / "e.parquet")
    assert is_parquet_export(ours)
    meta = json.loads(pq.read_schema(ours).metadata[PARQUET_KEY])
    assert meta["format"] == "gpu-features parquet export" and meta["store"] == str(fresh_store.path)
    with pytest.raises(GpuFeaturesError, match="already exists .*pass --overwrite"):
        write_parquet(fresh_store, ours)
    write_parquet(fresh_store, ours, overwrite=True)
    pq.write_table(pa.table({"x": [1]}), tmp_path / "theirs.parquet")
    (tmp_path / "notes.txt").write_text("mine")
    for name in ("theirs.parquet", "notes.txt"):
        for overwrite in (False, True):
            with pytest.raises(GpuFeaturesError, match="is not a gpu-features parquet export; refusing to replace it "
                                                       r"\(even with --overwrite\)"):
                write_parquet(fresh_store, tmp_path / name, overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "mine" and pq.read_table(tmp_path / "theirs.parquet").num_rows == 1
