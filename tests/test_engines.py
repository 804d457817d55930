"""Fast engines against the reference: randomized and adversarial inputs, tiny chunks, forced fix-ups.

Every run poisons its outputs with NaN first (harness.cross_check), so an
element a kernel forgets to write fails the comparison. Tiny chunk sizes and
warm-ups make small inputs cross many chunk boundaries; W = 0 starts every
chunk cold at its first bar, so the speculative start is wrong and the
fix-up pass must repair it exactly.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gpu_features import FeatureConfig, engines
from gpu_features import state as S
from gpu_features.engines import abi, gpu, host, launch
from gpu_features.errors import EngineError
from tests import nvrtc as nvrtc_lib
from tests.harness import cross_check, random_bars

P, K = 10, 105
ADVERSARIAL_LENGTHS = [1, 2, P, P + 1, P + 2, K - 1, K, K + 1, 97, 101, 127, 128, 129, 1009]


def test_golden_default_chunks(fast_engine, golden):
    got, _ = cross_check(fast_engine, golden["open"], golden["high"], golden["low"], golden["close"], what="golden")
    assert np.array_equal(got.features.view(np.uint32) if fast_engine == "host" else got.features.get().view(np.uint32),
                          golden["features"].view(np.uint32))


@pytest.mark.parametrize("chunk, warm", [(1, 0), (2, 1), (7, 3), (64, 0), (100, 12), (333, 128), (4096, 512)])
def test_golden_tiny_chunks(fast_engine, golden, chunk, warm):
    got, _ = cross_check(fast_engine, golden["open"], golden["high"], golden["low"], golden["close"],
                         chunk_bars=chunk, warm_bars=warm, what=f"golden C={chunk} W={warm}")
    assert got.chunks == -(-20000 // chunk)


def test_cold_starts_force_fixups_and_stay_exact(fast_engine, golden):
    got, _ = cross_check(fast_engine, golden["open"], golden["high"], golden["low"], golden["close"],
                         chunk_bars=50, warm_bars=0, what="W=0")
    assert got.fixups > 0.5 * got.chunks  # most cold starts were wrong and were re-run
    warm, _ = cross_check(fast_engine, golden["open"], golden["high"], golden["low"], golden["close"],
                          chunk_bars=50, warm_bars=512, what="W=512")
    assert warm.fixups == 0


@pytest.mark.parametrize("length", ADVERSARIAL_LENGTHS)
@pytest.mark.parametrize("chunk, warm", [(1, 0), (11, 12), (128, 0)])
def test_adversarial_lengths(fast_engine, length, chunk, warm):
    rng = np.random.default_rng(length * 1000 + chunk)
    o, h, l, c, off = random_bars(rng, [length])
    cross_check(fast_engine, o, h, l, c, off, chunk_bars=chunk, warm_bars=warm, what=f"n={length}")


@pytest.mark.parametrize("chunk", [127, 128, 129])
def test_lengths_around_the_chunk_size(fast_engine, chunk):
    rng = np.random.default_rng(chunk)
    for length in (chunk - 1, chunk, chunk + 1, 2 * chunk - 1, 2 * chunk + 1):
        o, h, l, c, off = random_bars(rng, [length])
        cross_check(fast_engine, o, h, l, c, off, chunk_bars=chunk, warm_bars=P + 5, what=f"n={length} C={chunk}")


def test_empty_input(fast_engine):
    e = np.zeros(0)
    r = engines.run(e, e, e, e, engine=fast_engine)
    assert r.features.shape == (0, 10) and r.valid.shape == (0,) and r.end_states.shape == (0, S.state_dim(P))


@pytest.mark.parametrize("seed", range(6))
def test_many_short_series(fast_engine, seed):
    rng = np.random.default_rng(100 + seed)
    lengths = rng.integers(1, 40, size=150).tolist()
    o, h, l, c, off = random_bars(rng, lengths)
    got, _ = cross_check(fast_engine, o, h, l, c, off, chunk_bars=int(rng.integers(1, 20)),
                         warm_bars=int(rng.integers(0, 30)), what=f"150 short series seed {seed}")
    assert got.end_states.shape == (150, S.state_dim(P))


@pytest.mark.parametrize("seed", range(4))
def test_flat_stretches_and_huge_gaps(fast_engine, seed):
    rng = np.random.default_rng(200 + seed)
    o, h, l, c, off = random_bars(rng, [3000, 1500, 17], flat_share=0.3, gap_share=0.01)
    cross_check(fast_engine, o, h, l, c, off, chunk_bars=64, warm_bars=int(rng.integers(0, 40)),
                what=f"flat + gaps seed {seed}")


@pytest.mark.parametrize("cfg", [
    FeatureConfig(hybrid=False),
    FeatureConfig(atr_period=1, ema_period=1, warmup_bars=0),
    FeatureConfig(atr_period=64, zigzag_k=3.5, hybrid_lookback=0, window_length=2),
    FeatureConfig(hybrid_min_retrace_atr=0.0, eps=0.5),
])
def test_other_configs(fast_engine, cfg, golden):
    n = 5000
    cross_check(fast_engine, golden["open"][:n], golden["high"][:n], golden["low"][:n], golden["close"][:n],
                config=cfg, chunk_bars=97, warm_bars=40, what=str(cfg))


def test_start_states_continue_a_series_exactly(fast_engine, golden):
    """Running bars [a, n) from the state after bar a - 1 equals the tail of one full run (append)."""
    o, h, l, c = (golden[k][:8000] for k in ("open", "high", "low", "close"))
    full = engines.run(o, h, l, c, engine="reference")
    for a in (1, 61, 4000, 7999):
        head = engines.run(o[:a], h[:a], l[:a], c[:a], engine=fast_engine)
        head_end = head.end_states if fast_engine == "host" else head.end_states.get()
        tail, _ = cross_check(fast_engine, o[a:], h[a:], l[a:], c[a:], start_states=head_end, chunk_bars=500,
                              warm_bars=100, what=f"continuation from bar {a}")
        tf = tail.features if fast_engine == "host" else tail.features.get()
        np.testing.assert_array_equal(tf.view(np.uint32), full.features[a:].view(np.uint32))


def test_snapshots_equal_the_state_of_a_prefix(fast_engine, golden):
    o, h, l, c = (golden[k][:3000] for k in ("open", "high", "low", "close"))
    at = np.array([0, 1, 5, 63, 64, 65, 1000, 2999])
    got, _ = cross_check(fast_engine, o, h, l, c, snapshot_at=at, chunk_bars=64, warm_bars=0, what="snapshots")
    snaps = got.snapshots if fast_engine == "host" else got.snapshots.get()
    for k, p in enumerate(at):
        prefix = engines.run(o[:p], h[:p], l[:p], c[:p], engine="reference")
        want = prefix.end_states[0] if p else np.zeros(S.state_dim(P))
        np.testing.assert_array_equal(snaps[k].view(np.uint64), want.view(np.uint64))


def test_snapshots_at_series_starts_of_many_series(fast_engine):
    rng = np.random.default_rng(5)
    o, h, l, c, off = random_bars(rng, [30, 1, 200, 9])
    at = np.unique(np.concatenate([off, off + 0, [35, 100, 239]]))
    cross_check(fast_engine, o, h, l, c, off, snapshot_at=at, chunk_bars=16, warm_bars=16, what="snapshots multi")


def test_bad_arguments_are_refused():
    x = np.ones(5)
    with pytest.raises(EngineError, match="offsets must start at 0"):
        engines.run(x, x, x, x, offsets=[1, 3])
    with pytest.raises(EngineError, match="unknown engine 'cuda'"):
        engines.run(x, x, x, x, engine="cuda")
    with pytest.raises(EngineError, match="1-D with 5 elements"):
        engines.run(np.ones(4), x, x, x)
    with pytest.raises(EngineError, match="chunk_bars must be >= 1"):
        engines.run(x, x, x, x, engine="host", chunk_bars=0)
    with pytest.raises(EngineError, match="start_states has shape"):
        engines.run(x, x, x, x, start_states=np.zeros((1, 3)))


def test_chunk_table_never_crosses_a_series_start():
    start, end, seg, first = launch.chunk_table(np.array([0, 5, 6, 20]), 23, 4)
    assert list(zip(start.tolist(), end.tolist())) == [(0, 4), (4, 5), (5, 6), (6, 10), (10, 14), (14, 18),
                                                       (18, 20), (20, 23)]
    assert seg.tolist() == [0, 0, 1, 2, 2, 2, 2, 3] and first.tolist() == [0, 2, 3, 7, 8]


def test_auto_picks_the_fastest_engine_present(monkeypatch):
    assert engines.resolve("auto") == ("gpu" if gpu.available() else "host")
    monkeypatch.setattr(gpu, "available", lambda: False)
    monkeypatch.setattr(host, "available", lambda: False)
    assert engines.resolve("auto") == "reference"


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


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found: the sm_90 compile check needs the CUDA toolkit")
@pytest.mark.parametrize("source", abi.KERNEL_FILES)
def test_nvcc_compiles_every_kernel_for_sm90(source, tmp_path):
    src = abi.kernel_dir()
    cmd = ["nvcc", "-arch=sm_90", "--fmad=false", "-std=c++17", "-DPF_ATR_PERIOD=10", "-I", str(src), "-c",
           str(src / source), "-o", str(tmp_path / "k.o")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "k.o").stat().st_size > 0


@pytest.fixture(scope="module")
def nvrtc():
    lib = nvrtc_lib.load()
    if lib is None:
        pytest.skip("libnvrtc not found (CUDA toolkit or the nvidia-cuda-nvrtc wheel that make test installs)")
    return lib


@pytest.mark.parametrize("atr_period", [1, 14, 64])
def test_nvrtc_builds_the_gpu_program_exactly_as_cupy_would(nvrtc, atr_period):
    """The GPU engine's program through NVRTC with CuPy's own options appended, for sm_90.

    Checks what would otherwise first show on a GPU: NVRTC accepts the sources (no host
    headers there), the four kernels exist with the argument kinds engines/abi.py
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


