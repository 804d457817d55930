"""Statistics a manifest records: per-feature moments over valid bars, swing rates, split and window counts.

The features are reduced once, where they are: ``engines.moments`` runs
kernels/stats.cu over blocks of at most ``STATS_BLOCK_BARS`` bars that never
cross a series segment (on the GPU for the GPU engine, as an OpenMP loop on the
host, in numpy for the reference), and this module combines the small per-block
table into series, symbols and the whole store with the pairwise update of
Chan, Golub and LeVeque (means and sums of squared deviations), so the cost is
linear in bars whatever the number of symbols. ``verify`` recomputes with
:func:`feature_stats`, the same method over one segment.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .. import engines, splits as splits_mod
from ..config import FEATURE_NAMES
from ..engines import Moments
from ..window_index import window_counts


@dataclasses.dataclass
class Groups:
    """Combined statistics of ``M`` groups of bars (blocks, series, symbols or the whole store).

    Attributes: valid ``[M]`` valid bars; mean, m2 (sum of squared deviations), lo, hi, nonzero
    ``[M, 10] float64`` over those bars; highs, lows ``[M]`` swing confirmations (all bars).
    """

    valid: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    nonzero: np.ndarray
    highs: np.ndarray
    lows: np.ndarray


def block_groups(m: Moments) -> Groups:
    """The per-block table of ``engines.moments`` (numpy arrays) as :class:`Groups`."""
    counts, parts = np.asarray(m.counts), np.asarray(m.moments)
    n = counts[:, 0].astype(np.float64)[:, None]
    some = n > 0
    safe = np.where(some, n, 1.0)
    shift, s1, s2 = parts[:, :, 0], parts[:, :, 1], parts[:, :, 2]
    mean = np.where(some, shift + s1 / safe, 0.0)
    m2 = np.where(some, np.maximum(s2 - s1 * (s1 / safe), 0.0), 0.0)
    lo = np.where(some, parts[:, :, 3], np.inf)
    hi = np.where(some, parts[:, :, 4], -np.inf)
    return Groups(counts[:, 0].copy(), mean, m2, lo, hi, parts[:, :, 5].copy(), counts[:, 1].copy(),
                  counts[:, 2].copy())


def combine(g: Groups, ids: np.ndarray, n_groups: int) -> Groups:
    """Merge the rows of ``g`` into ``n_groups`` groups; row ``r`` goes to group ``ids[r]`` (``[M] int``).

    Means and squared deviations merge exactly as Chan et al.'s pairwise update; an empty group
    has valid 0, mean 0, lo +inf and hi -inf. Cost: one stable sort of ``ids`` (already sorted: linear).
    """
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if len(ids):
        starts = np.flatnonzero(np.concatenate([[True], sorted_ids[1:] != sorted_ids[:-1]]))
    else:
        starts = np.zeros(0, dtype=np.int64)
    present = sorted_ids[starts]

    def reduce(ufunc, x, fill):
        out = np.full((n_groups,) + x.shape[1:], fill, dtype=x.dtype)
        if len(starts):
            out[present] = ufunc.reduceat(x[order], starts, axis=0)
        return out

    valid = reduce(np.add, g.valid, 0)
    w = g.valid.astype(np.float64)[:, None]
    nv = valid.astype(np.float64)[:, None]
    # Means as a pivot (the group's first non-empty row) plus the weighted mean of deviations from it:
    # equal means merge to exactly that mean, so a constant feature keeps std 0.
    pivot = np.zeros((n_groups,) + g.mean.shape[1:])
    filled = np.flatnonzero(g.valid[order] > 0)
    if len(filled):
        pos = np.minimum(np.searchsorted(filled, starts), len(filled) - 1)
        first = filled[pos]
        ends = np.append(starts[1:], len(ids))
        has = first < ends
        pivot[present[has]] = g.mean[order[first[has]]]
    dev = np.where(w > 0, g.mean - pivot[ids], 0.0)
    mean = pivot + np.where(nv > 0, reduce(np.add, w * dev, 0.0) / np.where(nv > 0, nv, 1.0), 0.0)
    m2 = reduce(np.add, g.m2 + w * (g.mean - mean[ids]) ** 2, 0.0)
    return Groups(valid, mean, m2, reduce(np.minimum, g.lo, np.inf), reduce(np.maximum, g.hi, -np.inf),
                  reduce(np.add, g.nonzero, 0.0), reduce(np.add, g.highs, 0), reduce(np.add, g.lows, 0))


def _feature_record(g: Groups, row: int) -> dict:
    """``{name: {min, max, mean, std, nonzero}}`` of group ``row`` (all None without valid bars)."""
    n = int(g.valid[row])
    out = {}
    for k, name in enumerate(FEATURE_NAMES):
        if n == 0:
            out[name] = {"min": None, "max": None, "mean": None, "std": None, "nonzero": None}
            continue
        out[name] = {"min": float(g.lo[row, k]), "max": float(g.hi[row, k]), "mean": float(g.mean[row, k]),
                     "std": float(np.sqrt(g.m2[row, k] / n)), "nonzero": float(g.nonzero[row, k] / n)}
    return out


def feature_stats(feats: np.ndarray, valid: np.ndarray) -> dict:
    """Per-feature ``{min, max, mean, std, nonzero}`` over valid bars: ``[n, 10] f32`` features, ``[n] bool``.

    The store's method (block moments, then one merge) over a single segment; host kernels where a
    compiler exists, numpy otherwise (the same bits).
    """
    from ..engines import host

    engine = "host" if host.available() else "reference"
    m = engines.moments(feats, valid, np.zeros(len(valid), dtype=np.int8), engine=engine)
    return _feature_record(combine(block_groups(m), m.block_segment * 0, 1), 0)


def record_groups(records: list[dict]) -> Groups:
    """The ``stats`` records of ``M`` stores (or symbols) as :class:`Groups`, one row each.

    Counts and extremes are exact; ``m2`` is rebuilt as ``valid * std**2`` and the nonzero counts as
    ``round(nonzero * valid)``, so merging them with :func:`combine` equals a recomputation to ~1e-15.
    """
    def column(key, fill):
        return np.array([[fill if r["valid_bars"] == 0 or r["features"][name][key] is None
                          else r["features"][name][key] for name in FEATURE_NAMES] for r in records],
                        dtype=np.float64).reshape(len(records), len(FEATURE_NAMES))

    valid = np.array([r["valid_bars"] for r in records], dtype=np.int64)
    n = valid.astype(np.float64)[:, None]
    return Groups(valid, column("mean", 0.0), n * column("std", 0.0) ** 2, column("min", np.inf),
                  column("max", -np.inf), np.round(column("nonzero", 0.0) * n),
                  np.array([r["swings"]["highs"] for r in records], dtype=np.int64),
                  np.array([r["swings"]["lows"] for r in records], dtype=np.int64))


def merge_stat_records(records: list[dict]) -> dict:
    """The overall part of a ``stats`` record (``bars``, ``valid_bars``, ``valid_fraction``, ``features``,
    ``swings``) of several stores' bars together, from their own records (:func:`record_groups`)."""
    whole = combine(record_groups(records), np.zeros(len(records), dtype=np.int64), 1)
    bars = sum(int(r["bars"]) for r in records)
    valid = int(whole.valid[0])
    return {"bars": bars, "valid_bars": valid, "valid_fraction": valid / bars if bars else 0.0,
            "features": _feature_record(whole, 0), "swings": swing_stats(whole.highs[0], whole.lows[0], bars)}


