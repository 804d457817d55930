"""Crafted and damaged stores, permissions, deterministic bytes, a private kernel cache, and the one output
check (``check_output``: a store or dataset is replaced only when it is ours and whole).

Every crafted manifest is refused by ``open_store`` with one sentence (a
StoreError, so the CLI exits 2), before any tool indexes or allocates by it.
"""
import json
import shutil

import pytest

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.cli import main
from gpu_features.errors import StoreError
from gpu_features.sources import load_sources
from gpu_features.store import format as fmt
from gpu_features.store.format import check_output
from gpu_features.verify import verify_store
from tests.harness import write_parquet

N = 3000


@pytest.fixture(scope="module")
def built(make_store, tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "s"
    make_store(synthetic.generate(N, 1, 3), path, shard_bars=1000, checkpoint_every=500)
    return path


@pytest.fixture
def store(built, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(built, dst)
    return dst


def edit(path, fn):
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m))


def refused(path, *fragments):
    with pytest.raises(StoreError) as err:
        gf.open_store(path)
    for f in fragments:
        assert f in str(err.value), f"{f!r} not in {err.value}"
    return str(err.value)


# --- crafted manifests ---------------------------------------------------------------------


def test_empty_stats(store, capsys):
    edit(store, lambda m: m.update(stats={}))
    refused(store, "stats: bars and valid_bars must be counts")
    for cmd in (["verify", str(store), "--quiet"], ["inspect", str(store)]):
        code = main(cmd)
        out, err = capsys.readouterr()
        assert code in (1, 2) and "Traceback" not in out + err


@pytest.mark.parametrize("splits", [{}, {"boundaries": []}, {"boundaries": [[None, 5], [5]], "counts": {}},
                                    {"boundaries": [[None, "x"], ["x", 3], [3, None]]},
                                    {"boundaries": [[None, 9], [9, 3], [3, None]]}, "garbage"])
def test_garbage_splits(store, splits):
    def bad(m):
        m["splits"] = splits if not isinstance(splits, dict) else dict(splits)
    edit(store, bad)
    refused(store, "splits")


def test_garbage_split_counts(store):
    edit(store, lambda m: m["splits"].update(counts={"train": {"bars": 1}}))
    refused(store, "splits: counts must give bars and windows")


def test_empty_sources(store):
    edit(store, lambda m: m.update(sources=[]))
    refused(store, "sources is empty")


@pytest.mark.parametrize("source", [1, -1, 99])
def test_bad_series_source(store, source):
    edit(store, lambda m: m["series"][0].update(source=source))
    refused(store, "series[0]: source", "outside the 1 source(s)")