def test_float_rounding_keeps_subnormals(fast_engine):
    """Prices near 1e-46 make candle features float32-subnormal; no engine may flush them to 0."""
    rng = np.random.default_rng(46)
    o, h, l, c, off = random_bars(rng, [300, 41])
    o, h, l, c = (x * 1e-46 for x in (o, h, l, c))
    got, want = cross_check(fast_engine, o, h, l, c, off, chunk_bars=64, warm_bars=16, what="tiny prices")
    feats = np.asarray(want.features)
    assert np.count_nonzero((feats != 0) & (np.abs(feats) < np.finfo(np.float32).tiny)) > 100


def test_kernel_sources_ship_in_the_wheel(tmp_path):
    """A non-editable install finds the kernels as package data (gpu_features/kernels/)."""
    import importlib.metadata
    import zipfile
    from pathlib import Path

    pytest.importorskip("wheel", reason="building a wheel needs the 'wheel' package (make test installs it)")
    pytest.importorskip("pip", reason="building a wheel needs pip (make test runs without it where nothing is missing)")
    try:  # the version from its metadata: importing setuptools here would fight the distutils already imported
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version is None or tuple(int(x) for x in version.split(".")[:2]) < (68, 0):
        pytest.skip(f"building a wheel needs setuptools >= 68 (pyproject.toml), this Python has {version or 'none'}; "
                    "make test installs a newer one where it can")
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"  # build from a copy: setuptools leaves build/ and *.egg-info behind
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "gpu_features", "kernels", "train"):
        (shutil.copytree if (root / name).is_dir() else shutil.copy)(root / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("gpu_features-*.whl"))).namelist()
    for source in abi.KERNEL_SOURCES:
        assert f"gpu_features/kernels/{source}" in names
    # every module of the source tree ships too (a sub-package missing from pyproject's list would not)
    modules = sorted(str(p.relative_to(root)) for pkg in ("gpu_features", "train") for p in (root / pkg).rglob("*.py"))
    assert modules and [m for m in modules if m not in names] == []


