"""The exact engine state of one series, as a flat float64 vector.

Every engine (reference, host, gpu) reads and writes this layout, so a state
taken from one engine continues bit for bit in another: the store keeps one
at each checkpoint (shard starts included) for ``verify`` and one at each
series end for ``--append``. Integers (indices, flags, the trend) are stored
as exact float64 values; unset fields are canonical zeros so two states that
mean the same thing are also equal bit for bit. ``kernels/state.cuh`` mirrors
these offsets.

Layout, ``[16 + P] float64`` with ``P = atr_period``:
    0 bars      bars of the series processed so far (= local index of the next bar)
    1 ema       2 prev_close
    3 trend     0 NONE, 1 UP, -1 DOWN
    4 ext       5 ext_i
    6 cand_set  7 cand        8 cand_i
    9 sh_set   10 sh_i       11 sh_p
   12 sl_set   13 sl_i       14 sl_p
   15 n_trs    16.. trs, oldest first (unused slots 0)
"""
from __future__ import annotations

import numpy as np

BARS, EMA, PREV_CLOSE, TREND, EXT, EXT_I = 0, 1, 2, 3, 4, 5
CAND_SET, CAND, CAND_I = 6, 7, 8
SH_SET, SH_I, SH_P = 9, 10, 11
SL_SET, SL_I, SL_P = 12, 13, 14
N_TRS, TRS = 15, 16

TREND_NONE, TREND_UP, TREND_DOWN = 0, 1, -1

FIELD_NAMES = (
    "bars", "ema", "prev_close", "trend", "ext", "ext_i", "cand_set", "cand", "cand_i",
    "sh_set", "sh_i", "sh_p", "sl_set", "sl_i", "sl_p", "n_trs",
)


def state_dim(atr_period: int) -> int:
    """Length of a state vector for a given ``atr_period``."""
    return TRS + atr_period


def initial_states(n_series: int, atr_period: int) -> np.ndarray:
    """The FEATURES.md initial state for ``n_series`` series: ``[S, 16 + P] float64`` zeros."""
    return np.zeros((n_series, state_dim(atr_period)), dtype=np.float64)


def check_states(states: np.ndarray, n_series: int, atr_period: int, what: str) -> np.ndarray:
    """Validate a ``[S, 16 + P]`` state array; returns it as contiguous float64."""
    from .errors import EngineError

    states = np.ascontiguousarray(states, dtype=np.float64)
    want = (n_series, state_dim(atr_period))
    if states.shape != want:
        raise EngineError(f"{what} has shape {states.shape}, expected {want} (series, 16 + atr_period).")
    return states
