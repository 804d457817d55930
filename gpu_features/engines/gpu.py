"""The GPU engine: the kernels of ``kernels/`` through CuPy ``RawModule`` (NVRTC).

One module per ``atr_period`` is built lazily, once per process, with
``--fmad=false`` (no fused multiply-add: FEATURES.md, Numerics). The code
string carries the sources' SHA-256, so CuPy's on-disk kernel cache can never
serve a build of older sources. Arrays stay on the device from upload to the
result; ``kernel_seconds`` comes from CUDA events around the four launches.
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import EngineError
from . import abi

CHUNK_BARS = 256   # many short chunks: one thread each, enough threads to fill the GPU
WARM_BARS = 512    # FEATURES.md: W >= 512 reached the exact state in every sample measured
BLOCK = 128
NVRTC_OPTIONS = ("--fmad=false", "--std=c++17")


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device: all mean "not here"
        return False


def unavailable_reason() -> str:
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install 'gpu-features[gpu]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:
        return f"CUDA is not usable here ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    return "no CUDA device is visible" if count == 0 else "the GPU is available"


def nvrtc_program(atr_period: int) -> tuple[str, tuple[str, ...]]:
    """``(code, options)`` handed to NVRTC for ``atr_period``: the one definition of the GPU build.

    CuPy's ``RawModule`` appends its own options after these (CuPy 14: ``-ftz=true``,
    ``--device-as-default-execution-space``, ``-arch=...``); the kernels are written so
    that none of them changes a result (portable.cuh ``pf_f32``), and
    tests/engines/test_gpu.py compiles exactly this program with those options appended.
    """
    src_dir = abi.kernel_dir()
    includes = "".join(f'#include "{name}"\n' for name in abi.KERNEL_FILES)
    code = f"// gpu-features kernels, sources sha256 {abi.sources_digest().hexdigest()}\n{includes}"
    return code, NVRTC_OPTIONS + (f"-DPF_ATR_PERIOD={atr_period}", f"-I{src_dir}")


@functools.lru_cache(maxsize=None)
def module(atr_period: int):
    """The compiled ``cupy.RawModule`` holding the kernels (abi.KERNELS) for ``atr_period``."""
    import cupy

    code, options = nvrtc_program(atr_period)
    mod = cupy.RawModule(code=code, options=options)
    mod.compile()
    return mod


class _EventClock:
    seconds = 0.0

    def __enter__(self):
        import cupy

        self._start, self._stop = cupy.cuda.Event(), cupy.cuda.Event()
        self._start.record()
        return self

    def __exit__(self, *exc):
        import cupy

        self._stop.record()
        self._stop.synchronize()
        self.seconds = cupy.cuda.get_elapsed_time(self._start, self._stop) / 1000.0


class GpuBackend:
    """CuPy arrays, kernels as CUDA grids."""

    name = "gpu"

    def __init__(self, atr_period: int):
        if not available():
            raise EngineError(f"engine 'gpu' cannot run: {unavailable_reason()}; use --engine host or auto.")
        import cupy

        self.xp = cupy
        self._module = module(atr_period)

    def asarray(self, a: np.ndarray):
        return self.xp.asarray(np.ascontiguousarray(a))

    def launch(self, kernel: str, n_threads: int, args: list) -> None:
        kinds = abi.SIGNATURES[kernel]
        converted = [np.int64(a) if k == "q" else np.float64(a) if k == "d" else a for k, a in zip(kinds, args)]
        blocks = (int(n_threads) + BLOCK - 1) // BLOCK
        if blocks:
            self._module.get_function(kernel)((blocks,), (BLOCK,), tuple(converted))

    def timer(self):
        return _EventClock()
