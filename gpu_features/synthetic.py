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
# Bytes of memory per generated bar asked for before generating: an upper bound (the in-place generator's
# peak is the result, the timestamps and one symbol's work: about 55 bytes a bar for one symbol of 20M bars).
BYTES_PER_BAR = 88


def session_timestamps(n_bars: int) -> np.ndarray:
    """``[n_bars] int64`` ns timestamps of consecutive Globex minutes from 2019-01-06 18:00 ET."""
    # Integer arithmetic in place (exact in any order): three arrays of n at most.
    t = np.arange(n_bars, dtype=np.int64)  # minute
    in_session = t % SESSION_BARS
    t //= SESSION_BARS  # session
    weekday = t % 5
    t //= 5  # week
    # Session d (Mon..Fri) opens at 18:00 of the previous calendar day.
    t *= 7
    t += weekday
    del weekday
    t *= 24 * 60
    t -= 6 * 60  # open_minutes
    t += in_session
    del in_session
    t *= _NS_PER_MIN
    t += _FIRST_MONDAY_NS
    return t


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
    # Memory: one symbol's arrays are the result as they are; several are written into the result one
    # at a time, so the peak is the result plus one symbol's work, never every symbol twice.
    if n_symbols == 1:
        o, h, l, c = _one_symbol(n_bars, np.random.default_rng([seed, 0]))
    else:
        o, h, l, c = (np.empty(n_bars * n_symbols) for _ in range(4))
        for s in range(n_symbols):
            part = slice(s * n_bars, (s + 1) * n_bars)
            for dst, src in zip((o, h, l, c), _one_symbol(n_bars, np.random.default_rng([seed, s]))):
                dst[part] = src
    ts = session_timestamps(n_bars)
    names = ("NQ",) if n_symbols == 1 else tuple(f"SYN{s}" for s in range(n_symbols))
    return Bars(
        open=o,
        high=h,
        low=l,
        close=c,
        timestamp=ts if n_symbols == 1 else np.tile(ts, n_symbols),
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
    c = np.cumsum(rng.standard_normal(n + span))
    out = c[span:] - c[:-span]
    del c
    out /= np.sqrt(span)
    return out


def _one_symbol(n: int, rng: np.random.Generator):
    # The arithmetic is done in place where it can be (the same operations in the same order, so the same
    # bits), and each temporary is dropped when done: the peak is 5 or 6 arrays of n doubles, not 14.
    base = float(rng.uniform(9_000.0, 18_000.0))
    # Volatility clustering: log-vol from components living minutes to weeks.
    log_vol = None
    for w, span in ((0.25, 30), (0.3, 600), (0.35, 6000)):
        part = _smoothed_noise(rng, n, span)
        part *= w
        if log_vol is None:
            log_vol = np.add(part, 0.0, out=part)  # the sum starts as sum() did, from 0 + x (-0.0 becomes 0.0)
        else:
            log_vol += part
        del part
    minute = np.arange(n) % SESSION_BARS
    # U-shaped activity: quiet overnight, busy at the US cash open and close.
    cash = _bump(minute, 930, 60.0)
    cash += 0.7 * _bump(minute, 1320, 45.0)
    opens = minute == 0  # the first bar of each session
    del minute
    # vol = 0.00035 * exp(log_vol) * (0.45 + 1.6 * cash)
    vol = np.exp(log_vol, out=log_vol)
    vol *= 0.00035
    cash *= 1.6
    cash += 0.45
    vol *= cash
    del cash
    # ret = vol * t / sqrt(2), then the session-open jumps
    ret = rng.standard_t(4, size=n)
    ret *= vol
    ret /= np.sqrt(2.0)
    ret[opens] += rng.normal(0.0, 0.004, size=int(opens.sum()))
    # close = max(round(base * exp(cumsum(ret)) / TICK) * TICK, TICK)
    close = np.cumsum(ret, out=ret)
    np.exp(close, out=close)
    close *= base
    _on_ticks(close)
    np.maximum(close, TICK, out=close)
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    # A session opens away from the last close (the overnight gap).
    gap_at = np.flatnonzero(opens)
    gap_at = gap_at[gap_at > 0]
    prev = close[gap_at - 1]
    open_[gap_at] = np.maximum(np.round((prev + 0.7 * (close[gap_at] - prev)) / TICK) * TICK, TICK)
    # wick = |z| * vol * close * 0.6 for z of shape (2, n), one row at a time (the same normal draws in the same
    # order); high = max(open, close) + ticks(wick[0]); low = max(min(open, close) - ticks(wick[1]), TICK)
    wick = np.empty(n)
    for row in range(2):
        rng.standard_normal(out=wick)
        np.abs(wick, out=wick)
        wick *= vol
        wick *= close
        wick *= 0.6
        _on_ticks(wick)
        if row == 0:
            high = np.maximum(open_, close)
            high += wick
        else:
            del vol
            low = np.minimum(open_, close)
            low -= wick
            np.maximum(low, TICK, out=low)
    del wick
    return open_, high, low, close


def _bump(minute: np.ndarray, center: int, width: float) -> np.ndarray:
    """``exp(-((minute - center) / width) ** 2)``, computed in one new array."""
    x = (minute - center) / width
    np.square(x, out=x)
    np.negative(x, out=x)
    return np.exp(x, out=x)


def _on_ticks(x: np.ndarray) -> None:
    """``x = round(x / TICK) * TICK`` in place."""
    x /= TICK
    np.round(x, out=x)
    x *= TICK


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
