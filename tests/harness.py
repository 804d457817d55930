"""The one cross-check harness: every fast path is compared with the reference engine, bit for bit.

One seeded host RNG makes the inputs; every engine gets the same arrays; the
comparison asserts dtype, shape and bits of every output, and prints the first
differing rows before it fails.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gpu_features import engines
from gpu_features.config import FEATURE_NAMES, FeatureConfig
from gpu_features.arrays import to_numpy

FAST_ENGINES = ("host", "gpu")


def _store_engine() -> str:
    from gpu_features.engines import host

    return "host" if host.available() else "reference"


# The engine that builds test stores: host where a compiler exists, else the (exact, slower) reference.
STORE_ENGINE = _store_engine()


def random_bars(rng: np.random.Generator, lengths, flat_share: float = 0.0, gap_share: float = 0.0):
    """Random-walk OHLC bars on a 0.25 grid for series of the given lengths.

    Returns ``(o, h, l, c, offsets)``; ``flat_share`` of bars are flat (h == l == o == c) in
    runs, ``gap_share`` of bars open with a jump of many ATRs.
    """
    n = int(sum(lengths))
    steps = rng.choice([-2, -1, 0, 1, 2], size=n) * 0.25
    jumps = rng.random(n) < gap_share
    steps[jumps] *= rng.integers(20, 400, size=int(jumps.sum()))
    c = 5000.0 + np.cumsum(steps)
    o = np.empty(n)
    o[0] = c[0]
    o[1:] = c[:-1] + rng.choice([-1, 0, 0, 1], size=n - 1) * 0.25 if n > 1 else o[1:]
    h = np.maximum(o, c) + rng.integers(0, 4, size=n) * 0.25
    l = np.minimum(o, c) - rng.integers(0, 4, size=n) * 0.25
    if flat_share:
        flat = np.repeat(rng.random(max(n // 7 + 1, 1)) < flat_share, 7)[:n]
        o[flat] = h[flat] = l[flat] = c[flat]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if len(lengths) else np.zeros(0, np.int64)
    return o, h, l, c, offsets


def assert_same_run(got, want, what: str) -> None:
    """Assert two EngineRuns agree bit for bit on every output."""
    pairs = [("features", np.float32), ("valid", np.bool_), ("swing", np.int8), ("end_states", np.float64),
             ("snapshots", np.float64)]
    for name, dtype in pairs:
        g, w = to_numpy(getattr(got, name)), to_numpy(getattr(want, name))
        assert g.dtype == dtype, f"{what}: {name} dtype {g.dtype}, expected {dtype}"
        assert g.shape == w.shape, f"{what}: {name} shape {g.shape}, expected {w.shape}"
        if g.size == 0:
            continue
        gb, wb = g.view(np.uint8).reshape(len(g), -1), w.view(np.uint8).reshape(len(w), -1)
        rows = np.flatnonzero(np.any(gb != wb, axis=1))
        if len(rows):
            lines = [f"{what}: {name} differs in {len(rows)} row(s); first rows (got | want):"]
            for r in rows[:5]:
                if name == "features":
                    cols = np.flatnonzero(g[r].view(np.uint32) != w[r].view(np.uint32))
                    lines.append(f"  bar {r}: " + ", ".join(f"{FEATURE_NAMES[k]} {g[r, k]!r} | {w[r, k]!r}" for k in cols))
                else:
                    lines.append(f"  row {r}: {g[r]!r} | {w[r]!r}")
            raise AssertionError("\n".join(lines))


def cross_check(engine: str, o, h, l, c, offsets=None, config: FeatureConfig | None = None, what: str = "",
                snapshot_at=None, start_states=None, **kernel_args):
    """Run ``engine`` (outputs poisoned with NaN first) and the reference on the same inputs; compare bits."""
    want = engines.run(o, h, l, c, offsets=offsets, config=config, engine="reference",
                       snapshot_at=snapshot_at, start_states=start_states)
    got = engines.run(o, h, l, c, offsets=offsets, config=config, engine=engine, snapshot_at=snapshot_at,
                      start_states=start_states, poison=True, **kernel_args)
    assert got.engine == engine
    assert_same_run(got, want, f"{engine} vs reference {what}")
    return got, want


def fail_on_call(fn, n: int, error: Exception):
    """A stand-in for ``fn`` that raises ``error`` on its ``n``-th call (failure injection)."""
    calls = {"n": 0}

    def wrapper(*args, **kw):
        calls["n"] += 1
        if calls["n"] == n:
            raise error
        return fn(*args, **kw)

    return wrapper


def write_parquet(path, bars, a=None, b=None, symbols=True):
    """Bars a:b of every segment of :class:`~gpu_features.ingest.Bars` ``bars`` as one parquet file (with a symbol
    column unless ``symbols`` is False)."""
    cols = {k: [] for k in ("symbol", "timestamp", "open", "high", "low", "close")}
    bounds = bars.segment_bounds()
    for s, name in enumerate(bars.segment_names):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        sl = slice(lo + (a or 0), lo + (hi - lo if b is None else b))
        cols["symbol"] += [name] * len(bars.close[sl])
        cols["timestamp"].append(bars.timestamp[sl])
        for k in ("open", "high", "low", "close"):
            cols[k].append(getattr(bars, k)[sl])
    tbl = {"symbol": cols["symbol"]} if symbols else {}
    tbl.update({k: np.concatenate(cols[k]) for k in ("timestamp", "open", "high", "low", "close")})
    tbl["timestamp"] = pa.array(tbl["timestamp"], pa.timestamp("ns", tz="UTC"))
    pq.write_table(pa.table(tbl), path)
    return path


# A JSON (or TOML) body nested 100,000 deep: a config file no parser may turn into a traceback.
DEEP = "[" * 100_000 + "]" * 100_000


def one_sentence(err: str) -> bool:
    """True when ``err`` is one line and no traceback or internal error: the shape of every refusal."""
    return len(err.strip().splitlines()) == 1 and "Traceback" not in err and "internal error" not in err
