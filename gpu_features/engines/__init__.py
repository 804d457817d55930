"""Engine selection and the one entry point every caller uses.

``reference`` (plain Python, the oracle), ``host`` (the kernels compiled for
this CPU) and ``gpu`` (the same kernels through CuPy) agree bit for bit.
``auto`` picks gpu, then host, then reference.
"""
from __future__ import annotations

import time

import numpy as np

from .. import reference
from .. import state as S
from ..arrays import to_numpy
from ..config import N_FEATURES, FeatureConfig
from ..errors import EngineError
from .launch import STATS_BLOCK_BARS, EngineRun, Moments, chunk_table

ENGINES = ("reference", "host", "gpu")
ENGINE_CHOICES = ("auto",) + ENGINES


def resolve(engine: str) -> str:
    """Map ``auto`` to the fastest engine present here; check the name otherwise."""
    from . import gpu, host

    if engine not in ENGINE_CHOICES:
        raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINE_CHOICES)}.")
    if engine != "auto":
        return engine
    if gpu.available():
        return "gpu"
    if host.available():
        return "host"
    return "reference"


def _check_inputs(o, h, l, c, offsets, cfg):
    n = len(c)
    for name, x in zip("ohlc", (o, h, l, c)):
        if getattr(x, "ndim", 1) != 1 or len(x) != n:
            raise EngineError(f"price array {name} must be 1-D with {n} elements like close, "
                              f"got shape {getattr(x, 'shape', (len(x),))}.")
    offsets = np.zeros(1 if n else 0, dtype=np.int64) if offsets is None else \
        to_numpy(offsets).astype(np.int64).ravel()
    if n and (len(offsets) == 0 or offsets[0] != 0 or np.any(np.diff(offsets) <= 0) or offsets[-1] >= n):
        raise EngineError(f"offsets must start at 0 and strictly increase below n = {n} "
                          f"(one entry per series start), got {offsets[:8].tolist()}.")
    return offsets


def run(o, h, l, c, offsets=None, config: FeatureConfig | None = None, engine: str = "auto",
        start_states=None, snapshot_at=None, chunk_bars: int | None = None, warm_bars: int | None = None,
        poison: bool = False) -> EngineRun:
    """Compute features and engine states; the full-detail form of :func:`compute_features`.

    Args:
        o, h, l, c: ``[n]`` float prices (numpy, or CuPy for the GPU engine).
        offsets: ``[S] int64`` series starts (default: one series).
        config: the feature config (default ``FeatureConfig()``).
        engine: ``auto``, ``reference``, ``host`` or ``gpu``.
        start_states: ``[S, 16 + P] float64`` state before each series' first bar here
            (default: the initial state); a store's end state continues a series.
        snapshot_at: ``[m] int64`` sorted bar positions whose preceding state to return.
        chunk_bars, warm_bars: scan chunk length C and speculative warm-up W
            (kernel engines; defaults per engine).
        poison: pre-fill kernel outputs with NaN (tests: an unwritten element shows).

    Returns:
        :class:`EngineRun`; arrays on the device of the engine that ran.
    """
    cfg = config or FeatureConfig()
    name = resolve(engine)
    offsets = _check_inputs(o, h, l, c, offsets, cfg)
    n, n_series = len(c), len(offsets)
    states = S.initial_states(n_series, cfg.atr_period) if start_states is None else \
        S.check_states(start_states, n_series, cfg.atr_period, "start_states")
    snaps = np.zeros(0, dtype=np.int64) if snapshot_at is None else np.asarray(snapshot_at, dtype=np.int64).ravel()
    if len(snaps) and (np.any(np.diff(snaps) < 0) or snaps[0] < 0 or snaps[-1] >= n):
        raise EngineError(f"snapshot_at must be sorted bar positions in 0 .. {n - 1}.")
    if n == 0:
        dim = S.state_dim(cfg.atr_period)
        return EngineRun(np.zeros((0, N_FEATURES), np.float32), np.zeros(0, bool), np.zeros(0, np.int8),
                         np.zeros((0, dim)), np.zeros((len(snaps), dim)), name)
    if name == "reference":
        t0 = time.perf_counter()
        arrays = [to_numpy(x).astype(np.float64, copy=False) for x in (o, h, l, c)]
        feats, valid, swing, ends, snap_states = reference.compute(*arrays, offsets, cfg, states, snaps)
        return EngineRun(feats, valid, swing, ends, snap_states, "reference",
                         kernel_seconds=time.perf_counter() - t0)
    if name == "host":
        from . import host

        try:
            backend = host.HostBackend(cfg.atr_period)
        except EngineError as err:
            if engine != "auto":
                raise
            # auto: the reference engine gives the same bits, only slower; the run says why it was used.
            fallback = run(o, h, l, c, offsets, cfg, "reference", start_states, snapshot_at)
            fallback.note = f"the host engine could not run ({err}), so the reference engine ran instead"
            return fallback
        chunk, warm = host.CHUNK_BARS, host.WARM_BARS
        o, h, l, c = (to_numpy(x) for x in (o, h, l, c))
    else:
        from . import gpu

        backend, chunk, warm = gpu.GpuBackend(cfg.atr_period), gpu.CHUNK_BARS, gpu.WARM_BARS
    chunk = chunk if chunk_bars is None else int(chunk_bars)
    warm = warm if warm_bars is None else int(warm_bars)
    if chunk < 1 or warm < 0:
        raise EngineError(f"chunk_bars must be >= 1 and warm_bars >= 0, got {chunk} and {warm}.")
    from .launch import run_chunked

    return run_chunked(backend, o, h, l, c, offsets, cfg, states, snaps, chunk, warm, poison)