def swing_stats(highs: int, lows: int, bars: int) -> dict:
    """Swing confirmations: counts, per 1,000 bars, and bars per confirmed swing."""
    total = int(highs) + int(lows)
    return {"highs": int(highs), "lows": int(lows), "per_1000_bars": 1000.0 * total / max(bars, 1),
            "bars_per_swing": (bars / total) if total else None}


def store_stats(m: Moments, segments: list[dict], symbols: list[str], swings_before=None) -> dict:
    """The manifest ``stats`` record, overall and per symbol, from the block moments of all bars.

    Args:
        m: ``engines.moments`` of the store's bars with numpy arrays, blocks cut at the segments.
        segments: the manifest's series entries (``name``, ``count``) in bar order.
        symbols: the ``S`` symbol names.
        swings_before: optional ``[S, 2]`` swing highs and lows to add (bars whose swing codes are
            not at hand: an append's stored bars).
    """
    n_seg, n_sym = len(segments), len(symbols)
    index = {name: k for k, name in enumerate(symbols)}
    seg_symbol = np.array([index[g["name"]] for g in segments], dtype=np.int64)
    bars = np.bincount(seg_symbol, weights=[g["count"] for g in segments], minlength=n_sym).astype(np.int64)
    per_segment = combine(block_groups(m), m.block_segment, n_seg)
    per_symbol_g = combine(per_segment, seg_symbol, n_sym)
    if swings_before is not None:
        per_symbol_g.highs = per_symbol_g.highs + np.asarray(swings_before)[:, 0]
        per_symbol_g.lows = per_symbol_g.lows + np.asarray(swings_before)[:, 1]
    whole = combine(per_symbol_g, np.zeros(n_sym, dtype=np.int64), 1)
    n = int(bars.sum())
    per_symbol = {name: {"bars": int(bars[k]), "valid_bars": int(per_symbol_g.valid[k]),
                         "features": _feature_record(per_symbol_g, k),
                         "swings": swing_stats(per_symbol_g.highs[k], per_symbol_g.lows[k], int(bars[k]))}
                  for k, name in enumerate(symbols)}
    valid_bars = int(whole.valid[0])
    return {"bars": n, "valid_bars": valid_bars, "valid_fraction": valid_bars / n if n else 0.0,
            "features": _feature_record(whole, 0), "swings": swing_stats(whole.highs[0], whole.lows[0], n),
            "per_symbol": per_symbol}


def split_counts(valid, split_ids, segment_bounds, K) -> dict:
    """Bars and usable windows per split (``window_index`` counts the windows, runs of bars at a time)."""
    n_splits = len(splits_mod.SPLIT_NAMES)
    ids = np.asarray(split_ids)
    # One comparison per split: np.bincount would first widen the [n] int8 ids to int64 (8 bytes a bar).
    bars = [int(np.count_nonzero(ids == k)) for k in range(n_splits)]
    windows = window_counts(valid, split_ids, segment_bounds, K, n_splits)
    return {name: {"bars": int(bars[k]), "windows": int(windows[k])}
            for k, name in enumerate(splits_mod.SPLIT_NAMES)}
