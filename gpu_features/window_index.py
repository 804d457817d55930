"""Which K-bar stretches of a store a model may learn from: the window-index rule, numpy only.

A window is never stored; it is the view ``F[s : s + K]`` of the per-bar
features. A start ``s`` is usable when all K bars lie in one series segment
and one split and (by default) enough of them are valid. The store counts
windows with these functions when it is written, and the loader picks its
windows with them, so both always agree.
"""
from __future__ import annotations

import numpy as np

from .errors import WindowError
from .splits import SPLIT_NAMES


def usable_starts(valid: np.ndarray, split: np.ndarray, segment_bounds: np.ndarray, K: int,
                  min_valid_fraction: float = 1.0) -> np.ndarray:
    """Mark the usable window starts.

    Args:
        valid: ``[n] bool`` per-bar validity.
        split: ``[n] int8`` split index of each bar.
        segment_bounds: ``[G + 1] int64``; segment ``g`` is bars ``bounds[g] : bounds[g + 1]``.
        K: window length.
        min_valid_fraction: least share of valid bars in a window (1.0 = all).

    Returns:
        ``[n] bool``: True at ``s`` when window ``[s, s + K)`` is usable.
    """
    n = len(valid)
    out = np.zeros(n, dtype=bool)
    if n < K:
        return out
    seg = np.zeros(n, dtype=np.int64)
    seg[np.asarray(segment_bounds[1:-1], dtype=np.int64)] = 1
    key = np.cumsum(seg) * 8 + np.asarray(split, dtype=np.int64)
    brk = np.ones(n, dtype=bool)
    brk[1:] = key[1:] != key[:-1]
    run_start = np.maximum.accumulate(np.where(brk, np.arange(n), 0))
    starts = np.arange(n - K + 1)
    same_run = run_start[starts + K - 1] <= starts
    need = int(np.ceil(min_valid_fraction * K - 1e-9))
    csum = np.concatenate([[0], np.cumsum(np.asarray(valid, dtype=np.int64))])
    enough = (csum[starts + K] - csum[starts]) >= need
    out[: n - K + 1] = same_run & enough
    return out


def window_counts(valid: np.ndarray, split: np.ndarray, segment_bounds: np.ndarray, K: int,
                  n_splits: int = len(SPLIT_NAMES), min_valid_fraction: float = 1.0) -> np.ndarray:
    """``[n_splits] int64`` usable window starts per split: ``bincount(split[usable_starts(...)])``, leaner.

    The bars are cut into runs of one segment and one split; a run of length L holds the starts
    ``r0 .. r0 + L - K``. When every bar must be valid, runs are cut further where validity changes
    and each valid stretch of L bars counts L - K + 1 (one pass over the bars); otherwise a start
    counts when its window has enough valid bars (one cumulative sum).
    """
    n = len(valid)
    out = np.zeros(n_splits, dtype=np.int64)
    if n < K:
        return out
    split = np.asarray(split)
    change = np.flatnonzero(split[1:] != split[:-1]) + 1
    bounds = np.union1d(np.union1d(np.asarray(segment_bounds, dtype=np.int64), change), [0, n])
    r0, r1 = bounds[:-1], bounds[1:]
    need = int(np.ceil(min_valid_fraction * K - 1e-9))
    if need >= K:  # every bar valid: a stretch of L valid bars inside one run holds L - K + 1 windows
        v = np.asarray(valid, dtype=bool)
        cuts = np.union1d(bounds, np.flatnonzero(v[1:] != v[:-1]) + 1)
        a, b = cuts[:-1], cuts[1:]
        per = np.where(v[a], np.maximum(b - a - K + 1, 0), 0)
        return out + np.bincount(split[a].astype(np.int64), weights=per, minlength=n_splits).astype(np.int64)[:n_splits]
    csum = np.zeros(n + 1, dtype=np.int32 if n < 2**31 - 1 else np.int64)
    np.cumsum(np.asarray(valid, dtype=bool), out=csum[1:])
    ok = (csum[K:] - csum[: n - K + 1]) >= need  # [n - K + 1]: window at s has enough valid bars
    last = np.maximum(r1 - K + 1, r0)  # starts r0 .. last - 1 keep the window inside the run
    edges = np.clip(np.stack([r0, last], axis=1).ravel(), 0, n - K + 1)
    padded = np.concatenate([ok.view(np.uint8), [0]])  # reduceat needs indices < len
    sums = np.add.reduceat(padded, edges, dtype=np.int64)[0::2]
    sums[edges[0::2] == edges[1::2]] = 0  # reduceat returns the element itself for an empty range
    return out + np.bincount(split[r0].astype(np.int64), weights=sums, minlength=n_splits).astype(np.int64)[:n_splits]


def split_window_starts(valid: np.ndarray, split_ids: np.ndarray, segment_bounds: np.ndarray, K: int,
                        split: str | None = None, min_valid_fraction: float = 1.0) -> np.ndarray:
    """``[w] int64`` sorted usable window starts, of one split (``train``/``val``/``test``) or of all.

    Args as :func:`usable_starts`; ``split_ids`` is ``[n] int8`` (0 train, 1 val, 2 test).
    """
    usable = usable_starts(valid, split_ids, segment_bounds, K, min_valid_fraction)
    if split is not None:
        if split not in SPLIT_NAMES:
            raise WindowError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_NAMES)}.")
        usable &= split_ids == SPLIT_NAMES.index(split)
    return np.flatnonzero(usable)


def stride_starts(starts: np.ndarray, stride: int) -> np.ndarray:
    """Thin sorted usable starts to every ``stride``-th bar.

    Within each run of consecutive usable starts the first is kept, then every
    ``stride``-th bar after it, so a gap (an invalid bar, a split or series
    boundary) restarts the stride instead of shifting every later window.

    Args:
        starts: ``[w] int64`` sorted usable starts.
        stride: bars between kept starts (1 keeps all).

    Returns:
        ``[w'] int64`` kept starts.
    """
    check_int("stride", stride, 1)
    starts = np.asarray(starts, dtype=np.int64)
    if stride == 1 or len(starts) == 0:
        return starts
    new_run = np.ones(len(starts), dtype=bool)
    new_run[1:] = np.diff(starts) != 1
    run_first = np.maximum.accumulate(np.where(new_run, starts, np.iinfo(np.int64).min))
    return starts[(starts - run_first) % stride == 0]


def evenly_spaced(starts: np.ndarray, max_windows: int | None) -> np.ndarray:
    """At most ``max_windows`` of ``starts``, evenly spaced over the whole range (deterministic)."""
    if max_windows is None:
        return starts
    check_int("max_windows", max_windows, 1)
    if len(starts) <= max_windows:
        return starts
    pick = np.unique(np.linspace(0, len(starts) - 1, max_windows).round().astype(np.int64))
    return starts[pick]


def check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise WindowError(f"{name} must be an integer >= {low}, got {value!r}.")
