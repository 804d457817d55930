"""The host engine: its compiler, threads and a private kernel cache it trusts only by hash, owner and mode."""
import json
import os
import stat
import subprocess
import sys

import pytest

import gpu_features as gf
from gpu_features import engines
from gpu_features import state as S
from gpu_features.cli import main
from gpu_features.engines import host
from gpu_features.errors import EngineError


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


def test_host_build_without_compiler_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-g++"))
    monkeypatch.setenv("GPU_FEATURES_CACHE", str(tmp_path))
    monkeypatch.setattr(host, "_libraries", {})
    with pytest.raises(EngineError, match="compiler .*no-such-g\\+\\+.* was not found; install g\\+\\+"):
        host.library(10)


@pytest.mark.skipif(not host.available(), reason="no C++ compiler for the host engine")
@pytest.mark.parametrize("n", ["1", "2"])
def test_host_respects_omp_num_threads(n):
    code = "from gpu_features.engines import host; print(host.threads())"
    env = dict(os.environ, OMP_NUM_THREADS=n)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == n


@pytest.mark.skipif(not host.available(), reason="no C++ compiler for the host engine")
def test_host_library_state_dimension_is_checked_when_it_loads(monkeypatch):
    lib = host.library(10)
    monkeypatch.setattr(S, "state_dim", lambda p: 999)
    with pytest.raises(EngineError, match="keep 26 state values but gpu_features/state.py expects 999"):
        host._load(lib._name, 10)
