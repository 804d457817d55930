"""Bars: validated OHLC bars of one or several series segments, the type every reader hands to the engines."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..arrays import to_numpy
from ..errors import BarsError
from .presets import PRICE_COLUMNS


@dataclasses.dataclass(frozen=True)
class Bars:
    """OHLC bars of one or several series segments, concatenated segment after segment.

    A segment is the run of bars that one engine state covers: a symbol's bars, or, where a roll
    column cuts a symbol at its contract changes, each contract's stretch of them.

    Attributes:
        open, high, low, close: ``[n] float64``, numpy (or CuPy from the cudf reader).
        timestamp: ``[n] int64`` ns since the epoch, UTC; increasing within a segment.
        offsets: ``[S] int64`` numpy, first bar of each segment (first 0, increasing).
        segment_names: ``S`` names, the symbol of each segment; a name repeats for the segments of one
            symbol cut at rolls (consecutive, in time order).
        source: where the bars came from (path, bytes, sha256 and read settings; or generator parameters).
        ingest: what ingest did: policy, dropped and repaired bars by rule, skipped overlaps, warnings.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    timestamp: np.ndarray
    offsets: np.ndarray
    segment_names: tuple
    source: dict = dataclasses.field(default_factory=dict)
    ingest: dict = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(len(self.close))

    @property
    def n_segments(self) -> int:
        return int(len(self.offsets))

    def segment_bounds(self) -> np.ndarray:
        """``[S + 1] int64``: segment ``s`` is bars ``bounds[s] : bounds[s + 1]``."""
        return np.append(self.offsets, self.n).astype(np.int64)

    def segment_of(self) -> np.ndarray:
        """``[n] int64`` segment index of every bar."""
        return np.repeat(np.arange(self.n_segments, dtype=np.int64), np.diff(self.segment_bounds()))

    def on_host(self) -> "Bars":
        """These bars with numpy arrays (copied from the GPU where the cudf reader left them)."""
        return dataclasses.replace(self, **{k: to_numpy(getattr(self, k)) for k in PRICE_COLUMNS + ("timestamp",)})

    def take(self, start: int, stop: int, segment: int = 0) -> "Bars":
        """Bars ``start:stop`` (global positions, all inside ``segment``) as a one-segment Bars.

        The source record gains ``"take": [start, stop, segment]``, so a store built from
        the slice can still re-derive exactly these bars from the original source.
        """
        bounds = self.segment_bounds()
        if not (bounds[segment] <= start < stop <= bounds[segment + 1]):
            raise BarsError(f"take({start}, {stop}) must lie inside segment {segment} "
                            f"(bars {bounds[segment]} .. {bounds[segment + 1]}).")
        sl = slice(start, stop)
        source = dict(self.source, take=[int(start), int(stop), int(segment)])
        return Bars(self.open[sl], self.high[sl], self.low[sl], self.close[sl], self.timestamp[sl],
                    np.zeros(1, dtype=np.int64), (self.segment_names[segment],), source, self.ingest)
