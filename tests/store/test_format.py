"""Crafted and damaged stores, permissions, deterministic bytes, and a private kernel cache.

Every crafted manifest is refused by ``open_store`` with one sentence (a
StoreError, so the CLI exits 2), before any tool indexes or allocates by it.
"""
import json
import os
import shutil
import stat

import numpy as np
import pytest

import gpu_features as gf
from gpu_features import engines, synthetic
from gpu_features.cli import main
from gpu_features.engines import host
from gpu_features.errors import EngineError, StoreError
from gpu_features.sources import load_sources
from gpu_features.verify import verify_store
from tests.harness import STORE_ENGINE

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


# --- crafted manifests (issue 10, item 6) ----------------------------------------------------


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


# --- permissions and deterministic bytes ---------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_get_the_permissions_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        gf.precompute(synthetic.generate(N, 1, 3), tmp_path / "s", engine=STORE_ENGINE, shard_bars=1000)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "s").iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def _without_times(manifest: dict) -> dict:
    m = dict(manifest)
    m.pop("created"), m.pop("timings")
    m["engine"] = {k: v for k, v in m["engine"].items() if k != "kernel_seconds"}
    return m


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


# --- the host kernel cache ---------------------------------------------------------------------


def test_cache_is_created_private_and_refused_when_others_may_write(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_FEATURES_CACHE", str(tmp_path / "cache"))
    d = host._private_cache()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    d.chmod(0o777)
    with pytest.raises(EngineError, match="is not private to this user"):
        host._private_cache()


def test_cached_library_is_trusted_only_with_its_recorded_hash_owner_and_mode(tmp_path):
    lib = tmp_path / "pf-host-x.so"
    lib.write_bytes(b"\x7fELF pretend library")
    lib.chmod(0o700)
    import hashlib

    host._record_path(lib).write_text(json.dumps({"sources": "abc", "sha256": hashlib.sha256(lib.read_bytes())
                                                  .hexdigest()}))
    assert host._trusted(lib, "abc")
    assert not host._trusted(lib, "other sources")
    lib.chmod(0o722)
    assert not host._trusted(lib, "abc")  # writable by others
    lib.chmod(0o700)
    lib.write_bytes(b"\x7fELF someone else's code")
    assert not host._trusted(lib, "abc")  # bytes changed: rebuilt, never loaded


def test_unwritable_cache_auto_falls_back_and_says_so_host_is_refused(tmp_path, monkeypatch, capsys):
    if not host.available():
        pytest.skip("no C++ compiler: auto never picks the host engine here")
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("GPU_FEATURES_CACHE", str(blocker / "cache"))  # below a file: cannot be created
    monkeypatch.setattr(host, "_libraries", {})
    monkeypatch.setattr(engines, "resolve", lambda e: "host" if e == "auto" else e)  # no GPU picked first
    code = main(["precompute", "--output", str(tmp_path / "s"), "--synthetic-bars", "2000", "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0 and "engine reference" in out and "note: the host engine could not run" in out
    assert gf.open_store(tmp_path / "s").engine["name"] == "reference"
    code = main(["precompute", "--output", str(tmp_path / "t"), "--synthetic-bars", "2000", "--quiet",
                 "--engine", "host"])
    err = capsys.readouterr().err
    assert code == 2 and "the kernel cache" in err and "cannot be created" in err and err.count("\n") == 1


def test_cached_library_replaced_by_another_is_rebuilt(tmp_path, monkeypatch):
    """A tampered library in the cache is rebuilt, never loaded (the compiler is faked: no real build)."""
    import subprocess

    good = b"\x7fELF the library this user built"

    def fake_run(cmd, **kwargs):
        if "-o" in cmd:
            (tmp_path / "cache").mkdir(exist_ok=True)
            open(cmd[cmd.index("-o") + 1], "wb").write(good)
        return subprocess.CompletedProcess(cmd, 0, "g++ (fake) 1.0", "")

    monkeypatch.setenv("GPU_FEATURES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(host, "compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(host.subprocess, "run", fake_run)
    lib = host._build(10)
    assert lib.read_bytes() == good
    lib.write_bytes(b"\x7fELF someone else's library")
    assert host._build(10) == lib and lib.read_bytes() == good
