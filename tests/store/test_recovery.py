"""Fault injection: writers killed at every step, disk full, concurrent writers.

Each writer step is a named :func:`gpu_features.fileio.fault_point`; the CLI runs
in a subprocess with ``GPU_FEATURES_FAULT=<point>`` and is killed there with
SIGKILL (no cleanup runs). Afterwards the store at ``--output`` must be the
complete old store or the complete new one (every shard's SHA-256 equal to one
of them, and it opens with checksums), what the killed writer left must be
reported by ``verify`` and removed by the next writer.
"""
import errno
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import gpu_features as gf
from gpu_features import synthetic
from gpu_features.cli import main
from gpu_features.fileio import FAULT_ENV, LOCK_TIMEOUT_ENV, lock_path
from gpu_features.store import append_store
from gpu_features.store.recovery import leftovers
from gpu_features.verify import verify_store
from tests.harness import STORE_ENGINE, write_parquet

BARS, SHARD = 3000, 1000


def cli(*argv, fault=None, env=None, wait=True):
    """Run ``gpu-features ARGV`` in a subprocess (optionally with a fault point armed)."""
    e = dict(os.environ, **(env or {}))
    e.pop(FAULT_ENV, None)
    if fault:
        e[FAULT_ENV] = fault
    cmd = [sys.executable, "-m", "gpu_features.cli", *argv]
    if not wait:
        return subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=300)


def shard_hashes(path):
    """SHA-256 of every shard of the store at ``path``, opened with checksums (so: complete and intact)."""
    st = gf.open_store(path)
    return [s.sha256 for s in st.shards] + [st.state_record["sha256"]]


def precompute_args(out, seed, *extra):
    return ("precompute", "--output", str(out), "--synthetic-bars", str(BARS), "--seed", str(seed),
            "--shard-bars", str(SHARD), "--engine", STORE_ENGINE, "--quiet", *extra)


@pytest.fixture(scope="module")
def versions(make_store, tmp_path_factory):
    """The old store (seed 0) and the new one (seed 1), built in-process: their shard hashes."""
    root = tmp_path_factory.mktemp("versions")
    out = {}
    for seed in (0, 1):
        make_store(synthetic.generate(BARS, 1, seed), root / f"s{seed}", shard_bars=SHARD)
        out[seed] = shard_hashes(root / f"s{seed}")
    assert out[0] != out[1]
    return out


# Precompute --overwrite: killed before the commit point -> the old store; after it -> the new one.
OVERWRITE_POINTS = [("precompute.before_shards", 0), ("precompute.after_shard_0", 0),
                    ("precompute.after_shard_1", 0), ("precompute.after_shard_2", 0), ("precompute.after_state", 0),
                    ("precompute.before_manifest", 0), ("precompute.after_manifest", 0),
                    ("replace.after_exchange", 1), ("precompute.after_commit", 1)]


@pytest.mark.parametrize("point,expected", OVERWRITE_POINTS, ids=[p for p, _ in OVERWRITE_POINTS])
def test_overwrite_killed_at_each_step_leaves_the_old_or_the_new_store(versions, tmp_path, point, expected):
    out = tmp_path / "store"
    gf.precompute(synthetic.generate(BARS, 1, 0), out, engine=STORE_ENGINE, shard_bars=SHARD)
    r = cli(*precompute_args(out, 1, "--overwrite"), fault=point)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert shard_hashes(out) == versions[expected]
    report = verify_store(out, sample_bars=500)
    assert report.ok, [c.detail for c in report.checks]
    if expected == 0 and point != "precompute.before_shards" or point == "replace.after_exchange":
        assert any("leftover" in w for w in report.warnings)  # the killed writer's folder is reported ...
    if point in ("precompute.after_shard_1", "precompute.after_manifest", "replace.after_exchange"):
        r = cli(*precompute_args(out, 1, "--overwrite"))
        assert r.returncode == 0, r.stderr
        assert shard_hashes(out) == versions[1]
        assert leftovers(out, gf.open_store(out).manifest) == []  # ... and removed by the next writer


def test_replace_cut_between_renames_is_recovered_on_open(versions, tmp_path):
    """Where no atomic exchange exists, a kill between the two renames leaves no store at --output;
    the next open moves the complete new store into place instead of reporting it missing."""
    out = tmp_path / "store"
    gf.precompute(synthetic.generate(BARS, 1, 0), out, engine=STORE_ENGINE, shard_bars=SHARD)
    r = cli(*precompute_args(out, 1, "--overwrite"), fault="replace.between_renames",
            env={"GPU_FEATURES_NO_EXCHANGE": "1"})
    assert r.returncode == -signal.SIGKILL
    assert not out.exists()
    r = cli(*precompute_args(out, 0))  # a new build does not build over it: it is put back first
    assert r.returncode == 2 and "already exists; pass --overwrite" in r.stderr
    assert shard_hashes(out) == versions[1]
    shutil.rmtree(out)
    shutil.move(next(tmp_path.glob(".store.old-*")), tmp_path / ".store.old-again")  # the crash state again
    assert shard_hashes(out) == versions[0]  # no complete new one left: the old store goes back on open
    r = cli("inspect", str(out))
    assert r.returncode == 0, r.stderr


