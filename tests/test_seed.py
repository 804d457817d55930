"""``gpu-features export --layout seed``: the old pipeline's arrays, atomic, sized first, no pickle, never over
the store it reads or a folder holding anything but an export."""
import json

import numpy as np
import pytest

import gpu_features as gf
from gpu_features import seed as export, synthetic
from gpu_features.arrow_export import write_parquet
from gpu_features.cli import build_parser
from gpu_features.errors import GpuFeaturesError
from gpu_features.seed import ExportError, export_seed, seed_layout_bytes

K = 105


@pytest.fixture(scope="module")
def store(make_store, tmp_path_factory):
    return make_store(synthetic.generate(10_000, 2, 11), tmp_path_factory.mktemp("x") / "s")


def _run_cli(argv):
    """The export sub-command parsed and run exactly as `gpu-features export` will run it."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except gf.GpuFeaturesError as err:
        return str(err)


def test_seed_layout_holds_the_stores_usable_windows(store, tmp_path):
    out = tmp_path / "seed"
    meta = export_seed(store, out)
    feats = np.load(out / "features_10d.npy", allow_pickle=False)
    valid = np.load(out / "valid_mask.npy", allow_pickle=False)
    splits = json.loads((out / "splits.json").read_text())
    assert json.loads((out / "metadata.json").read_text()) == meta
    starts = [store.usable_window_starts(s) for s in ("train", "val", "test")]
    n = sum(len(s) for s in starts)
    assert feats.shape == (n, K, 10) and feats.dtype == np.float32
    assert valid.shape == (n, K) and valid.dtype == np.bool_ and valid.all()
    assert splits == {"train_indices": [0, len(starts[0])],
                      "val_indices": [len(starts[0]), len(starts[0]) + len(starts[1])],
                      "test_indices": [len(starts[0]) + len(starts[1]), n]}
    assert meta["n_windows"] == n and meta["window_length"] == K and "created_at" in meta
    F = store.array("features")
    order = np.concatenate(starts)
    for i in (0, 1, len(starts[0]) - 1, len(starts[0]), n - 1):
        np.testing.assert_array_equal(feats[i], F[order[i]:order[i] + K])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".seed.lock", "seed"]  # no temporary left behind (the lock file stays)
    assert (out / "features_10d.npy").stat().st_size + (out / "valid_mask.npy").stat().st_size == \
        seed_layout_bytes(n, K)


def test_one_split_and_a_stride(store, tmp_path):
    export_seed(store, tmp_path / "v", splits=("val",), stride=5)
    splits = json.loads((tmp_path / "v" / "splits.json").read_text())
    n = np.load(tmp_path / "v" / "valid_mask.npy").shape[0]
    assert splits["train_indices"] == [0, 0] and splits["val_indices"] == [0, n] and splits["test_indices"] == [n, n]
    assert 0 < n <= len(store.usable_window_starts("val")) // 5 + 5


def test_the_old_loader_api_reads_the_export_like_the_store(store, tmp_path):
    torch = pytest.importorskip("torch")
    from gpu_features.seed import create_fast_dataloaders

    export_seed(store, tmp_path / "seed")
    from_export = create_fast_dataloaders(tmp_path / "seed", batch_size=64, seed=3, device="cpu")
    from_store = create_fast_dataloaders(store.path, batch_size=64, seed=3, device="cpu")
    for a, b in zip(from_export, from_store):
        assert a.n_windows == b.n_windows
    # val keeps order: the same windows in the same batches, whichever layout they come from
    xa, ma, va = next(iter(from_export[1]))
    xb, mb, vb = next(iter(from_store[1]))
    assert torch.equal(xa, xb) and torch.equal(va, vb) and ma.sum() == mb.sum()


@pytest.mark.parametrize("text", ["{", "{}", '{"train_indices": [0, 1], "val_indices": "x", "test_indices": [1, 2]}',
                                  '{"train_indices": [0, 10000000], "val_indices": [0, 0], "test_indices": [0, 0]}'])
def test_a_damaged_splits_json_is_one_sentence(store, tmp_path, text):
    pytest.importorskip("torch")
    from gpu_features.seed import create_fast_dataloaders
    from gpu_features.windows import WindowError

    export_seed(store, tmp_path / "seed", splits=("test",))
    (tmp_path / "seed" / "splits.json").write_text(text)
    with pytest.raises(WindowError, match="splits.json must give train_indices, val_indices and test_indices"):
        create_fast_dataloaders(tmp_path / "seed", device="cpu")


def test_size_is_stated_and_large_exports_need_yes(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "CONFIRM_ABOVE_BYTES", 1000)
    msg = _run_cli(["export", str(store.path), "--layout", "seed", "--output", str(tmp_path / "big")])
    assert "GB" in capsys.readouterr().out  # the size is printed before anything is written
    assert isinstance(msg, str) and msg.startswith("the seed layout of ") and "pass --yes to write it" in msg
    assert not (tmp_path / "big").exists()
    assert _run_cli(["export", str(store.path), "--output", str(tmp_path / "big"), "--yes", "--quiet"]) == 0
    assert (tmp_path / "big" / "features_10d.npy").is_file()


def test_existing_output_is_refused_or_replaced_only_when_it_is_an_export(store, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not a seed-layout export; refusing to touch it"):
        export_seed(store, other, overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
    export_seed(store, tmp_path / "e", splits=("test",))
    with pytest.raises(ExportError, match="already exists and is a seed-layout export; pass --overwrite"):
        export_seed(store, tmp_path / "e")
    export_seed(store, tmp_path / "e", splits=("val",), overwrite=True)
    assert json.loads((tmp_path / "e" / "splits.json").read_text())["test_indices"][0] > 0


def test_a_failed_export_leaves_nothing(store, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        export_seed(store, tmp_path / "x")
    assert [p.name for p in tmp_path.iterdir()] == [".x.lock"]  # only the (empty) lock file


def test_the_next_export_removes_what_a_killed_export_left(store, tmp_path):
    """A killed export leaves a .NAME.tmp-* folder (and, without an atomic exchange, a .NAME.old-* one)."""
    for tag in ("tmp-0badc0de", "old-0badc0de"):
        (tmp_path / f".e.{tag}").mkdir()
        (tmp_path / f".e.{tag}" / "features_10d.npy").write_bytes(b"half")
    export_seed(store, tmp_path / "e", splits=("test",))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".e.lock", "e"]


def test_bad_options_are_one_line_refusals(store, tmp_path):
    assert _run_cli(["export", str(store.path), "--output", str(tmp_path / "o"), "--stride", "0"]) == \
        "--stride must be >= 1, got 0."
    msg = _run_cli(["export", str(tmp_path / "missing"), "--output", str(tmp_path / "o")])
    assert "no such store directory" in msg
    with pytest.raises(ExportError, match="unknown split 'dev'"):
        export_seed(store, tmp_path / "o", splits=("dev",))


# --- only our own files: never over the store it reads, never a folder holding anything else ---


@pytest.mark.parametrize("name", ["manifest.json", "bars-00000.safetensors", "state.safetensors", "x.parquet"])
def test_no_export_over_a_file_of_the_store_it_reads(fresh_store, name):
    before = {p.name: p.read_bytes() for p in fresh_store.path.iterdir()}
    with pytest.raises(GpuFeaturesError, match="lies inside the store .* it exports"):
        write_parquet(fresh_store, fresh_store.path / name, overwrite=True)
    from gpu_features.seed import ExportError, export_seed

    with pytest.raises(ExportError, match="the store .* it exports"):
        export_seed(fresh_store, fresh_store.path / name, overwrite=True)
    with pytest.raises(ExportError, match="is the store"):
        export_seed(fresh_store, fresh_store.path, overwrite=True)
    with pytest.raises(ExportError, match="holds the store"):
        export_seed(fresh_store, fresh_store.path.parent, overwrite=True)
    assert {p.name: p.read_bytes() for p in fresh_store.path.iterdir()} == before
    gf.open_store(fresh_store.path)


def test_a_seed_export_with_anything_else_in_it_is_not_replaced(fresh_store, tmp_path):
    from gpu_features.seed import ExportError, export_seed

    export_seed(fresh_store, tmp_path / "e")
    (tmp_path / "e" / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="is not a seed-layout export; refusing to touch it"):
        export_seed(fresh_store, tmp_path / "e", overwrite=True)
    assert (tmp_path / "e" / "notes.txt").read_text() == "mine"


def test_a_read_only_target_is_not_reported_as_a_full_disk(fresh_store, tmp_path, monkeypatch):
    import os

    from gpu_features import fileio
    from gpu_features.seed import ExportError, export_seed

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(fileio.os, "statvfs", lambda path: ReadOnly())
    with pytest.raises(ExportError, match="is on a read-only file system, so --output cannot be written there"):
        export_seed(fresh_store, tmp_path / "e")
    with pytest.raises(GpuFeaturesError, match="read-only file system"):
        write_parquet(fresh_store, tmp_path / "e.parquet")
    assert not (tmp_path / "e").exists() and not (tmp_path / "e.parquet").exists()
