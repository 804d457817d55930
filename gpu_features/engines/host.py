"""The host engine: the CUDA C kernels of ``kernels/`` compiled for this CPU.

``kernels/host_entry.cpp`` includes the very same ``.cu`` sources the GPU
runs; ``portable.cuh`` turns each launch into an OpenMP loop. The library is
built once per (sources, flags, compiler, atr_period) and cached under
``$GPU_FEATURES_CACHE`` (default ``~/.cache/gpu-features``), then loaded with
ctypes. Loading a library runs its code, so the cache is private: the folder
is created 0700 and refused when another user owns it or others may write
it, and a library is loaded only when it is owned by this user, not
writable by others, and its bytes have the SHA-256 recorded (with its
sources' digest) when it was built; otherwise it is rebuilt. OpenMP honours
``OMP_NUM_THREADS``. Flags: ``-O3 -ffp-contract=off`` and never fast-math,
so every double operation rounds as FEATURES.md says.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import stat
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .. import state as S
from ..errors import EngineError
from . import abi

CHUNK_BARS = 16384  # few, long chunks: a CPU has few cores, so warm-up costs ~3% here
WARM_BARS = 512     # FEATURES.md: W >= 512 reached the exact state in every sample measured
FLAGS = ("-O3", "-std=c++17", "-ffp-contract=off", "-fno-fast-math", "-fopenmp", "-fPIC", "-shared")
_CTYPES = {"p": ctypes.c_void_p, "q": ctypes.c_int64, "d": ctypes.c_double}
_libraries: dict[int, ctypes.CDLL] = {}
_lock = threading.Lock()


def compiler() -> str | None:
    """The C++ compiler to use: ``$CXX`` if set (None when it does not exist), else g++, c++ or clang++."""
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])
    return shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def cache_dir() -> Path:
    return Path(os.environ.get("GPU_FEATURES_CACHE") or Path.home() / ".cache" / "gpu-features")


def _private_cache() -> Path:
    """The cache folder, created 0700; refused when it is not this user's alone to write."""
    d = cache_dir()
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = d.stat()
    except OSError as err:
        raise EngineError(f"the kernel cache {d} cannot be created ({err.strerror}); set GPU_FEATURES_CACHE to a "
                          "folder of your own, or use --engine reference.") from None
    if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise EngineError(f"the kernel cache {d} is not private to this user (owner uid {st.st_uid}, mode "
                          f"{stat.S_IMODE(st.st_mode):o}), and a library in it runs as you; run `chmod 700 {d}` "
                          "as its owner or set GPU_FEATURES_CACHE to a folder of your own.")
    if not os.access(d, os.W_OK | os.X_OK):
        raise EngineError(f"the kernel cache {d} is not writable; set GPU_FEATURES_CACHE to a folder of your own, "
                          "or use --engine reference.")
    return d


def _record_path(lib: Path) -> Path:
    return lib.with_name(lib.name + ".json")


def _trusted(lib: Path, sources: str) -> bool:
    """A cached library this user built: owned by us, not writable by others, bytes as recorded."""
    try:
        st = lib.lstat()
        record = json.loads(_record_path(lib).read_text())
    except (OSError, ValueError):
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    if not isinstance(record, dict) or record.get("sources") != sources:
        return False
    return hashlib.sha256(lib.read_bytes()).hexdigest() == record.get("sha256")


def available() -> bool:
    """True when a C++ compiler is present (the build itself happens on first use)."""
    return compiler() is not None


def library(atr_period: int | None) -> ctypes.CDLL:
    """The compiled kernels for ``atr_period``, built on first use and cached on disk.

    ``None``: any library already loaded (else the default period's), for kernels that do
    not depend on the period (``pf_moments``).
    """
    with _lock:
        if atr_period is None:
            atr_period = next(iter(_libraries), 10)
        if atr_period not in _libraries:
            _libraries[atr_period] = _load(_build(atr_period), atr_period)
        return _libraries[atr_period]


