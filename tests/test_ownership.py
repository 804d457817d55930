"""Only our own files (store/format.check_output, the exports): recognisably ours and whole, or refused.

A store or dataset folder is replaced only when it holds nothing but its own files; what is in the
way is named and left alone; an input is never inside what is replaced; an export is never written
over the store it reads; a parquet file is replaced only when it is one of our exports; everything a
reader checks is checked before a store is committed.
"""
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.arrow_export import PARQUET_KEY, is_parquet_export, write_parquet
from gpu_features.cli import main
from gpu_features.errors import GpuFeaturesError, StoreError
from gpu_features.store import append_store, format as fmt
from gpu_features.store.format import check_output
from tests.test_append import write_parquet as write_bars


@pytest.fixture
def store(make_store, tmp_path):
    return make_store(synthetic.generate(2000, 1, 2), tmp_path / "s")


@pytest.mark.parametrize("intruder", ["notes.txt", "runs/", "bars-00000.safetensors.bak", "part-00000/"])
def test_a_store_holding_anything_else_is_never_replaced(store, make_store, tmp_path, intruder):
    target = store.path / intruder.rstrip("/")
    target.mkdir() if intruder.endswith("/") else target.write_text("the user's")
    before = sorted(p.name for p in store.path.iterdir())
    with pytest.raises(StoreError, match=f"is a gpu-features store but also holds {intruder}, which is not the "
                                         "store's; replacing the folder would delete it"):
        make_store(synthetic.generate(2000, 1, 3), store.path, overwrite=True)
    assert sorted(p.name for p in store.path.iterdir()) == before
    gf.open_store(store.path)  # the old store is untouched


def test_the_refusal_without_overwrite_suggests_it_only_where_it_would_work(store, tmp_path):
    with pytest.raises(StoreError, match="already exists; pass --overwrite"):
        check_output(store.path, overwrite=False)
    (store.path / "notes.txt").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(StoreError) as err:
            check_output(store.path, overwrite=overwrite)
        assert "--overwrite to replace" not in str(err.value) and "notes.txt" in str(err.value)


def test_an_empty_folder_needs_no_overwrite_and_a_damaged_store_of_ours_may_be_rebuilt(store, make_store, tmp_path):
    (tmp_path / "empty").mkdir()
    make_store(synthetic.generate(2000, 1, 3), tmp_path / "empty")
    (store.path / "manifest.json").write_text("{ damaged")  # still ours: its shards say so
    make_store(synthetic.generate(2000, 1, 3), store.path, overwrite=True)
    assert gf.open_store(store.path).n_bars == 2000


def test_a_folder_with_only_a_foreign_manifest_is_not_a_store(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "manifest.json").write_text(json.dumps({"name": "my app"}))
    with pytest.raises(StoreError, match="is a folder that is not a gpu-features store; refusing to replace it"):
        check_output(tmp_path / "web", overwrite=True)


def test_an_input_inside_the_output_or_the_output_inside_an_input_folder(store, make_store, tmp_path):
    bars = synthetic.generate(2000, 1, 3)
    inside = write_bars(store.path / "bars.parquet", bars)
    with pytest.raises(StoreError, match="the input .*bars.parquet lies inside --output"):
        make_store(inside, store.path, overwrite=True)
    assert inside.is_file()
    (tmp_path / "data").mkdir()
    source = write_bars(tmp_path / "data" / "bars.parquet", bars)
    with pytest.raises(StoreError, match="is inside the input folder"):
        make_store(str(tmp_path / "data"), tmp_path / "data" / "store")
    with pytest.raises(StoreError, match="bars.parquet lies inside --output"):
        make_store(source, tmp_path / "data", overwrite=True)
    assert source.is_file() and not (tmp_path / "data" / "store").exists()


def test_an_append_input_inside_the_store_is_refused(store, tmp_path):
    bars = synthetic.generate(2500, 1, 2)
    new = write_bars(store.path / "new.parquet", bars, 2000, None, symbols=False)
    with pytest.raises(StoreError, match="lies inside the store"):
        append_store(store.path, new)
    assert gf.open_store(store.path).n_bars == 2000


def test_a_dataset_is_replaced_only_when_whole(tmp_path):
    folder = tmp_path / "ds"
    (folder / "part-00000").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"format": fmt.DATASET_FORMAT}))
    (folder / "part-00000" / "manifest.json").write_text("{}")
    assert check_output(folder, overwrite=True) == folder
    (folder / "part-00000" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="is a gpu-features dataset but also holds part-00000/notes.txt"):
        check_output(folder, overwrite=True)


def test_nothing_is_committed_that_a_reader_would_refuse(store, make_store, monkeypatch):
    """The net under the early option checks: a manifest the reader refuses never replaces a store."""
    from gpu_features.store import writer

    before = (store.path / "manifest.json").read_bytes()
    real = writer.check_before_commit

    def corrupt(folder, manifest, target, checkpoint_bar=None):
        manifest["splits"]["boundaries"][1][0] = 1 << 70  # what a date past 2262 used to write
        manifest["splits"]["boundaries"][0][1] = 1 << 70
        return real(folder, manifest, target, checkpoint_bar)

    monkeypatch.setattr(writer, "check_before_commit", corrupt)
    with pytest.raises(StoreError, match="refusing to commit a store that would not open .*nothing was replaced"):
        make_store(synthetic.generate(2000, 1, 3), store.path, overwrite=True)
    assert (store.path / "manifest.json").read_bytes() == before
    assert [p.name for p in store.path.parent.iterdir() if ".tmp-" in p.name] == []