def test_fresh_build_killed_before_its_commit_says_how_to_finish(tmp_path):
    out = tmp_path / "store"
    r = cli(*precompute_args(out, 0), fault="precompute.after_manifest")
    assert r.returncode == -signal.SIGKILL and not out.exists()
    r = cli("inspect", str(out))
    assert r.returncode == 2 and "a build into it was interrupted" in r.stderr and "run `gpu-features precompute" \
        in r.stderr
    r = cli(*precompute_args(out, 0))
    assert r.returncode == 0, r.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".store.tmp")] == []


# --- append -----------------------------------------------------------------------------------

APPEND_POINTS = [("append.before_shards", 0), ("append.after_shard_0", 0), ("append.after_shard_1", 0),
                 ("append.after_state", 0), ("append.before_manifest", 0), ("append.after_manifest", 1)]


@pytest.fixture(scope="module")
def append_case(tmp_path_factory):
    """A 3,000-bar store, a parquet of the next 1,000 bars, and the hashes before and after the append."""
    root = tmp_path_factory.mktemp("append")
    bars = synthetic.generate(BARS + 1000, 1, seed=21)
    gf.precompute(bars.take(0, BARS, 0), root / "base", engine=STORE_ENGINE, shard_bars=SHARD)
    new = write_parquet(root / "new.parquet", bars, BARS, None)
    shutil.copytree(root / "base", root / "after")
    append_store(root / "after", new, engine=STORE_ENGINE, shard_bars=500)
    return root, new, {0: shard_hashes(root / "base"), 1: shard_hashes(root / "after")}


@pytest.mark.parametrize("point,expected", APPEND_POINTS, ids=[p for p, _ in APPEND_POINTS])
def test_append_killed_at_each_step_leaves_the_old_or_the_new_store(append_case, tmp_path, point, expected):
    root, new, hashes = append_case
    out = tmp_path / "store"
    shutil.copytree(root / "base", out)
    args = ("precompute", "--output", str(out), "--append", str(new), "--shard-bars", "500", "--engine",
            STORE_ENGINE, "--quiet")
    r = cli(*args, fault=point)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert shard_hashes(out) == hashes[expected]
    report = verify_store(out, sample_bars=500)
    assert report.ok, [c.detail for c in report.checks]
    left = leftovers(out, gf.open_store(out).manifest)
    if point != "append.before_shards":
        assert left and any("leftover" in w for w in report.warnings)  # unlisted shard/state files reported
    if point in ("append.after_shard_1", "append.before_manifest"):
        r = cli(*args)  # the next writer cleans them and appends
        assert r.returncode == 0, r.stderr
        assert shard_hashes(out) == hashes[1]
        assert leftovers(out, gf.open_store(out).manifest) == []


# --- disk full ---------------------------------------------------------------------------------


def test_disk_full_during_overwrite_is_one_sentence_and_keeps_the_old_store(versions, tmp_path, capsys, monkeypatch):
    out = tmp_path / "store"
    gf.precompute(synthetic.generate(BARS, 1, 0), out, engine=STORE_ENGINE, shard_bars=SHARD)
    monkeypatch.setenv(FAULT_ENV, "enospc:precompute.after_shard_1")
    code = main(list(precompute_args(out, 1, "--overwrite")))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "the disk is full" in err and "intact" in err
    assert shard_hashes(out) == versions[0]
    assert [p.name for p in tmp_path.iterdir()] == [".store.lock", "store"]  # the partial new store is gone


def test_disk_full_at_the_operating_system_write(versions, tmp_path, capsys, monkeypatch):
    """ENOSPC raised by os.write itself (the call every shard and state write goes through)."""
    out = tmp_path / "store"
    gf.precompute(synthetic.generate(BARS, 1, 0), out, engine=STORE_ENGINE, shard_bars=SHARD)
    real = os.write
    calls = []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    code = main(list(precompute_args(out, 1, "--overwrite")))
    monkeypatch.setattr(os, "write", real)
    err = capsys.readouterr().err
    assert code == 2 and "the disk is full" in err
    assert shard_hashes(out) == versions[0]


