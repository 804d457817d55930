"""Statistics a manifest records: per-feature moments over valid bars, swing rates, split and window counts."""
from __future__ import annotations

import numpy as np

from .. import splits as splits_mod
from ..config import FEATURE_NAMES
from ..window_index import usable_starts


def feature_stats(feats: np.ndarray, valid: np.ndarray) -> dict:
    """Per-feature ``{min, max, mean, std, nonzero}`` over valid bars (float64 sums)."""
    out = {}
    v = np.asarray(valid, dtype=bool)
    for k, name in enumerate(FEATURE_NAMES):
        x = feats[v, k].astype(np.float64)
        if len(x) == 0:
            out[name] = {"min": None, "max": None, "mean": None, "std": None, "nonzero": None}
            continue
        out[name] = {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()),
                     "std": float(x.std()), "nonzero": float(np.count_nonzero(x) / len(x))}
    return out


def swing_counts(swing: np.ndarray, symbol_of_bar: np.ndarray, n_symbols: int) -> np.ndarray:
    """``[S, 2] int64`` swing highs and lows confirmed per symbol, from the engine's ``[n] int8`` swing codes."""
    out = np.zeros((n_symbols, 2), dtype=np.int64)
    for code in (1, 2):
        out[:, code - 1] = np.bincount(symbol_of_bar[swing == code], minlength=n_symbols)
    return out


def swing_stats(highs: int, lows: int, bars: int) -> dict:
    """Swing confirmations: counts, per 1,000 bars, and bars per confirmed swing."""
    total = int(highs) + int(lows)
    return {"highs": int(highs), "lows": int(lows), "per_1000_bars": 1000.0 * total / max(bars, 1),
            "bars_per_swing": (bars / total) if total else None}


def store_stats(feats, valid, symbol_of_bar, symbols, counts: np.ndarray) -> dict:
    """The manifest ``stats`` record, overall and per symbol.

    Args:
        feats: ``[n, 10] float32``; valid: ``[n] bool``; symbol_of_bar: ``[n] int64``.
        symbols: the ``S`` symbol names; counts: ``[S, 2]`` swing highs and lows per symbol.
    """
    per_symbol = {}
    for k, name in enumerate(symbols):
        sel = symbol_of_bar == k
        bars = int(sel.sum())
        per_symbol[name] = {"bars": bars, "valid_bars": int(valid[sel].sum()),
                            "features": feature_stats(feats[sel], valid[sel]),
                            "swings": swing_stats(counts[k, 0], counts[k, 1], bars)}
    total = counts.sum(axis=0)
    return {"bars": int(len(valid)), "valid_bars": int(valid.sum()),
            "valid_fraction": float(valid.mean()) if len(valid) else 0.0,
            "features": feature_stats(feats, valid), "swings": swing_stats(total[0], total[1], len(valid)),
            "per_symbol": per_symbol}


def split_counts(valid, split_ids, segment_bounds, K) -> dict:
    """Bars and usable windows per split."""
    starts = usable_starts(valid, split_ids, segment_bounds, K)
    out = {}
    for k, name in enumerate(splits_mod.SPLIT_NAMES):
        out[name] = {"bars": int(np.count_nonzero(split_ids == k)),
                     "windows": int(np.count_nonzero(starts & (split_ids == k)))}
    return out