def backend(engine: str, atr_period: int):
    """The kernel backend of ``host`` or ``gpu`` for ``atr_period`` (builds or loads the kernels once)."""
    if engine == "host":
        from . import host

        return host.HostBackend(atr_period)
    if engine == "gpu":
        from . import gpu

        return gpu.GpuBackend(atr_period)
    raise EngineError(f"engine {engine!r} has no kernel backend; choose host or gpu.")


def advance(o, h, l, c, series_bounds, config: FeatureConfig, engine: str, start_states, kernels=None) -> EngineRun:
    """Continue S series from their states by a few new bars each: the live stream's step.

    The same per-bar functions as :func:`run` (kernels/advance.cu: one thread per series, no chunks);
    the reference engine continues through :func:`run` itself. Inputs are trusted (the caller checked
    them), so this is the lean path a per-bar update can afford.

    Args:
        o, h, l, c: ``[n] float64`` new bars, series after series, each in time order (numpy; CuPy for gpu).
        series_bounds: ``[S + 1] int64`` numpy, first 0, strictly increasing, last n.
        config: the feature config.
        engine: ``reference``, ``host`` or ``gpu`` (resolved, not ``auto``).
        start_states: ``[S, 16 + P] float64`` state before each series' first new bar (numpy; CuPy for gpu);
            never changed.
        kernels: a :func:`backend` to reuse (default: made here).

    Returns:
        :class:`EngineRun` (features ``[n, 10]``, valid, swing, ``end_states [S, 16 + P]``) where the engine ran.
    """
    if engine == "reference":
        return run(o, h, l, c, offsets=series_bounds[:-1], config=config, engine="reference",
                   start_states=to_numpy(start_states))
    from .launch import kernel_params, run_advance

    kernels = kernels or backend(engine, config.atr_period)
    return run_advance(kernels, o, h, l, c, series_bounds, kernel_params(config), start_states)


def moments(feats, valid, swing, offsets=None, engine: str = "auto", atr_period: int | None = None) -> Moments:
    """Per-block partial statistics of features over valid bars, computed where the arrays are.

    Args:
        feats: ``[n, 10] float32``; valid: ``[n] bool``; swing: ``[n] int8`` (numpy, or CuPy for ``gpu``).
        offsets: ``[G] int64`` segment starts (default: one segment); no block crosses one.
        engine: ``auto``, ``reference`` (numpy), ``host`` or ``gpu``; every engine gives the same bits.
        atr_period: which compiled kernel library to use (any has ``pf_moments``; default: one already built).

    Returns:
        :class:`Moments` (``counts``/``moments`` on the engine's device); ``store/stats.py`` combines them.
    """
    name = resolve(engine)
    n = len(valid)
    offsets = np.zeros(1 if n else 0, dtype=np.int64) if offsets is None else to_numpy(offsets).astype(np.int64)
    if n == 0:
        return Moments(np.zeros(0, np.int64), np.zeros((0, 3), np.int64), np.zeros((0, N_FEATURES, 6)))
    if name == "reference":
        t0 = time.perf_counter()
        block_start, block_end, block_segment, _ = chunk_table(offsets, n, STATS_BLOCK_BARS)
        counts, parts = reference.block_moments(to_numpy(feats), to_numpy(valid), to_numpy(swing), block_start,
                                                block_end)
        return Moments(block_segment, counts, parts, time.perf_counter() - t0)
    if name == "host":
        from . import host

        backend = host.HostBackend(atr_period)
        feats, valid, swing = (to_numpy(x) for x in (feats, valid, swing))
    else:
        from . import gpu

        backend = gpu.GpuBackend(10 if atr_period is None else atr_period)
        feats, valid, swing = (backend.xp.asarray(x) for x in (feats, valid, swing))  # host arrays move once
    from .launch import run_moments

    return run_moments(backend, feats, valid, swing, offsets)


def compute_features(o, h, l, c, config: FeatureConfig | None = None, engine: str = "auto", offsets=None):
    """The relativity-10 features of one or several series (FEATURES.md).

    Args:
        o, h, l, c: ``[n]`` float arrays (numpy or CuPy), converted to float64.
        config: :class:`FeatureConfig` (default: the FEATURES.md defaults).
        engine: ``auto`` (gpu, then host, then reference), ``reference``, ``host`` or ``gpu``.
        offsets: ``[S] int64`` series starts, first 0 (default: one series).

    Returns:
        ``(features [n, 10] float32, valid [n] bool)`` on the device of the engine that ran.
    """
    result = run(o, h, l, c, offsets=offsets, config=config, engine=engine)
    return result.features, result.valid
