"""Embedded demo data: deterministic NQ-like 1-minute bars, nothing to download.

Bars follow the CME Globex week (in fixed UTC-5, no DST): sessions open at
18:00 and close at 17:00 the next day, Monday to Friday sessions, so there is
a one-hour gap every evening and a weekend gap from Friday 17:00 to Sunday
18:00. Returns have clustered volatility (a slowly varying log-volatility
made of several smoothed noise components), an intraday U-shaped activity
profile and an overnight gap at each session open; prices sit on a 0.25 tick
grid. The same ``(n_bars, n_symbols, seed)`` always gives the same bars, so a
store built from them can be re-derived by ``verify`` from its manifest alone.
"""
from __future__ import annotations

import numpy as np

from .ingest import Bars

GENERATOR = "nq-synth"
GENERATOR_VERSION = 1
TICK = 0.25
SESSION_BARS = 23 * 60
_NS_PER_MIN = 60 * 1_000_000_000
# Monday 2019-01-07 00:00 in UTC-5, as ns since the epoch (UTC).
_FIRST_MONDAY_NS = (1546819200 + 5 * 3600) * 1_000_000_000
DEFAULT_BARS = 1_800_000
MAX_REGENERATE_BARS = 20_000_000  # a manifest may ask regenerate() for at most this many bars (about 2 GB)
MAX_SEED = 1 << 34  # the largest seed a store's manifest records (its count limit, store/format.py MAX_BARS)
# Bytes of memory per generated bar: the per-symbol columns, their concatenation and the timestamps.
BYTES_PER_BAR = 88


def session_timestamps(n_bars: int) -> np.ndarray:
    """``[n_bars] int64`` ns timestamps of consecutive Globex minutes from 2019-01-06 18:00 ET."""
    minute = np.arange(n_bars, dtype=np.int64)
    session = minute // SESSION_BARS
    in_session = minute % SESSION_BARS
    week, weekday = session // 5, session % 5
    # Session d (Mon..Fri) opens at 18:00 of the previous calendar day.
    open_minutes = (week * 7 + weekday) * 24 * 60 - 6 * 60
    return _FIRST_MONDAY_NS + (open_minutes + in_session) * _NS_PER_MIN


def generate(n_bars: int = DEFAULT_BARS, n_symbols: int = 1, seed: int = 0) -> Bars:
    """Synthetic bars for ``n_symbols`` symbols of ``n_bars`` bars each.

    Returns:
        :class:`Bars` with ``n_bars * n_symbols`` bars, series ``SYN0``, ``SYN1``...
        (one series when ``n_symbols == 1``: ``NQ``), and ``source`` recording
        the generator parameters.
    """
    from .errors import BarsError

    if n_bars < 1 or n_symbols < 1:
        raise BarsError(f"synthetic data needs n_bars >= 1 and n_symbols >= 1, got {n_bars} and {n_symbols}.")
    if not 0 <= seed <= MAX_SEED:
        raise BarsError(f"the synthetic seed must lie in 0 .. {MAX_SEED:,} (a store records it), got {seed}.")
    need, have = n_bars * n_symbols * BYTES_PER_BAR, _available_memory()
    if have is not None and need > have:  # refused before anything is allocated
        raise BarsError(f"{n_bars:,} synthetic bars x {n_symbols:,} symbol(s) need about {need / 1e9:,.1f} GB of "
                        f"memory and this machine has {have / 1e9:,.1f} GB available; ask for fewer with "
                        "--synthetic-bars / --symbols.")
    cols = [_one_symbol(n_bars, np.random.default_rng([seed, s])) for s in range(n_symbols)]
    ts = session_timestamps(n_bars)
    names = ("NQ",) if n_symbols == 1 else tuple(f"SYN{s}" for s in range(n_symbols))
    return Bars(
        open=np.concatenate([c[0] for c in cols]),
        high=np.concatenate([c[1] for c in cols]),
        low=np.concatenate([c[2] for c in cols]),
        close=np.concatenate([c[3] for c in cols]),
        timestamp=np.tile(ts, n_symbols),
        offsets=np.arange(n_symbols, dtype=np.int64) * n_bars,
        segment_names=names,
        source=synthetic_source(n_bars, n_symbols, seed),
    )


def synthetic_source(n_bars: int, n_symbols: int, seed: int) -> dict:
    """The manifest ``source`` record from which :func:`regenerate` rebuilds the bars."""
    return {
        "kind": "synthetic",
        "generator": GENERATOR,
        "version": GENERATOR_VERSION,
        "n_bars": int(n_bars),
        "n_symbols": int(n_symbols),
        "seed": int(seed),
    }