def test_disk_full_during_append_keeps_the_store_and_leaves_no_files(append_case, tmp_path, capsys, monkeypatch):
    root, new, hashes = append_case
    out = tmp_path / "store"
    shutil.copytree(root / "base", out)
    monkeypatch.setenv(FAULT_ENV, "enospc:append.after_state")
    code = main(["precompute", "--output", str(out), "--append", str(new), "--shard-bars", "500", "--quiet"])
    assert code == 2 and "the disk is full" in capsys.readouterr().err
    assert shard_hashes(out) == hashes[0]
    assert leftovers(out, gf.open_store(out).manifest) == []


def test_a_failure_after_the_append_commit_keeps_the_new_files(append_case, tmp_path, monkeypatch):
    """An error raised once the new manifest is in place must not remove the files it lists."""
    root, new, hashes = append_case
    out = tmp_path / "store"
    shutil.copytree(root / "base", out)
    monkeypatch.setenv(FAULT_ENV, "enospc:append.after_manifest")
    with pytest.raises(OSError):
        append_store(out, new, engine=STORE_ENGINE, shard_bars=500)
    assert shard_hashes(out) == hashes[1]


# --- concurrent writers ------------------------------------------------------------------------


def _symbol_parquet(path, name, seed, t0):
    """500 bars of a new symbol ``name`` (timestamps from ``t0``) as a parquet with a symbol column."""
    from gpu_features.ingest import Bars

    b = synthetic.generate(500, 1, seed)
    b = Bars(b.open, b.high, b.low, b.close, b.timestamp - b.timestamp[0] + t0, b.offsets, (name,), b.source,
             b.ingest)
    return write_parquet(path, b)


def test_concurrent_appends_are_serialized_and_none_is_lost(append_case, tmp_path):
    """Two appends at once: the first pauses a second before its commit while holding the lock; the second
    must wait for it (without the lock it read the old manifest and one append was lost)."""
    root, _, _ = append_case
    out = tmp_path / "store"
    shutil.copytree(root / "base", out)
    t0 = int(gf.open_store(out).timestamps()[-1]) + 60_000_000_000
    files = [_symbol_parquet(tmp_path / f"{n}.parquet", n, k + 5, t0) for k, n in enumerate(("AAA", "BBB"))]
    procs = [cli("precompute", "--output", str(out), "--append", str(f), "--engine", STORE_ENGINE, "--quiet",
                 fault="pause:append.before_manifest", wait=False) for f in files]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert [r[2] for r in results] == [0, 0], [r[1] for r in results]
    st = gf.open_store(out)
    assert sorted(st.symbols) == ["AAA", "BBB", "NQ"] and st.n_bars == BARS + 1000
    assert len(st.appends) == 2 and leftovers(out, st.manifest) == []
    assert verify_store(out, sample_bars=500).ok


def test_concurrent_precomputes_into_one_new_output(tmp_path):
    """Two builds into the same new folder: one writes it, the other is refused (not silently replaced)."""
    out = tmp_path / "store"
    procs = [cli(*precompute_args(out, seed), fault="pause:precompute.before_manifest", wait=False)
             for seed in (0, 1)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], [r[1] for r in results]
    loser = next(r for r in results if r[2] == 2)
    assert "already exists; pass --overwrite" in loser[1]
    assert verify_store(out, sample_bars=500).ok


def test_a_writer_that_cannot_get_the_lock_is_refused_in_one_sentence(tmp_path, capsys, monkeypatch):
    out = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from filelock import FileLock; "
                               f"lock = FileLock({str(lock_path(out))!r}); lock.acquire(); print('held', flush=True); "
                               "time.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv(LOCK_TIMEOUT_ENV, "0.2")
        t = time.monotonic()
        code = main(list(precompute_args(out, 0)))
        err = capsys.readouterr().err
        assert code == 2 and "is being written by another process" in err and err.count("\n") == 1
        assert time.monotonic() - t < 60 and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(list(precompute_args(out, 0))) == 0  # the kernel released the dead holder's lock


def test_every_fault_point_is_exercised():
    """The lists above kill at every fault point the writers define (a new step needs a test)."""
    import re
    from pathlib import Path

    named = set()
    for f in Path(gf.__file__).parent.rglob("*.py"):
        named |= set(re.findall(r'fault_point\(f?"([^"]+)"\)', f.read_text()))
    named.discard("{fault}.after_shard_{k}")
    named |= {"precompute.after_shard_{k}", "append.after_shard_{k}"}  # write_shards, per caller
    tested = {re.sub(r"_\d+$", "_{k}", p) for p, _ in OVERWRITE_POINTS + APPEND_POINTS}
    tested |= {"replace.between_renames", "precompute.after_manifest"}
    assert named == tested
    kills = len(OVERWRITE_POINTS) + len(APPEND_POINTS) + 2  # + between_renames + the fresh build
    assert kills == 17