def _c_params(text: str) -> list[tuple[str, str]]:
    """``(ctype, name)`` of each parameter of a C parameter list, ``__restrict__`` dropped."""
    out = []
    for item in text.replace("__restrict__", "").split(","):
        words = item.replace("*", " * ").split()
        name, ctype = words[-1], " ".join(words[:-1]).replace(" *", "*")
        out.append((ctype, name))
    return out


@pytest.mark.parametrize("kernel", sorted(abi.KERNELS))
def test_kernel_signatures_match_the_abi_table(kernel):
    """Each .cu kernel, its host entry point and the host launch list name the ABI's parameters in order.

    Names and C types are compared, so two pointers of one kind swapped in any of the four places fail here.
    """
    src = abi.kernel_dir()
    want = [(p.ctype, p.name) for p in abi.KERNELS[kernel]]
    cu = "".join((src / name).read_text() for name in abi.KERNEL_FILES)
    kernel_sig = re.search(rf"PF_KERNEL void {kernel}\(([^)]*)\)", cu)
    assert kernel_sig, f"{kernel} not found in the .cu sources"
    assert _c_params(kernel_sig.group(1)) == want
    entry = (src / "host_entry.cpp").read_text()
    host_sig = re.search(rf"void host_{kernel}\(([^)]*)\)", entry)
    assert host_sig, f"host_{kernel} not found in host_entry.cpp"
    assert _c_params(host_sig.group(1)) == [("pf_i64", "n_threads")] + want
    # Chunk kernels go through PF_LAUNCH; elementwise ones run their ``_element`` body with PF_FOR_EACH.
    launch_args = re.search(rf"PF_(?:LAUNCH\({kernel}, n_threads, \w+|FOR_EACH\({kernel}_element, n_threads), "
                            r"([^;]*)\);", entry)
    assert launch_args, f"PF_LAUNCH of {kernel} not found in host_entry.cpp"
    assert [a.strip() for a in launch_args.group(1).split(",")] == [p.name for p in abi.KERNELS[kernel]]


def test_abi_signatures_are_the_kinds_of_the_parameters():
    assert abi.SIGNATURES["pf_candle"] == "qppppdp"
    assert abi.SIGNATURES["pf_scan"] == "q" + "p" * 9 + "q" + "p" * 6 + "q" + "p"
    assert all(len(abi.SIGNATURES[k]) == len(abi.KERNELS[k]) for k in abi.KERNELS)


def test_launch_arguments_are_taken_by_name():
    pool = {p.name: p.name.upper() for p in abi.KERNELS["pf_check"]}
    assert abi.arguments("pf_check", pool) == [p.name.upper() for p in abi.KERNELS["pf_check"]]
    del pool["bad"]
    with pytest.raises(EngineError, match="no value for its parameter"):
        abi.arguments("pf_check", pool)


@pytest.mark.skipif(not host.available(), reason="no C++ compiler for the host engine")
def test_host_library_state_dimension_is_checked_when_it_loads(monkeypatch):
    lib = host.library(10)
    monkeypatch.setattr(S, "state_dim", lambda p: 999)
    with pytest.raises(EngineError, match="keep 26 state values but gpu_features/state.py expects 999"):
        host._load(lib._name, 10)
