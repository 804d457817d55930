"""NVRTC through ctypes, for compile checks on machines without a GPU.

CuPy's ``RawModule`` compiles the GPU engine with NVRTC, not nvcc, so these
checks use the same compiler the GPU machine will: NVRTC needs no device, only
``libnvrtc`` (from a CUDA toolkit, or the ``nvidia-cuda-nvrtc`` wheel that
``make test`` installs).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
from pathlib import Path

# What CuPy 14's RawModule appends after our options (cupy/cuda/compiler.py), besides -arch.
CUPY_APPENDED_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")


def _candidates() -> list[Path]:
    dirs = []
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        dirs += sorted(Path(root).glob("*/lib"))  # nvidia/cu13/lib, nvidia/cuda_nvrtc/lib
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            dirs.append(Path(home) / "lib64")
    dirs += [Path(p) for p in sorted(glob.glob("/usr/local/cuda-*/lib64"))]
    found = [lib for d in dirs for lib in sorted(d.glob("libnvrtc.so*")) if "builtins" not in lib.name
             and "alt" not in lib.name]
    system = ctypes.util.find_library("nvrtc")
    return found + ([Path(system)] if system else [])


class Nvrtc:
    def __init__(self, path: Path):
        # NVRTC dlopens libnvrtc-builtins by name at compile time; load it first, globally,
        # so the wheel's copy is found without LD_LIBRARY_PATH.
        for builtins in sorted(path.parent.glob("libnvrtc-builtins.so*")):
            if "alt" not in builtins.name:
                ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
        self.lib = ctypes.CDLL(str(path))
        self.path = path

    def version(self) -> tuple[int, int]:
        major, minor = ctypes.c_int(), ctypes.c_int()
        self.lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        return major.value, minor.value

    def compile(self, code: str, options) -> tuple[int, str, str | bytes]:
        """Compile ``code``. Returns ``(result code, log, output)``; result 0 is success.

        The output is PTX text for ``-arch=compute_XX`` and a CUBIN for ``-arch=sm_XX``
        (what CuPy asks for on a card NVRTC knows).
        """
        lib = self.lib
        prog = ctypes.c_void_p()
        assert lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), b"kern.cu", 0, None, None) == 0
        try:
            opts = [o.encode() for o in options]
            result = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            if result != 0:
                return result, log.value.decode(errors="replace"), ""
            cubin = any(o.startswith(("-arch=sm_", "--gpu-architecture=sm_")) for o in options)
            get_size, get = (lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN) if cubin else (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX)
            assert get_size(prog, ctypes.byref(size)) == 0
            buf = ctypes.create_string_buffer(size.value)
            assert get(prog, buf) == 0
            return result, log.value.decode(errors="replace"), buf.raw if cubin else buf.value.decode()
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


    def compile_like_cupy(self, program: tuple[str, tuple], arch: str) -> tuple[int, str, str | bytes]:
        """Compile ``(code, options)`` as CuPy's RawModule does: its own options appended, then ``-arch``."""
        code, options = program
        return self.compile(code, tuple(options) + CUPY_APPENDED_OPTIONS + (f"-arch={arch}",))


def load() -> Nvrtc | None:
    """The first libnvrtc that loads, or None."""
    for path in _candidates():
        try:
            return Nvrtc(path)
        except OSError:
            continue
    return None
