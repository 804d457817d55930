"""The launch sequence of the kernels in ``kernels/``, shared by the host and GPU engines.

Both engines run exactly this code; they differ only in the backend that
allocates arrays (numpy or CuPy) and launches a kernel (an OpenMP loop through
ctypes, or a CUDA grid through CuPy). Launch arguments come from the one ABI
table in :mod:`.abi`, by parameter name. Sequence:

1. ``pf_candle``  one thread per bar: features 0..4.
2. ``pf_scan``    one thread per chunk of ``chunk_bars``: speculative chunk scan.
3. ``pf_check``   one thread per chunk: start state == predecessor's end state?
4. ``pf_fixup``   one thread per series: in-order re-run of every wrong chunk.

No host round trip between kernels; the one synchronisation is reading the
fix-up count at the end.

:func:`run_advance` launches ``pf_advance`` (kernels/advance.cu) alone: one thread per
series continues it from its state by its new bars, the live stream's step.

:func:`run_moments` launches ``pf_moments`` (kernels/stats.cu) over features where
they are: per-block partial moments that ``store/stats.py`` combines on the host.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

from .. import state as S
from ..config import N_FEATURES, FeatureConfig
from .abi import arguments

STATS_BLOCK_BARS = 1024  # bars per pf_moments block, the same for every engine so all give the same bits
N_MOMENTS = 6            # shift, sum, sum of squares, min, max, non-zero count (kernels/stats.cu)


@dataclasses.dataclass
class EngineRun:
    """What one engine call produced. Arrays live where the engine ran (numpy or CuPy).

    Attributes:
        features: ``[n, 10] float32``.
        valid: ``[n] bool``.
        swing: ``[n] int8``, 1 = swing high confirmed at the bar, 2 = swing low, else 0.
        end_states: ``[S, 16 + P] float64`` state after each series' last bar.
        snapshots: ``[m, 16 + P] float64`` state before each requested bar.
        engine: ``"reference"``, ``"host"`` or ``"gpu"``.
        chunks: number of scan chunks (0 for the reference).
        fixups: chunks re-run because their speculative start state was wrong.
        kernel_seconds: time inside the kernels (CUDA events on the GPU), or the whole call.
        note: why ``auto`` ran a slower engine than it would pick here ("" when it did not).
    """

    features: Any
    valid: Any
    swing: Any
    end_states: Any
    snapshots: Any
    engine: str
    chunks: int = 0
    fixups: int = 0
    kernel_seconds: float = 0.0
    note: str = ""


class Backend(Protocol):
    name: str
    xp: Any

    def asarray(self, a: np.ndarray) -> Any: ...

    def launch(self, kernel: str, n_threads: int, args: list) -> None: ...

    def timer(self) -> Any: ...


def chunk_table(offsets: np.ndarray, n: int, chunk_bars: int):
    """Cut every series into chunks of at most ``chunk_bars`` bars.

    Returns:
        ``(chunk_start [K] i64, chunk_end [K] i64, chunk_segment [K] i64,
        seg_first_chunk [S + 1] i64)``; series ``s`` owns chunks
        ``seg_first_chunk[s] : seg_first_chunk[s + 1]``.
    """
    bounds = np.append(offsets, n).astype(np.int64)
    lengths = np.diff(bounds)
    per_series = (lengths + chunk_bars - 1) // chunk_bars
    seg_first_chunk = np.concatenate([[0], np.cumsum(per_series)]).astype(np.int64)
    chunk_segment = np.repeat(np.arange(len(offsets), dtype=np.int64), per_series)
    local = np.arange(int(seg_first_chunk[-1]), dtype=np.int64) - seg_first_chunk[chunk_segment]
    chunk_start = bounds[chunk_segment] + local * chunk_bars
    chunk_end = np.minimum(chunk_start + chunk_bars, bounds[chunk_segment + 1])
    return chunk_start, chunk_end, chunk_segment, seg_first_chunk


def kernel_params(cfg: FeatureConfig) -> np.ndarray:
    """The ``[8] float64`` parameter block the kernels read (state.cuh ``PfParams``)."""
    return np.array([cfg.eps, cfg.alpha, cfg.zigzag_k, cfg.hybrid_min_retrace_atr, cfg.hybrid_lookback,
                     1.0 if cfg.hybrid else 0.0, cfg.window_length, cfg.warmup_bars], dtype=np.float64)


def run_chunked(backend: Backend, o, h, l, c, offsets: np.ndarray, cfg: FeatureConfig,
                start_states: np.ndarray, snapshot_at: np.ndarray, chunk_bars: int, warm_bars: int,
                poison: bool = False) -> EngineRun:
    """Run the four kernels over bars already validated by the caller.

    Args:
        backend: host or GPU backend.
        o, h, l, c: ``[n] float64`` arrays (numpy; moved to the backend's device here if needed).
        offsets: ``[S] int64`` numpy series starts.
        start_states: ``[S, 16 + P] float64`` numpy state of each series before its first bar.
        snapshot_at: ``[m] int64`` numpy sorted bar positions.
        chunk_bars: C, bars per chunk (>= 1).
        warm_bars: W, bars of speculative warm-up before each chunk (>= 0).
        poison: fill every output with NaN / 0xFF first, so an unwritten element shows.
    """
    xp = backend.xp
    n, n_series, dim = len(c), len(offsets), S.state_dim(cfg.atr_period)
    o, h, l, c = (xp.ascontiguousarray(xp.asarray(x), dtype=xp.float64) for x in (o, h, l, c))
    chunk_start, chunk_end, chunk_segment, seg_first_chunk = chunk_table(offsets, n, chunk_bars)
    n_chunks = len(chunk_start)
    dev = backend.asarray
    d_chunk_start, d_chunk_end, d_chunk_segment = dev(chunk_start), dev(chunk_end), dev(chunk_segment)
    d_seg_start, d_seg_first = dev(np.ascontiguousarray(offsets, dtype=np.int64)), dev(seg_first_chunk)
    d_seg_state, d_params = dev(start_states), dev(kernel_params(cfg))
    d_snap_pos = dev(np.ascontiguousarray(snapshot_at, dtype=np.int64))
    m = len(snapshot_at)

    def alloc(shape, dtype, fill):
        return xp.full(shape, fill, dtype=dtype) if poison else xp.empty(shape, dtype=dtype)

    feats = alloc((n, N_FEATURES), xp.float32, np.nan)
    valid = alloc(n, xp.uint8, 0xFF)
    swing = alloc(n, xp.int8, -1)
    start_state = alloc((n_chunks, dim), xp.float64, np.nan)
    end_state = alloc((n_chunks, dim), xp.float64, np.nan)
    snap_state = alloc((m, dim), xp.float64, np.nan)
    bad = alloc(n_chunks, xp.uint8, 0xFF)
    fixups = alloc(n_series, xp.int32, -1)

    # Every array and scalar a kernel takes, by its ABI parameter name; each launch picks its own in order.
    pool = dict(n=n, o=o, h=h, l=l, c=c, eps=cfg.eps, feats=feats, n_chunks=n_chunks,
                 chunk_start=d_chunk_start, chunk_end=d_chunk_end, chunk_segment=d_chunk_segment,
                 seg_start=d_seg_start, seg_state=d_seg_state, params=d_params, warm=warm_bars, valid=valid,
                 swing=swing, start_state=start_state, end_state=end_state, snap_pos=d_snap_pos, n_snap=m,
                 snap_state=snap_state, bad=bad, n_segments=n_series, seg_first_chunk=d_seg_first, fixups=fixups)

    def launch(kernel: str, n_threads: int) -> None:
        backend.launch(kernel, n_threads, arguments(kernel, pool))

    with backend.timer() as clock:
        launch("pf_candle", n)
        launch("pf_scan", n_chunks)
        launch("pf_check", n_chunks)
        launch("pf_fixup", n_series)
    end_states = end_state[d_seg_first[1:] - 1]
    return EngineRun(features=feats, valid=valid.view(xp.bool_), swing=swing,
                     end_states=end_states, snapshots=snap_state, engine=backend.name, chunks=n_chunks,
                     fixups=int(fixups.sum()), kernel_seconds=clock.seconds)


def run_advance(backend: Backend, o, h, l, c, series_bounds: np.ndarray, params, states) -> EngineRun:
    """Launch ``pf_advance``: each series continues from its state by its new bars (no chunks, no speculation).

    Args:
        backend: host or GPU backend.
        o, h, l, c: ``[n] float64`` new bars, series after series (numpy, or on the backend's device).
        series_bounds: ``[S + 1] int64`` numpy; series ``s`` owns bars ``series_bounds[s] : series_bounds[s + 1]``.
        params: ``[8] float64`` :func:`kernel_params` (numpy, or already on the backend's device).
        states: ``[S, 16 + P] float64`` state of each series before its first new bar; copied, never changed.

    Returns:
        :class:`EngineRun` on the backend's device: ``end_states`` ``[S, 16 + P]``, no snapshots.
    """
    xp = backend.xp
    n, n_series = len(c), len(series_bounds) - 1
    o, h, l, c = (xp.ascontiguousarray(xp.asarray(x), dtype=xp.float64) for x in (o, h, l, c))
    state = xp.array(states, dtype=xp.float64, order="C")  # the kernel writes the end states into this copy
    pool = dict(n_series=n_series, series_bounds=backend.asarray(np.ascontiguousarray(series_bounds, dtype=np.int64)),
                o=o, h=h, l=l, c=c, params=xp.asarray(params), state=state,
                feats=xp.empty((n, N_FEATURES), dtype=xp.float32), valid=xp.empty(n, dtype=xp.uint8),
                swing=xp.empty(n, dtype=xp.int8))
    with backend.timer() as clock:
        backend.launch("pf_advance", n_series, arguments("pf_advance", pool))
    return EngineRun(features=pool["feats"], valid=pool["valid"].view(xp.bool_), swing=pool["swing"], end_states=state,
                     snapshots=xp.zeros((0, state.shape[1]), dtype=xp.float64), engine=backend.name,
                     kernel_seconds=clock.seconds)


@dataclasses.dataclass
class Moments:
    """Per-block partial statistics of features over valid bars (kernels/stats.cu ``pf_moments``).

    Attributes:
        block_segment: ``[B] int64`` numpy, the segment (series) of each block; blocks in bar order.
        counts: ``[B, 3] int64``: valid bars, swing highs, swing lows of each block.
        moments: ``[B, 10, 6] float64``: per feature shift, sum and sum of squares of ``x - shift``,
            min, max, non-zero count, over the block's valid bars.
        seconds: wall time of the computation (the kernel on the GPU).
    """

    block_segment: Any
    counts: Any
    moments: Any
    seconds: float = 0.0


def run_moments(backend: Backend, feats, valid, swing, offsets: np.ndarray,
                block_bars: int = STATS_BLOCK_BARS) -> Moments:
    """Launch ``pf_moments`` over ``[n, 10] f32`` features, ``[n]`` valid and swing where they are.

    ``offsets`` are the ``[G]`` segment starts; blocks of at most ``block_bars`` never cross one.
    Returns :class:`Moments` with ``counts`` and ``moments`` on the backend's device.
    """
    xp = backend.xp
    n = len(valid)
    block_start, block_end, block_segment, _ = chunk_table(offsets, n, block_bars)
    n_blocks = len(block_start)
    pool = dict(n_blocks=n_blocks, block_start=backend.asarray(block_start), block_end=backend.asarray(block_end),
                feats=xp.ascontiguousarray(feats, dtype=xp.float32),
                valid=xp.ascontiguousarray(valid).view(xp.uint8), swing=xp.ascontiguousarray(swing).view(xp.int8),
                counts=xp.empty((n_blocks, 3), dtype=xp.int64),
                moments=xp.empty((n_blocks, N_FEATURES, N_MOMENTS), dtype=xp.float64))
    with backend.timer() as clock:
        backend.launch("pf_moments", n_blocks, arguments("pf_moments", pool))
    return Moments(block_segment, pool["counts"], pool["moments"], clock.seconds)