def test_out_of_range_checkpoint_bar(store, capsys):
    """A state file (with a matching checksum) whose checkpoints point past the store."""
    from gpu_features.store.writer import write_state

    st = gf.open_store(store)
    states = st.states()
    cps = states["checkpoint_bar"].copy()
    cps[-1] = N + 10_000
    rec = write_state(store / "state.safetensors", cps, states["checkpoint_state"], states["end_state"], 500)
    edit(store, lambda m: m["state"].update(bytes=rec["bytes"], sha256=rec["sha256"]))
    with pytest.raises(StoreError, match="checkpoint bars must increase strictly inside 0 .. 2999"):
        gf.open_store(store).states()
    assert main(["verify", str(store), "--quiet"]) == 1  # a failed check, not an IndexError
    assert main(["plot", str(store), "--out", str(store.parent / "c.png")]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "checkpoint bars must increase" in out + err


def test_deeply_nested_json(store):
    (store / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(store, "nested too deeply")


@pytest.mark.parametrize("value", [1_000_000_000, 1e9])
def test_huge_window_length(store, value):
    edit(store, lambda m: m["config"].update(window_length=value))
    refused(store, "window_length")


def test_huge_synthetic_source_is_refused_before_allocating(store):
    edit(store, lambda m: m["sources"][0].update(n_bars=3_000_000_000))
    st = gf.open_store(store)  # in range for a manifest, but not for this store
    loaded, why = load_sources(st)
    assert loaded is None and "says 3,000,000,000 bars but the store holds 3,000" in why
    report = verify_store(store)
    assert not report.ok and report.checks[-1].ok is None
    with pytest.raises(StoreError, match="above the limit"):
        synthetic.regenerate(dict(st.sources[0], n_bars=3_000_000_000))


def test_out_of_range_n_bars(store):
    edit(store, lambda m: m.update(n_bars=1 << 40))
    refused(store, "n_bars = 1099511627776 is out of range")


def test_symlinked_shard_leaving_the_store(store, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shard = store / "bars-00000.safetensors"
    shutil.move(shard, outside)
    shard.symlink_to(outside)
    refused(store, "is a symbolic link to", "outside the store")
    state = store / "state.safetensors"
    shutil.move(state, tmp_path / "state-elsewhere")
    state.symlink_to(tmp_path / "state-elsewhere")
    shard.unlink()
    shutil.move(outside, shard)
    refused(store, "state file state.safetensors is a symbolic link")


def test_swapped_shards_are_refused_on_every_open(store):
    """Two shards swapped (same size): only the checksum tells; every reader hashes by default."""
    a, b = store / "bars-00001.safetensors", store / "bars-00002.safetensors"
    a.rename(store / "tmp"), b.rename(a), (store / "tmp").rename(b)
    refused(store, "fails its SHA-256 checksum")
    gf.open_store(store, checksums=False)  # the explicit opt-out skips only the hashing


def test_flipped_valid_byte_refused_by_inspect_export_and_plot(store, tmp_path, capsys):
    p = store / "bars-00001.safetensors"
    data = bytearray(p.read_bytes())
    data[-1] ^= 1  # the last valid flag
    p.write_bytes(bytes(data))
    for argv in (["inspect", str(store)], ["export", str(store), "--output", str(tmp_path / "e")],
                 ["plot", str(store), "--out", str(tmp_path / "c.png")]):
        assert main(argv) == 2
        assert "fails its SHA-256 checksum" in capsys.readouterr().err
    assert main(["inspect", str(store), "--no-checksums"]) == 0


# --- only our own files: check_output replaces a store or dataset only when it is ours and whole ---


@pytest.mark.parametrize("intruder", ["notes.txt", "runs/", "bars-00000.safetensors.bak", "part-00000/"])
def test_a_store_holding_anything_else_is_never_replaced(fresh_store, make_store, tmp_path, intruder):
    target = fresh_store.path / intruder.rstrip("/")
    target.mkdir() if intruder.endswith("/") else target.write_text("the user's")
    before = sorted(p.name for p in fresh_store.path.iterdir())
    with pytest.raises(StoreError, match=f"is a gpu-features store but also holds {intruder}, which is not the "
                                         "store's; replacing the folder would delete it"):
        make_store(synthetic.generate(2000, 1, 3), fresh_store.path, overwrite=True)
    assert sorted(p.name for p in fresh_store.path.iterdir()) == before
    gf.open_store(fresh_store.path)  # the old store is untouched


def test_the_refusal_without_overwrite_suggests_it_only_where_it_would_work(fresh_store, tmp_path):
    with pytest.raises(StoreError, match="already exists; pass --overwrite"):
        check_output(fresh_store.path, overwrite=False)
    (fresh_store.path / "notes.txt").write_text("x")
    for overwrite in (False, True):
        with pytest.raises(StoreError) as err:
            check_output(fresh_store.path, overwrite=overwrite)
        assert "--overwrite to replace" not in str(err.value) and "notes.txt" in str(err.value)


def test_an_empty_folder_needs_no_overwrite_and_a_damaged_store_of_ours_may_be_rebuilt(fresh_store, make_store, tmp_path):
    (tmp_path / "empty").mkdir()
    make_store(synthetic.generate(2000, 1, 3), tmp_path / "empty")
    (fresh_store.path / "manifest.json").write_text("{ damaged")  # still ours: its shards say so
    make_store(synthetic.generate(2000, 1, 3), fresh_store.path, overwrite=True)
    assert gf.open_store(fresh_store.path).n_bars == 2000


def test_a_folder_with_only_a_foreign_manifest_is_not_a_store(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "manifest.json").write_text(json.dumps({"name": "my app"}))
    with pytest.raises(StoreError, match="is a folder that is not a gpu-features store; refusing to replace it"):
        check_output(tmp_path / "web", overwrite=True)


def test_an_input_inside_the_output_or_the_output_inside_an_input_folder(fresh_store, make_store, tmp_path):
    bars = synthetic.generate(2000, 1, 3)
    inside = write_parquet(fresh_store.path / "bars.parquet", bars)
    with pytest.raises(StoreError, match="the input .*bars.parquet lies inside --output"):
        make_store(inside, fresh_store.path, overwrite=True)
    assert inside.is_file()
    (tmp_path / "data").mkdir()
    source = write_parquet(tmp_path / "data" / "bars.parquet", bars)
    with pytest.raises(StoreError, match="is inside the input folder"):
        make_store(str(tmp_path / "data"), tmp_path / "data" / "store")
    with pytest.raises(StoreError, match="bars.parquet lies inside --output"):
        make_store(source, tmp_path / "data", overwrite=True)
    assert source.is_file() and not (tmp_path / "data" / "store").exists()


def test_a_dataset_is_replaced_only_when_whole(tmp_path):
    folder = tmp_path / "ds"
    (folder / "part-00000").mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"format": fmt.DATASET_FORMAT}))
    (folder / "part-00000" / "manifest.json").write_text("{}")
    assert check_output(folder, overwrite=True) == folder
    (folder / "part-00000" / "notes.txt").write_text("x")
    with pytest.raises(StoreError, match="is a gpu-features dataset but also holds part-00000/notes.txt"):
        check_output(folder, overwrite=True)
