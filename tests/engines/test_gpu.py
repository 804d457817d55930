"""The GPU program compiled without a GPU: nvcc for sm_90, NVRTC exactly as CuPy builds it."""
import re
import shutil
import subprocess

import pytest

from gpu_features.engines import abi, gpu
from tests.engines import nvrtc as nvrtc_lib


@pytest.fixture(scope="module")
def nvrtc():
    lib = nvrtc_lib.load()
    if lib is None:
        pytest.skip("libnvrtc not found (CUDA toolkit or the nvidia-cuda-nvrtc wheel that make test installs)")
    return lib


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found: the sm_90 compile check needs the CUDA toolkit")
@pytest.mark.parametrize("source", abi.KERNEL_FILES)
def test_nvcc_compiles_every_kernel_for_sm90(source, tmp_path):
    src = abi.kernel_dir()
    cmd = ["nvcc", "-arch=sm_90", "--fmad=false", "-std=c++17", "-DPF_ATR_PERIOD=10", "-I", str(src), "-c",
           str(src / source), "-o", str(tmp_path / "k.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "k.o").stat().st_size > 0


@pytest.mark.parametrize("atr_period", [1, 14, 64])
def test_nvrtc_builds_the_gpu_program_exactly_as_cupy_would(nvrtc, atr_period):
    """The GPU engine's program through NVRTC with CuPy's own options appended, for sm_90.

    Checks what would otherwise first show on a GPU: NVRTC accepts the sources (no host
    headers there), every kernel of engines/abi.py exists with the argument kinds it
    passes, no multiply-add was fused, and CuPy's -ftz=true flushed no float rounding.
    """
    result, log, ptx = nvrtc.compile_like_cupy(gpu.nvrtc_program(atr_period), "compute_90")
    assert result == 0, f"NVRTC {nvrtc.version()} failed:\n{log}"
    assert "warning" not in log.lower(), log
    ptx_kind = {"p": {"u64", "b64", "s64"}, "q": {"u64", "b64", "s64"}, "d": {"f64"}}
    entries = dict(re.findall(r"\.entry\s+(\w+)\s*\(([^)]*)\)", ptx))
    assert set(entries) == set(abi.SIGNATURES)
    for name, params in entries.items():
        kinds = re.findall(r"\.param\s+\.(\w+)", params)
        sig = abi.SIGNATURES[name]
        assert len(kinds) == len(sig), f"{name}: {len(kinds)} parameters in the kernel, {len(sig)} in SIGNATURES"
        for i, (kind, want) in enumerate(zip(kinds, sig)):
            assert kind in ptx_kind[want], f"{name} argument {i}: .{kind} in the kernel, '{want}' in SIGNATURES"
    assert not re.search(r"\bfma\.", ptx), "a fused multiply-add: --fmad=false did not hold"
    roundings = re.findall(r"cvt\.\S*f32\.f64", ptx)
    assert roundings and set(roundings) == {"cvt.rn.f32.f64"}, sorted(set(roundings))


def test_nvrtc_builds_a_cubin_for_sm90_as_cupy_does_on_an_h100(nvrtc):
    result, log, cubin = nvrtc.compile_like_cupy(gpu.nvrtc_program(14), "sm_90")
    assert result == 0, f"NVRTC {nvrtc.version()} failed:\n{log}"
    assert cubin[:4] == b"\x7fELF" and len(cubin) > 10_000