@pytest.mark.parametrize("argv, words", [
    (["--split-dates", "2300-01-01,2301-01-01"], "split date '2300-01-01' is outside 1677-09-22 .. 2262-04-11"),
    (["--split-dates", "1600-01-01,2000-01-01"], "split date '1600-01-01' is outside"),
    (["--window-length", "100000"], "--window-length 100000: FeatureConfig.window_length = 100000 is out of range"),
])
def test_options_that_would_make_an_unopenable_store_are_refused_up_front(store, capsys, argv, words):
    before = (store.path / "manifest.json").read_bytes()
    code = main(["precompute", "--output", str(store.path), "--overwrite", "--synthetic-bars", "2000",
                        "--quiet", *argv])
    assert code == 2 and words in capsys.readouterr().err
    assert (store.path / "manifest.json").read_bytes() == before


# --- exports ---------------------------------------------------------------------------------


def test_a_parquet_export_overwrites_only_our_exports(store, tmp_path):
    ours = write_parquet(store, tmp_path / "e.parquet")
    assert is_parquet_export(ours)
    meta = json.loads(pq.read_schema(ours).metadata[PARQUET_KEY])
    assert meta["format"] == "gpu-features parquet export" and meta["store"] == str(store.path)
    with pytest.raises(GpuFeaturesError, match="already exists .*pass --overwrite"):
        write_parquet(store, ours)
    write_parquet(store, ours, overwrite=True)
    pq.write_table(pa.table({"x": [1]}), tmp_path / "theirs.parquet")
    (tmp_path / "notes.txt").write_text("mine")
    for name in ("theirs.parquet", "notes.txt"):
        for overwrite in (False, True):
            with pytest.raises(GpuFeaturesError, match="is not a gpu-features parquet export; refusing to replace it "
                                                       r"\(even with --overwrite\)"):
                write_parquet(store, tmp_path / name, overwrite=overwrite)
    assert (tmp_path / "notes.txt").read_text() == "mine" and pq.read_table(tmp_path / "theirs.parquet").num_rows == 1


@pytest.mark.parametrize("name", ["manifest.json", "bars-00000.safetensors", "state.safetensors", "x.parquet"])
def test_no_export_over_a_file_of_the_store_it_reads(store, name):
    before = {p.name: p.read_bytes() for p in store.path.iterdir()}
    with pytest.raises(GpuFeaturesError, match="lies inside the store .* it exports"):
        write_parquet(store, store.path / name, overwrite=True)
    from gpu_features.seed import ExportError, export_seed

    with pytest.raises(ExportError, match="the store .* it exports"):
        export_seed(store, store.path / name, overwrite=True)
    with pytest.raises(ExportError, match="is the store"):
        export_seed(store, store.path, overwrite=True)
    with pytest.raises(ExportError, match="holds the store"):
        export_seed(store, store.path.parent, overwrite=True)
    assert {p.name: p.read_bytes() for p in store.path.iterdir()} == before
    gf.open_store(store.path)


def test_a_seed_export_with_anything_else_in_it_is_not_replaced(store, tmp_path):
    from gpu_features.seed import ExportError, export_seed

    export_seed(store, tmp_path / "e")
    (tmp_path / "e" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not a seed-layout export; refusing to touch it"):
        export_seed(store, tmp_path / "e", overwrite=True)
    assert (tmp_path / "e" / "notes.txt").read_text() == "mine"


def test_a_read_only_target_is_not_reported_as_a_full_disk(store, tmp_path, monkeypatch):
    import os

    from gpu_features import fileio
    from gpu_features.seed import ExportError, export_seed

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(fileio.os, "statvfs", lambda path: ReadOnly())
    with pytest.raises(ExportError, match="is on a read-only file system, so --output cannot be written there"):
        export_seed(store, tmp_path / "e")
    with pytest.raises(GpuFeaturesError, match="read-only file system"):
        write_parquet(store, tmp_path / "e.parquet")
    assert not (tmp_path / "e").exists() and not (tmp_path / "e.parquet").exists()


def test_output_dot_is_a_sentence_not_a_traceback(store, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(store.path)
    code = main(["precompute", "--output", ".", "--synthetic-bars", "2000", "--quiet"])
    assert code == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    new = write_bars(tmp_path / "new.parquet", synthetic.generate(2500, 1, 2), 2000, None, symbols=False)
    code = main(["precompute", "--output", ".", "--append", str(new), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0 and "(500 new bars" in out, err
    assert (store.path.parent / ".s.lock").exists() and gf.open_store(store.path).n_bars == 2500
    monkeypatch.chdir(tmp_path)
    shutil.copy(new, tmp_path / "new2.parquet")
    code = main(["precompute", "--output", ".", "--overwrite", "--synthetic-bars", "2000", "--quiet"])
    assert code == 2 and "is a folder that is not a gpu-features store" in capsys.readouterr().err
