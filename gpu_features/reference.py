"""The reference engine: FEATURES.md in plain Python, the oracle for every fast path.

Loops, float64, no cleverness, no numpy in the arithmetic: each line below is
one line of the contract. Slow by design (~100k bars/s); the host and GPU
engines are only ever checked against this file.
"""
from __future__ import annotations

import numpy as np

from . import state as S
from .config import N_FEATURES, FeatureConfig


def _clip(x: float, a: float, b: float) -> float:
    return a if x < a else (b if x > b else x)


def run_series(o, h, l, c, cfg: FeatureConfig, start_state, feats, valid, swing, snapshots=None, events=None):
    """Run one series (or a continuation of one) through the state machine.

    Args:
        o, h, l, c: sequences of float64 prices of this series' bars, ``[m]``.
        cfg: the feature config.
        start_state: ``[16 + P] float64`` state before the first of these bars.
        feats: ``[m, 10]`` float32 output, written row by row.
        valid: ``[m]`` bool output.
        swing: ``[m]`` int8 output: 1 where a swing high was confirmed at the
            bar, 2 where a swing low was, else 0.
        snapshots: optional ``{position: None}`` dict; for each local position
            ``p`` in it (0 <= p <= m) the state before bar ``p`` is stored under ``p``.
        events: optional list; each confirmed swing appends ``(j, code, extreme
            local index, extreme price)`` with ``j`` the confirming bar's position here.

    Returns:
        The ``[16 + P] float64`` state after the last bar.
    """
    P = cfg.atr_period
    eps, alpha, K = cfg.eps, cfg.alpha, cfg.window_length
    st = [float(x) for x in start_state]
    i = int(st[S.BARS])
    ema, prev_c, trend = st[S.EMA], st[S.PREV_CLOSE], int(st[S.TREND])
    ext, ext_i = st[S.EXT], int(st[S.EXT_I])
    cand_set, cand, cand_i = bool(st[S.CAND_SET]), st[S.CAND], int(st[S.CAND_I])
    sh_set, sh_i, sh_p = bool(st[S.SH_SET]), int(st[S.SH_I]), st[S.SH_P]
    sl_set, sl_i, sl_p = bool(st[S.SL_SET]), int(st[S.SL_I]), st[S.SL_P]
    trs = st[S.TRS:S.TRS + int(st[S.N_TRS])]

    def pack():
        v = [float(i), ema, prev_c, float(trend), ext, float(ext_i), float(cand_set), cand,
             float(cand_i), float(sh_set), float(sh_i), sh_p, float(sl_set), float(sl_i), sl_p,
             float(len(trs))] + trs + [0.0] * (P - len(trs))
        return np.array(v, dtype=np.float64)

    for j in range(len(c)):
        if snapshots is not None and j in snapshots:
            snapshots[j] = pack()
        oj, hj, lj, cj = float(o[j]), float(h[j]), float(l[j]), float(c[j])
        # 1. EMA of the bar range
        rng_raw = hj - lj
        ema = rng_raw if i == 0 else alpha * rng_raw + (1.0 - alpha) * ema
        atr = 0.0
        code = 0
        if i > 0:
            # 3. true range window, re-summed oldest first every bar
            tr = max(hj - lj, abs(hj - prev_c), abs(lj - prev_c))
            trs.append(tr)
            if len(trs) > P:
                del trs[0]
            total = 0.0
            for x in trs:
                total = total + x
            atr = total / len(trs)
            if trend == S.TREND_NONE:
                # 4. the first leg starts UP at the first bar with a positive ATR
                if atr > 0:
                    ext, ext_i, trend = cj, i, S.TREND_UP
            else:
                # 5. extend, candidate, confirm
                if trend == S.TREND_UP and hj > ext:
                    ext, ext_i = hj, i
                elif trend == S.TREND_DOWN and lj < ext:
                    ext, ext_i = lj, i
                if trend == S.TREND_UP and (not cand_set or hj > cand):
                    cand, cand_i, cand_set = hj, i, True
                elif trend == S.TREND_DOWN and (not cand_set or lj < cand):
                    cand, cand_i, cand_set = lj, i, True
                if atr != 0:
                    if trend == S.TREND_UP:
                        confirm = ext - cj >= cfg.zigzag_k * atr
                    else:
                        confirm = cj - ext >= cfg.zigzag_k * atr
                    if not confirm and cfg.hybrid and i - cand_i <= cfg.hybrid_lookback:
                        if trend == S.TREND_UP:
                            confirm = cand - lj >= cfg.hybrid_min_retrace_atr * atr
                        else:
                            confirm = hj - cand >= cfg.hybrid_min_retrace_atr * atr
                    if confirm:
                        if trend == S.TREND_UP:
                            sh_set, sh_i, sh_p = True, ext_i, ext
                            trend, ext, cand, ext_i, cand_i = S.TREND_DOWN, lj, lj, i, i
                            code = 1
                            if events is not None:
                                events.append((j, 1, sh_i, sh_p))
                        else:
                            sl_set, sl_i, sl_p = True, ext_i, ext
                            trend, ext, cand, ext_i, cand_i = S.TREND_UP, hj, hj, i, i
                            code = 2
                            if events is not None:
                                events.append((j, 2, sl_i, sl_p))
                        cand_set = True
        # 6. features of bar i, float64 then one rounding to float32
        rng = max(hj - lj, eps)
        a = atr if atr != 0 else 1e-8
        row = (
            _clip((oj - lj) / rng, 0.0, 1.0),
            _clip((cj - lj) / rng, 0.0, 1.0),
            _clip((cj - oj) / rng, -1.0, 1.0),
            _clip((hj - max(oj, cj)) / rng, 0.0, 1.0),
            _clip((min(oj, cj) - lj) / rng, 0.0, 1.0),
            _clip((hj - lj) / max(ema, eps), 0.0, 3.0),
            _clip((sh_p - cj) / a, -3.0, 3.0) if sh_set else 0.0,
            _clip((cj - sl_p) / a, -3.0, 3.0) if sl_set else 0.0,
            _clip((i - sh_i) / K, 0.0, 3.0) if sh_set else 0.0,
            _clip((i - sl_i) / K, 0.0, 3.0) if sl_set else 0.0,
        )
        feats[j] = row
        valid[j] = i >= cfg.warmup_bars and sh_set and sl_set
        swing[j] = code
        prev_c = cj
        i += 1
    if snapshots is not None and len(c) in snapshots:
        snapshots[len(c)] = pack()
    return pack()