def regenerate(source: dict) -> Bars:
    """Rebuild the bars a synthetic ``source`` record describes."""
    from .errors import StoreError

    if source.get("generator") != GENERATOR or source.get("version") != GENERATOR_VERSION:
        raise StoreError(
            f"the store's synthetic source {source.get('generator')!r} v{source.get('version')} "
            f"is not this package's {GENERATOR!r} v{GENERATOR_VERSION}; pass --source with the bars."
        )
    n, s = source.get("n_bars"), source.get("n_symbols")
    if not (isinstance(n, int) and isinstance(s, int) and 1 <= n and 1 <= s and n * s <= MAX_REGENERATE_BARS):
        raise StoreError(f"the store's synthetic source asks for {n!r} x {s!r} bars, above the limit of "
                         f"{MAX_REGENERATE_BARS:,} regenerated bars (the manifest is corrupt or crafted); "
                         "pass --source with the bars.")
    return generate(n, s, source["seed"])


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` on Linux, else all physical
    memory), or None where the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _smoothed_noise(rng: np.random.Generator, n: int, span: int) -> np.ndarray:
    """Unit-variance noise averaged over a moving box of ``span`` bars."""
    x = rng.standard_normal(n + span)
    c = np.cumsum(x)
    return (c[span:] - c[:-span]) / np.sqrt(span)


def _one_symbol(n: int, rng: np.random.Generator):
    base = float(rng.uniform(9_000.0, 18_000.0))
    # Volatility clustering: log-vol from components living minutes to weeks.
    log_vol = sum(w * _smoothed_noise(rng, n, span) for w, span in ((0.25, 30), (0.3, 600), (0.35, 6000)))
    minute = np.arange(n) % SESSION_BARS
    # U-shaped activity: quiet overnight, busy at the US cash open and close.
    cash = np.exp(-((minute - 930) / 60.0) ** 2) + 0.7 * np.exp(-((minute - 1320) / 45.0) ** 2)
    vol = 0.00035 * np.exp(log_vol) * (0.45 + 1.6 * cash)
    ret = vol * rng.standard_t(4, size=n) / np.sqrt(2.0)
    ret[minute == 0] += rng.normal(0.0, 0.004, size=int((minute == 0).sum()))
    close = base * np.exp(np.cumsum(ret))
    close = np.maximum(np.round(close / TICK) * TICK, TICK)
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    # A session opens away from the last close (the overnight gap).
    gap_at = np.flatnonzero(minute == 0)
    gap_at = gap_at[gap_at > 0]
    prev = close[gap_at - 1]
    open_[gap_at] = np.maximum(np.round((prev + 0.7 * (close[gap_at] - prev)) / TICK) * TICK, TICK)
    wick = np.abs(rng.standard_normal((2, n))) * vol * close * 0.6
    high = np.maximum(open_, close) + np.round(wick[0] / TICK) * TICK
    low = np.maximum(np.minimum(open_, close) - np.round(wick[1] / TICK) * TICK, TICK)
    return open_, high, low, close


def write_universe(folder, n_symbols: int, bars_per_symbol: int, files_per_symbol: int = 1,
                   symbols_per_file: int = 1, seed: int = 0) -> tuple[list, Bars]:
    """Write a synthetic universe of parquet files (the distributed build's tests and benchmark).

    Symbols ``U0000``, ``U0001``... each get ``bars_per_symbol + 37 * s`` bars starting
    ``101 * s`` minutes later than the one before, so their time ranges differ. A file holds
    ``symbols_per_file`` symbols (a ``symbol`` column, rows symbol after symbol), and each
    symbol's bars are cut in time into ``files_per_symbol`` consecutive files.

    Returns:
        ``(paths, bars)``: the files written, in name order, and every bar as one :class:`Bars`
        (series in symbol order), what one process reading all files would get.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names, cols = [], []
    for s in range(n_symbols):
        n, start = bars_per_symbol + 37 * s, 101 * s
        o, h, l, c = _one_symbol(n, np.random.default_rng([seed, s]))
        names.append(f"U{s:04d}")
        cols.append((o, h, l, c, session_timestamps(start + n)[start:]))
    paths = []
    for g in range(0, n_symbols, symbols_per_file):
        members = range(g, min(g + symbols_per_file, n_symbols))
        for piece in range(files_per_symbol):
            parts = []
            for s in members:
                cuts = np.linspace(0, len(cols[s][0]), files_per_symbol + 1).astype(np.int64)
                sl = slice(cuts[piece], cuts[piece + 1])
                parts.append(pa.table({
                    "timestamp": pa.array(cols[s][4][sl], pa.timestamp("ns", tz="UTC")),
                    "symbol": pa.array([names[s]] * (sl.stop - sl.start), pa.string()),
                    **{k: cols[s][j][sl] for j, k in enumerate(("open", "high", "low", "close"))}}))
            path = folder / f"{names[g]}-{piece:03d}.parquet"
            pq.write_table(pa.concat_tables(parts), path)
            paths.append(path)
    sizes = [len(c[0]) for c in cols]
    bars = Bars(*(np.concatenate([c[j] for c in cols]) for j in range(5)),
                offsets=np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64), segment_names=tuple(names),
                source={"kind": "memory"})
    return sorted(paths), bars
