"""The device ingest path (the cudf reader's) against the pyarrow path, file by file.

``assemble_clean`` is the part of the cudf reader that runs where the columns
live: it is run here on numpy columns (every machine), on CuPy columns (marked
gpu), and behind ``cudf.read_parquet`` (only where cudf imports). Each time the
result must equal ``read_bars`` with pyarrow exactly, or, for a file that breaks
a rule, be handed to the host path.
"""
import numpy as np
import pyarrow as pa
import pytest

from gpu_features import engines, read_bars
from gpu_features.ingest import PRICE_COLUMNS, ReadSpec, file_digest
from gpu_features.ingest.assemble import assemble_clean
from gpu_features.ingest.cudf_reader import cudf_module
from gpu_features.ingest.decode import decode_inputs
from gpu_features.engines import gpu
from gpu_features.errors import BarsError
from tests.harness import assert_same_run
from tests.ingest.samples import MIN, T0, table, write

CUDF_MISSING = "cudf does not import here (not installed, or no GPU): the cudf decode step is not run"


def interleaved(n_per=40, symbols=("NQ", "ES", "CL"), time_type=pa.timestamp("ns", tz="UTC"), seed=0):
    """Bars of several symbols, rows interleaved as in a vendor file, each symbol's times increasing."""
    rng = np.random.default_rng(seed)
    k = len(symbols)
    sym = np.array(symbols * n_per)
    t = T0 + np.repeat(np.arange(n_per), k) * MIN
    c = 100.0 + np.round(rng.normal(0, 1, size=n_per * k).cumsum(), 2) + 50
    o = np.r_[c[0], c[:-1]]
    h = np.maximum(o, c) + 0.25
    low = np.minimum(o, c) - 0.5
    times = pa.array(t // (10**6 if time_type == pa.timestamp("ms") else 1), type=time_type)
    return pa.table({"symbol": sym, "timestamp": times, "open": o, "high": h, "low": low, "close": c})


def clean_files():
    return {
        "one series": table(50),
        "symbols interleaved": interleaved(),
        "ms timestamps": interleaved(time_type=pa.timestamp("ms")),
        "one symbol in a symbol column": interleaved(symbols=("NQ",)),
    }


def broken_files():
    n = 12
    return {
        "price <= 0": table(n, low=np.r_[99.0, 0.0, np.full(n - 2, 99.0)]),
        "missing price": table(n, close=pa.array([100.5, None] + [100.5] * (n - 2), type=pa.float64())),
        "low above min(open, close)": table(n, low=np.r_[99.0, 100.25, np.full(n - 2, 99.0)]),
        "high below max(open, close)": table(n, high=np.r_[101.0, 100.25, np.full(n - 2, 101.0)]),
        "time repeats": table(n, timestamp=pa.array(T0 + np.r_[0, 1, 1, np.arange(3, n)] * MIN, type=pa.timestamp("ns"))),
        "time goes back in one symbol": interleaved(n_per=5, symbols=("NQ",)).take([0, 2, 1, 3, 4]),
    }


def host_columns(path):
    """The decoded columns of a file, as the cudf reader hands them to ``assemble_clean``."""
    dec = decode_inputs([path], ReadSpec())
    return dec.prices, dec.timestamp, dec.symbol_codes, dec.symbol_names


def device_assemble(path, xp, policy="error"):
    prices, ts, codes, names = host_columns(path)
    prices = {k: xp.asarray(v) for k, v in prices.items()}
    codes = None if codes is None else xp.asarray(codes)
    return assemble_clean(path, prices, xp.asarray(ts), codes, names, policy, file_digest(path), "pyarrow")


def assert_same_bars(got, want):
    got = got.on_host()
    for k in PRICE_COLUMNS + ("timestamp", "offsets"):
        g, w = getattr(got, k), getattr(want, k)
        assert g.dtype == w.dtype and np.array_equal(g.view(np.uint8), w.view(np.uint8)), k
    assert got.segment_names == want.segment_names and got.source == want.source and got.ingest == want.ingest


def _xp_param(name):
    if name == "cupy":
        return pytest.param("cupy", marks=[pytest.mark.gpu, pytest.mark.skipif(
            not gpu.available(), reason=f"CuPy columns: {gpu.unavailable_reason()}")])
    return name


XP = [_xp_param("numpy"), _xp_param("cupy")]


def _module(name):
    return pytest.importorskip(name)


@pytest.mark.parametrize("xp_name", XP)
@pytest.mark.parametrize("what", list(clean_files()))
def test_clean_files_give_the_pyarrow_bars_where_the_columns_live(tmp_path, xp_name, what):
    path = write(tmp_path, clean_files()[what])
    got = device_assemble(path, _module(xp_name))
    assert got is not None, f"{what}: clean bars were handed to the host path"
    assert type(got.close).__module__.split(".")[0] == xp_name  # the prices stayed where they were
    assert_same_bars(got, read_bars(path))


@pytest.mark.parametrize("xp_name", XP)
@pytest.mark.parametrize("what", list(broken_files()))
def test_broken_files_go_to_the_host_path(tmp_path, xp_name, what):
    path = write(tmp_path, broken_files()[what])
    assert device_assemble(path, _module(xp_name), policy="drop") is None
    dropped = read_bars(path, on_bad_bars="drop", max_drop_fraction=1.0).ingest["dropped"]
    assert sum(r["count"] for r in dropped.values()) >= 1  # the host path did find something to drop


def test_time_may_go_back_between_symbols(tmp_path):
    """Each symbol's times increase; the file's rows do not (ES starts before NQ ends)."""
    tbl = interleaved(n_per=6)
    path = write(tmp_path, tbl)
    got = device_assemble(path, np)
    assert got is not None and got.offsets.tolist() == [0, 6, 12]
    assert np.any(np.diff(got.timestamp) < 0)


def test_reader_choices(tmp_path):
    path = write(tmp_path, table(5))
    assert read_bars(path, reader="pyarrow").ingest["reader"] == "pyarrow"
    with pytest.raises(BarsError, match="reader must be one of auto, pyarrow, cudf"):
        read_bars(path, reader="polars")
    csv = write(tmp_path, table(5), name="bars.csv")
    with pytest.raises(BarsError, match="the cudf reader decodes parquet only .*; use --reader pyarrow"):
        read_bars(csv, reader="cudf")
    assert read_bars(csv, reader="auto").ingest["reader"] == "pyarrow"


@pytest.mark.skipif(cudf_module() is not None, reason="cudf imports here; the refusal is for machines without it")
def test_cudf_reader_without_cudf_is_refused_and_auto_uses_pyarrow(tmp_path):
    path = write(tmp_path, table(5))
    with pytest.raises(BarsError, match="the cudf reader needs cudf and a CUDA GPU"):
        read_bars(path, reader="cudf")
    bars = read_bars(path, reader="auto")
    assert bars.ingest["reader"] == "pyarrow" and "reader_note" not in bars.ingest
    assert isinstance(bars.close, np.ndarray)


@pytest.mark.gpu
@pytest.mark.skipif(cudf_module() is None, reason=CUDF_MISSING)
@pytest.mark.parametrize("what", list(clean_files()) + ["integer epoch seconds"])
def test_cudf_reader_equals_pyarrow(tmp_path, what):
    files = dict(clean_files())
    files["integer epoch seconds"] = table(20, timestamp=pa.array(T0 // 10**9 + np.arange(20) * 60, type=pa.int64()))
    path = write(tmp_path, files[what])
    got = read_bars(path, reader="cudf")
    assert got.ingest["reader"] == "cudf" and type(got.close).__module__.split(".")[0] == "cupy"
    want = read_bars(path)
    want.ingest["reader"] = "cudf"
    assert_same_bars(got, want)
    run = engines.run(got.open, got.high, got.low, got.close, offsets=got.offsets, engine="gpu")
    host = got.on_host()
    assert_same_run(run, engines.run(host.open, host.high, host.low, host.close, offsets=host.offsets,
                                     engine="reference"), f"gpu on cudf columns, {what}")


@pytest.mark.gpu
@pytest.mark.skipif(cudf_module() is None, reason=CUDF_MISSING)
@pytest.mark.parametrize("what", list(broken_files()))
def test_cudf_reader_hands_broken_files_to_pyarrow(tmp_path, what):
    path = write(tmp_path, broken_files()[what])
    got = read_bars(path, on_bad_bars="drop", reader="cudf", max_drop_fraction=1.0)
    assert got.ingest["reader"] == "pyarrow" and got.ingest["reader_note"] == "some bars break an ingest rule"
    want = read_bars(path, on_bad_bars="drop", max_drop_fraction=1.0)
    want.ingest["reader_note"] = got.ingest["reader_note"]
    assert_same_bars(got, want)