def _build(atr_period: int) -> Path:
    cxx = compiler()
    if cxx is None:
        wanted = os.environ.get("CXX") or "g++, c++ or clang++"
        raise EngineError(f"the host engine's compiler {wanted!r} was not found; install g++ or set CXX, "
                          "or use --engine reference meanwhile.")
    src_dir = abi.kernel_dir()
    flags = list(FLAGS) + [f"-DPF_ATR_PERIOD={atr_period}"]
    digest = abi.sources_digest()
    digest.update(" ".join([cxx] + flags).encode())
    digest.update(compiler_version(cxx).encode())
    sources = digest.hexdigest()
    out = _private_cache() / f"pf-host-{sources[:20]}.so"
    if _trusted(out, sources):
        return out
    # Build beside the target, then rename: a half-written library is never loaded. The record
    # (sources digest and the library's SHA-256) is written before the library appears.
    try:
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            tmp_out = Path(tmp) / out.name
            cmd = [cxx, *flags, "-I", str(src_dir), str(src_dir / "host_entry.cpp"), "-o", str(tmp_out)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                first = (proc.stderr.strip().splitlines() or ["no output"])[0]
                raise EngineError(f"building the host kernels failed ({first}); command: {' '.join(cmd)}.")
            os.chmod(tmp_out, 0o700)
            record = {"sources": sources, "sha256": hashlib.sha256(tmp_out.read_bytes()).hexdigest()}
            tmp_record = Path(tmp) / _record_path(out).name
            tmp_record.write_text(json.dumps(record) + "\n")
            os.replace(tmp_record, _record_path(out))
            os.replace(tmp_out, out)
    except OSError as err:
        raise EngineError(f"the kernel cache {out.parent} cannot be written ({err.strerror}); set "
                          "GPU_FEATURES_CACHE to a writable folder of your own, or use --engine reference.") from None
    if not _trusted(out, sources):
        raise EngineError(f"the host library {out} changed right after it was built; another process writes "
                          "the kernel cache, so set GPU_FEATURES_CACHE to a folder of your own.")
    return out


def compiler_version(cxx: str) -> str:
    """What ``cxx --version`` prints ("" when it cannot run): part of the kernel cache key, and shown by doctor."""
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return ""


def _load(path: Path, atr_period: int) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name, kinds in abi.SIGNATURES.items():
        fn = getattr(lib, f"host_{name}")
        fn.argtypes = [ctypes.c_int64] + [_CTYPES[k] for k in kinds]
        fn.restype = None
    lib.host_pf_state_dim.restype = ctypes.c_int
    lib.host_pf_max_threads.restype = ctypes.c_int
    # The C state layout (state.cuh) must be the Python one (state.py), or states read garbage.
    dim, want = int(lib.host_pf_state_dim()), S.state_dim(atr_period)
    if dim != want:
        raise EngineError(f"the host kernels in {path} keep {dim} state values but gpu_features/state.py expects "
                          f"{want}; state.cuh and state.py disagree, fix them together (then the cache rebuilds).")
    return lib


def threads(atr_period: int = 10) -> int:
    """OpenMP threads a host launch uses (honours ``OMP_NUM_THREADS``)."""
    return int(library(atr_period).host_pf_max_threads())


class _WallClock:
    seconds = 0.0

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0


class HostBackend:
    """numpy arrays, kernels as OpenMP loops through ctypes."""

    name = "host"
    xp = np

    def __init__(self, atr_period: int | None):
        self._lib = library(atr_period)

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a)

    def launch(self, kernel: str, n_threads: int, args: list) -> None:
        kinds = abi.SIGNATURES[kernel]
        if len(args) != len(kinds):
            raise EngineError(f"{kernel} takes {len(kinds)} arguments, got {len(args)}.")
        converted = []
        for kind, arg in zip(kinds, args):
            if kind == "p":
                if not (isinstance(arg, np.ndarray) and arg.flags.c_contiguous):
                    raise EngineError(f"{kernel}: pointer arguments must be C-contiguous numpy arrays.")
                converted.append(arg.ctypes.data)
            else:
                converted.append(arg)
        getattr(self._lib, f"host_{kernel}")(int(n_threads), *converted)

    def timer(self):
        return _WallClock()
