"""Bars and bar files the ingest tests share: a constant table, a random walk on a tick grid, and writers."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gpu_features import read_bars
from gpu_features.errors import BarsError

T0 = 1_704_067_200_000_000_000  # 2024-01-01T00:00Z
MIN = 60_000_000_000
YEAR = 366 * 86_400 * 10**9


def table(n=5, **override):
    """``n`` one-minute bars of constant prices from T0 as a pyarrow table; ``override`` replaces columns."""
    cols = {
        "timestamp": pa.array(T0 + np.arange(n) * MIN, type=pa.timestamp("ns", tz="UTC")),
        "open": np.full(n, 100.0), "high": np.full(n, 101.0), "low": np.full(n, 99.0), "close": np.full(n, 100.5),
    }
    cols.update(override)
    return pa.table(cols)


def write(tmp_path, tbl, name="bars.parquet"):
    """``tbl`` written to ``tmp_path / name`` (CSV for a ``.csv`` name, else parquet)."""
    path = tmp_path / name
    if name.endswith(".csv"):
        import pyarrow.csv as pcsv

        pcsv.write_csv(tbl, path)
    else:
        pq.write_table(tbl, path)
    return path


def refusal(tmp_path, tbl, *fragments, name="bars.parquet", **kw):
    """``read_bars`` of ``tbl`` written to ``name`` (or of a missing file) refuses with every fragment in its sentence."""
    path = write(tmp_path, tbl, name) if tbl is not None else tmp_path / name
    with pytest.raises(BarsError) as err:
        read_bars(path, **kw)
    msg = str(err.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in: {msg}"
    return msg


def walk(n, seed=0, start=15000.0):
    """``n`` bars on a 0.25 tick grid (every price exact in binary)."""
    rng = np.random.default_rng(seed)
    c = start + np.round(rng.normal(0, 4, n).cumsum()) / 4
    o = np.r_[start, c[:-1]]
    return {"timestamp": T0 + np.arange(n, dtype=np.int64) * MIN, "open": o, "high": np.maximum(o, c) + 0.5,
            "low": np.minimum(o, c) - 0.25, "close": c}


def tbl(cols, **extra):
    """The columns of :func:`walk` (a slice of them) as a pyarrow table with UTC timestamps, plus ``extra``."""
    d = dict(cols)
    d["timestamp"] = pa.array(d["timestamp"], type=pa.timestamp("ns", tz="UTC"))
    d.update(extra)
    return pa.table(d)


def sl(cols, a, b):
    """Rows ``a:b`` of :func:`walk` columns."""
    return {k: v[a:b] for k, v in cols.items()}
