"""precompute and the store writers: replacing only by a complete store, argument refusals, deterministic bytes, file permissions;
the direct writer: files written in place from the arrays are the safetensors library's bytes (metadata sorted), hashed
from what was written, and a failed write stops the files not yet started."""
import hashlib
import json
import os
import stat

import numpy as np
import pytest
from safetensors.numpy import load_file, save

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.errors import StoreError
from gpu_features.store import format as format_mod
from gpu_features.store import writer
from gpu_features.store import writer as store_mod
from tests.harness import STORE_ENGINE, fail_on_call
from tests.store.test_format import N
from tests.store.test_stats import random_features


def test_existing_store_needs_overwrite(make_store, bars, built):
    with pytest.raises(StoreError, match="already exists; pass --overwrite"):
        make_store(bars, built)


def test_overwrite_refuses_a_directory_that_is_not_a_store(make_store, bars, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(StoreError, match="is not a gpu-features store; refusing to replace it"):
        make_store(bars, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


def test_a_failure_midway_leaves_the_old_store_intact(make_store, bars, store_copy, monkeypatch):
    before = (store_copy / "manifest.json").read_text()
    monkeypatch.setattr(store_mod, "write_bytes", fail_on_call(store_mod.write_bytes, 2, OSError("disk full (injected)")))
    with pytest.raises(OSError, match="injected"):
        make_store(bars, store_copy, overwrite=True, shard_bars=7000)
    assert (store_copy / "manifest.json").read_text() == before
    gf.open_store(store_copy, checksums=True)
    left = [p.name for p in store_copy.parent.iterdir() if p.name.startswith(".") and p.name != ".copy.lock"]
    assert not left  # no temporary left (the empty lock file stays: see fileio.writer_lock)


def test_overwrite_replaces_with_a_complete_store(make_store, bars, store_copy):
    st = make_store(bars, store_copy, overwrite=True, shard_bars=20_000)
    assert len(st.manifest["shards"]) == 2 and len(list(store_copy.glob("bars-*"))) == 2


def test_precompute_argument_refusals(bars, tmp_path):
    with pytest.raises(StoreError, match="shard_bars and checkpoint_every must be >= 1, got 0 and 4096"):
        gf.precompute(bars, tmp_path / "x", engine="reference", shard_bars=0)


def _without_times(manifest: dict) -> dict:
    m = dict(manifest)
    m.pop("created"), m.pop("timings")
    m["engine"] = {k: v for k, v in m["engine"].items() if k != "kernel_seconds"}
    return m


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_get_the_permissions_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        gf.precompute(synthetic.generate(N, 1, 3), tmp_path / "s", engine=STORE_ENGINE, shard_bars=1000)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "s").iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_identical_builds_give_identical_bytes(tmp_path):
    bars = synthetic.generate(N, 2, 4)
    for name in ("a", "b"):
        gf.precompute(bars, tmp_path / name, engine=STORE_ENGINE, shard_bars=1000)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for f in files:
        if f != "manifest.json":
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    ma, mb = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("a", "b"))
    assert _without_times(ma) == _without_times(mb)
    assert list(ma) == list(mb)  # same key order, so the bytes differ only in times
    text = [(tmp_path / n / "manifest.json").read_text() for n in ("a", "b")]
    for m in (ma, mb):
        for k in ("created", "timings"):
            m[k] = None
        m["engine"]["kernel_seconds"] = 0
    assert json.dumps(ma, indent=1) == json.dumps(mb, indent=1) and len(text) == 2


def test_shards_are_written_from_memory_deterministic_and_hashed_from_their_bytes(tmp_path):
    from safetensors.numpy import load_file

    feats, valid, _ = random_features(np.random.default_rng(10), 3000)
    ts = np.arange(3000, dtype=np.int64) * 60_000_000_000
    a = writer.write_shard(tmp_path / "a.safetensors", feats, valid, ts, 17)
    b = writer.write_shard(tmp_path / "b.safetensors", feats, valid, ts, 17)
    data = (tmp_path / "a.safetensors").read_bytes()
    assert data == (tmp_path / "b.safetensors").read_bytes()
    assert a["sha256"] == hashlib.sha256(data).hexdigest() and a["bytes"] == len(data)
    assert {k: a[k] for k in ("first", "count")} == {"first": 17, "count": 3000}
    back = load_file(tmp_path / "a.safetensors")
    assert np.array_equal(back["features"], feats) and np.array_equal(back["valid"], valid)
    assert np.array_equal(back["timestamp"], ts)
    # The parallel, staged writer makes the same files as write_shard, in order.
    ranges = writer.shard_ranges(100, 2900, 700)
    clock, written = writer.WriteClock(), []
    out = tmp_path / "many"
    out.mkdir()
    records = writer.write_shards(out, 3, ranges, 100, feats[100:], valid[100:], ts[100:], written,
                                  lambda *a: None, clock=clock)
    assert [p.name for p in written] == [r["file"] for r in records] == [format_mod.shard_name(k)
                                                                         for k in range(3, 3 + len(ranges))]
    for rec, (first, count) in zip(records, ranges):
        single = writer.write_shard(tmp_path / "one.safetensors", feats[first:first + count],
                                    valid[first:first + count], ts[first:first + count], first)
        assert (out / rec["file"]).read_bytes() == (tmp_path / "one.safetensors").read_bytes()
        assert rec == dict(single, file=rec["file"])
    assert min(clock.serialize_s, clock.hash_s, clock.write_s) >= 0


