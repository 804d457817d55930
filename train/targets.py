"""Downstream targets of the probe, computed from a store's source bars after each window's last bar.

- ``return-sign:N``: 1 when the log return from the close of the window's last bar ``e`` to the
  close of bar ``e + N`` is positive, 0 when negative. A zero return has no sign: such a sample is
  dropped (and counted), not given to either class; on tick-sized 1-minute bars that is common.
- ``realized-vol:N``: ``log sqrt(sum_{i=1..N} (log c[e+i] - log c[e+i-1])^2)``, the log realized
  volatility of the next N bars; N flat bars (zero volatility) have no logarithm and are dropped.

A label is only defined when bar ``e + N`` lies in the same series segment as ``e`` (a segment is cut
at every series start and roll), so a label never spans two series or a roll. The closes are the
store's own source bars, re-read as ``verify`` re-reads them (a file must still have its SHA-256; a
synthetic source is regenerated), or given with ``--source``.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from .config import TrainError

KINDS = ("return-sign", "realized-vol")
MAX_HORIZON = 100_000


@dataclasses.dataclass(frozen=True)
class Target:
    """A probe target ``KIND:N`` (see the module doc)."""

    kind: str
    horizon: int

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.horizon}"

    @property
    def is_classification(self) -> bool:
        return self.kind == "return-sign"


def parse_target(text) -> Target:
    """``return-sign:N`` or ``realized-vol:N`` (N bars ahead, 1 .. 100,000), or a refusal in one sentence."""
    if isinstance(text, Target):
        return text
    kind, _, n = str(text).strip().partition(":")
    if kind not in KINDS or not n.isdigit() or not 1 <= int(n) <= MAX_HORIZON:
        raise TrainError(f"probe target {text!r} is not one of {', '.join(k + ':N' for k in KINDS)} with N bars "
                         f"ahead in 1 .. {MAX_HORIZON:,}; e.g. --probe return-sign:5.")
    return Target(kind, int(n))


def parse_targets(texts) -> list[Target]:
    """Targets in the order given, each once."""
    out = []
    for t in texts:
        t = parse_target(t)
        if t not in out:
            out.append(t)
    return out


class Labels(NamedTuple):
    """Labels of windows ending at bars ``ends [w]``: ``y [w] float64`` (NaN where undefined) and why each
    undefined one is: ``past_segment [w] bool`` (bar e + N beyond the series segment), ``degenerate [w] bool``
    (a zero return for the sign, zero volatility for the volatility)."""

    y: np.ndarray
    past_segment: np.ndarray
    degenerate: np.ndarray


def _segment_end(ends: np.ndarray, segment_bounds: np.ndarray) -> np.ndarray:
    """``[w]`` the end (exclusive) of the segment holding each bar of ``ends``."""
    return segment_bounds[np.searchsorted(segment_bounds, ends, side="right")]


def labels(close: np.ndarray, segment_bounds: np.ndarray, ends: np.ndarray, target: Target) -> Labels:
    """The target's label for windows whose last bar is ``ends [w]`` over closes ``close [n] float64``.

    The volatility's squared returns are summed in bar order, as a plain loop would.
    """
    close = np.asarray(close, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.int64)
    N = target.horizon
    past = ends + N >= _segment_end(ends, np.asarray(segment_bounds, dtype=np.int64))
    e = np.where(past, 0, ends)  # any index that exists; those labels are discarded
    logc = np.log(close)
    last = len(close) - 1

    def at(i):  # log close of bar e + i (clipped only for the discarded labels)
        return logc[np.minimum(e + i, last)]

    if target.kind == "return-sign":
        r = at(N) - at(0)
        y = (r > 0).astype(np.float64)
        degenerate = ~past & (r == 0)
    else:
        s = np.zeros(len(e), dtype=np.float64)
        for i in range(1, N + 1):
            d = at(i) - at(i - 1)
            s += d * d
        degenerate = ~past & (s == 0)
        with np.errstate(divide="ignore"):
            y = 0.5 * np.log(s)
    y = np.where(past | degenerate, np.nan, y)
    return Labels(y, past, degenerate)


def past_volatility(close: np.ndarray, ends: np.ndarray, K: int, horizon: int) -> np.ndarray:
    """``[w, 2] float64`` HAR-style lags of a window ending at ``e``, from its own bars only: the log realized
    volatility of its last ``min(N, K - 1)`` returns and of all its ``K - 1`` returns scaled to that many
    (a flat stretch gets the log of 1e-12 instead of minus infinity)."""
    logc = np.log(np.asarray(close, dtype=np.float64))
    ends = np.asarray(ends, dtype=np.int64)
    h = min(horizon, K - 1)
    d2 = np.zeros(len(logc))
    d2[1:] = np.diff(logc) ** 2
    csum = np.concatenate([[0.0], np.cumsum(d2)])  # d2[j] at bars e-h+1 .. e all lie inside the window
    short = csum[ends + 1] - csum[ends + 1 - h]
    long_ = (csum[ends + 1] - csum[ends + 1 - (K - 1)]) * h / (K - 1)
    return 0.5 * np.log(np.maximum(np.stack([short, long_], axis=1), 1e-12))


def source_closes(stores, sources=None) -> np.ndarray:
    """``[n] float64`` close of every bar of the stores (opened, concatenated in order), from their sources.

    Raises:
        TrainError: a source that cannot be re-read (moved, changed, bars in memory) or does not match the store.
    """
    from gpu_features.sources import load_sources, store_bars

    out = []
    given = list(sources or [])
    if given and len(stores) > 1:
        raise TrainError("--source replaces the bars of one store; with several stores keep each store's own "
                         "sources where they were built.")
    for st in stores:
        loaded, why = load_sources(st, given or None)
        if loaded is None:
            raise TrainError(f"{st.path}: the probe's labels need the store's source bars, but {why}.")
        bars = store_bars(st, loaded)
        if bars is None or not np.array_equal(bars.timestamp, st.timestamps()):
            raise TrainError(f"{st.path}: its source bars do not match the store (symbols, counts or timestamps "
                             "differ); pass the files it was built from with --source.")
        out.append(np.asarray(bars.close, dtype=np.float64))
    return np.concatenate(out)


__all__ = ["KINDS", "Labels", "Target", "labels", "parse_target", "parse_targets", "past_volatility",
           "source_closes"]