def compute(o, h, l, c, offsets, cfg: FeatureConfig, start_states=None, snapshot_at=None):
    """Reference features for several series.

    Args:
        o, h, l, c: ``[n] float64`` numpy arrays.
        offsets: ``[S] int64`` series starts (first 0, increasing).
        cfg: the feature config.
        start_states: optional ``[S, 16 + P] float64`` state of each series
            before its first bar here (default: the initial state).
        snapshot_at: optional ``[m] int64`` global bar positions (sorted); the
            state before each (within its series) is returned.

    Returns:
        ``(features [n, 10] float32, valid [n] bool, swing [n] int8,
        end_states [S, 16 + P] float64, snapshots [m, 16 + P] float64)``.
    """
    n = len(c)
    n_series = len(offsets)
    feats = np.zeros((n, N_FEATURES), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    swing = np.zeros(n, dtype=np.int8)
    if start_states is None:
        start_states = S.initial_states(n_series, cfg.atr_period)
    snap_pos = np.asarray([] if snapshot_at is None else snapshot_at, dtype=np.int64)
    snaps = np.zeros((len(snap_pos), S.state_dim(cfg.atr_period)), dtype=np.float64)
    ends = np.zeros((n_series, S.state_dim(cfg.atr_period)), dtype=np.float64)
    bounds = list(offsets) + [n]
    for s in range(n_series):
        a, b = int(bounds[s]), int(bounds[s + 1])
        wanted = {int(p) - a: None for p in snap_pos if a <= p < b}
        ends[s] = run_series(o[a:b].tolist(), h[a:b].tolist(), l[a:b].tolist(), c[a:b].tolist(),
                             cfg, start_states[s], feats[a:b], valid[a:b], swing[a:b], wanted)
        for k, p in enumerate(snap_pos):
            if a <= p < b:
                snaps[k] = wanted[int(p) - a]
    return feats, valid, swing, ends, snaps


def block_moments(feats, valid, swing, block_start, block_end):
    """kernels/stats.cu ``pf_moments`` in numpy: the same sums in the same order, so the same bits.

    Args:
        feats ``[n, 10] float32``, valid ``[n] bool``, swing ``[n] int8``; block_start/end ``[B] int64``.

    Returns:
        ``(counts [B, 3] int64, moments [B, 10, 6] float64)`` as documented in kernels/stats.cu.
    """
    counts = np.zeros((len(block_start), 3), dtype=np.int64)
    moments = np.zeros((len(block_start), N_FEATURES, 6), dtype=np.float64)
    for k, (a, b) in enumerate(zip(block_start, block_end)):
        codes = np.asarray(swing[a:b])
        counts[k, 1], counts[k, 2] = np.count_nonzero(codes == 1), np.count_nonzero(codes == 2)
        x = np.asarray(feats[a:b], dtype=np.float32)[np.asarray(valid[a:b], dtype=bool)].astype(np.float64)
        counts[k, 0] = len(x)
        if len(x) == 0:
            continue
        d = x - x[0]
        # add.accumulate sums strictly in bar order, like the kernel's loop (np.sum would pair).
        moments[k] = np.stack([x[0], np.add.accumulate(d, axis=0)[-1], np.add.accumulate(d * d, axis=0)[-1],
                               x.min(axis=0), x.max(axis=0), np.count_nonzero(x, axis=0).astype(np.float64)],
                              axis=1)
    return counts, moments