# --- check before commit ---


def test_nothing_is_committed_that_a_reader_would_refuse(fresh_store, make_store, monkeypatch):
    """The net under the early option checks: a manifest the reader refuses never replaces a store."""
    from gpu_features.store import writer

    before = (fresh_store.path / "manifest.json").read_bytes()
    real = writer.check_before_commit

    def corrupt(folder, manifest, target, checkpoint_bar=None):
        manifest["splits"]["boundaries"][1][0] = 1 << 70  # what a date past 2262 used to write
        manifest["splits"]["boundaries"][0][1] = 1 << 70
        return real(folder, manifest, target, checkpoint_bar)

    monkeypatch.setattr(writer, "check_before_commit", corrupt)
    with pytest.raises(StoreError, match="refusing to commit a store that would not open .*nothing was replaced"):
        make_store(synthetic.generate(2000, 1, 3), fresh_store.path, overwrite=True)
    assert (fresh_store.path / "manifest.json").read_bytes() == before
    assert [p.name for p in fresh_store.path.parent.iterdir() if ".tmp-" in p.name] == []


# --- the direct writer (in place from the arrays) ---

def library_bytes(tensors: dict, metadata: dict) -> bytes:
    """The oracle: the safetensors library's file, metadata keys sorted (format.canonical_safetensors)."""
    return format_mod.canonical_safetensors(save(tensors, metadata=metadata))


def shard_tensors(rng, n: int, first: int):
    feats = rng.normal(size=(n, 10)).astype(np.float32)
    valid = rng.random(n) < 0.9
    ts = np.arange(n, dtype=np.int64) * 60_000_000_000 + 1_546_300_800_000_000_000
    return writer._shard_tensors(feats, valid, ts, first)


@pytest.mark.parametrize("n, first", [(0, 0), (1, 0), (7, 3), (1000, 524288), (12345, 10**12)])
def test_shard_parts_are_the_library_bytes(n, first):
    tensors, metadata = shard_tensors(np.random.default_rng(n), n, first)
    parts = writer.safetensors_parts(tensors, metadata)
    assert b"".join(bytes(p) for p in parts) == library_bytes(tensors, metadata)
    # No copy: every tensor part is a view of the array's own memory.
    assert n == 0 or all(np.shares_memory(p, a) for p, a in zip(parts[1:], (tensors["timestamp"], tensors["features"],
                                                                   tensors["valid"])))


@pytest.mark.parametrize("m, symbols", [(0, 1), (1, 1), (440, 1), (37, 2000)])
def test_state_parts_are_the_library_bytes(m, symbols):
    rng = np.random.default_rng(m + symbols)
    tensors = {"checkpoint_bar": np.sort(rng.integers(0, 10**9, m)).astype("<i8"),
               "checkpoint_state": rng.normal(size=(m, 26)), "end_state": rng.normal(size=(symbols, 26))}
    metadata = {"version": "1", "format": format_mod.FORMAT}  # unsorted on purpose
    parts = writer.safetensors_parts(tensors, metadata)
    assert b"".join(bytes(p) for p in parts) == library_bytes(tensors, metadata)


def test_parts_refuse_an_array_that_is_not_contiguous():
    tensors = {"features": np.zeros((10, 20), np.float32)[:, ::2]}
    with pytest.raises(ValueError, match="C-contiguous"):
        writer.safetensors_parts(tensors, {})


def test_write_bytes_hashes_what_it_writes_block_by_block(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "WRITE_BLOCK", 1000)  # many blocks, a short last one
    tensors, metadata = shard_tensors(np.random.default_rng(1), 777, 5)
    times = writer.WriteTimes()
    rec = writer.write_bytes(tmp_path / "a.safetensors", writer.safetensors_parts(tensors, metadata), times)
    data = (tmp_path / "a.safetensors").read_bytes()
    assert data == library_bytes(tensors, metadata)
    assert rec == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert times.hash_s > 0 and times.write_s > 0
    back = load_file(tmp_path / "a.safetensors")
    assert all(np.array_equal(back[k], v) for k, v in tensors.items())


def test_write_stage_time_is_split_in_proportion_and_adds_up():
    clock = writer.WriteClock()
    clock.add_write_stage(1.0, [writer.WriteTimes(hash_s=0.3, write_s=0.1), writer.WriteTimes(hash_s=0.3, write_s=0.5)])
    assert clock.hash_s == pytest.approx(0.5) and clock.write_s == pytest.approx(0.5)
    clock.add_write_stage(0.2, [])
    assert clock.hash_s + clock.write_s == pytest.approx(1.2)


def test_no_shard_is_started_after_a_failed_write(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "write_workers", lambda n: 1)  # one thread: files in order
    monkeypatch.setattr(writer, "write_bytes", fail_on_call(writer.write_bytes, 2, OSError("disk full (injected)")))
    n = 5000
    feats, valid = np.ones((n, 10), np.float32), np.ones(n, bool)
    ts = np.arange(n, dtype=np.int64)
    written = []
    with pytest.raises(OSError, match="injected"):
        writer.write_shards(tmp_path, 0, writer.shard_ranges(0, n, 1000), 0, feats, valid, ts, written,
                            lambda *a: None)
    assert [p.name for p in written] == [format_mod.shard_name(k) for k in range(5)]  # the caller can remove all
    assert sorted(p.name for p in tmp_path.iterdir()) == [format_mod.shard_name(0)]  # 2 failed, 3..5 never started
