"""Windows: which K-bar stretches of a store a model may learn from.

A window is never stored; it is the view ``F[s : s + K]`` of the per-bar
features. A start ``s`` is usable when all K bars lie in one series segment
and one split and (by default) all are valid.
"""
from __future__ import annotations

import numpy as np


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
