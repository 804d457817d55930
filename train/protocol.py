"""Which windows a probe may use: labels inside their split, and an embargo between splits.

A sample is a window ``[s, e]`` (``e = s + K - 1``) with a label over bars ``e + 1 .. e + N``. The
store's splits are periods of time within every series (train, then val, then test), and a window never
crosses a split, a series or a roll (:mod:`gpu_features.window_index`). Two rules keep the probe honest
(López de Prado, *Advances in Financial Machine Learning*, ch. 7):

- **purge**: a sample whose label interval reaches into another split is dropped (its label would be
  made of the next split's bars);
- **embargo**: a sample whose window starts fewer than ``E`` bars after the start of its split, in its
  series, is dropped; ``E >= K + N`` (default exactly that), so every kept sample of a later split
  starts more than ``E`` bars after every kept label of an earlier split ends, and no window of one
  split shares a bar with a window or a label of another.

:func:`check_separation` verifies that property from the kept samples alone, independently of how
they were selected; the probe runs it before fitting anything and stops if it fails.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Test-only hook: True switches purging and the embargo off, so the tests can show that
# check_separation catches the leak. Nothing in the package sets it.
UNSAFE_NO_PURGE_FOR_TESTS = False


class Selection(NamedTuple):
    """Which of ``w`` candidate samples are kept, and how many each rule removed (of those still in).

    Attributes:
        keep: ``[w] bool``.
        counts: ``{"windows", "past_segment", "degenerate", "purged", "embargoed", "used"}``.
    """

    keep: np.ndarray
    counts: dict


def _boundaries(split_ids: np.ndarray, segment_bounds: np.ndarray) -> np.ndarray:
    """``[n + 1] int64`` prefix count of split changes inside series segments: ``c[i]`` changes at bars ``< i``
    (a change at bar j: ``split[j] != split[j - 1]`` with j not the first bar of a segment)."""
    split = np.asarray(split_ids)
    change = np.zeros(len(split), dtype=np.int64)
    change[1:] = split[1:] != split[:-1]
    change[np.asarray(segment_bounds[:-1], dtype=np.int64)] = 0
    return np.concatenate([[0], np.cumsum(change)])


def select(starts: np.ndarray, K: int, horizon: int, split_ids: np.ndarray, segment_bounds: np.ndarray,
           past_segment: np.ndarray, degenerate: np.ndarray, embargo: int) -> Selection:
    """Apply the label rules, purging and the embargo to windows at ``starts [w]`` (see the module doc).

    ``past_segment`` / ``degenerate`` ``[w] bool``: undefined labels (:func:`train.targets.labels`).
    """
    starts = np.asarray(starts, dtype=np.int64)
    ends = starts + K - 1
    c = _boundaries(split_ids, segment_bounds)
    seg_first = np.asarray(segment_bounds, dtype=np.int64)[np.searchsorted(segment_bounds, starts, side="right") - 1]
    defined = ~past_segment & ~degenerate
    # a change at a bar in e+1 .. e+N: the label reaches into the next split
    last = np.minimum(ends + horizon, len(split_ids) - 1)
    purged = defined & (c[last + 1] != c[ends + 1])
    # a change at a bar in max(s - E + 1, first bar of the segment) .. s: the window starts within E bars of it
    purged_or_not = defined & ~purged
    embargoed = purged_or_not & (c[starts + 1] != c[np.maximum(starts - embargo + 1, seg_first)])
    if UNSAFE_NO_PURGE_FOR_TESTS:
        purged[:] = False
        embargoed[:] = False
    keep = defined & ~purged & ~embargoed
    counts = {"windows": int(len(starts)), "past_segment": int(past_segment.sum()),
              "degenerate": int((~past_segment & degenerate).sum()), "purged": int(purged.sum()),
              "embargoed": int(embargoed.sum()), "used": int(keep.sum())}
    return Selection(keep, counts)


class LeakageError(AssertionError):
    """Kept samples of two splits are closer than the embargo, or a label crosses its split (a bug)."""


def check_separation(starts: np.ndarray, K: int, horizon: int, split_ids: np.ndarray, segment_bounds: np.ndarray,
                     embargo: int) -> None:
    """Verify from the kept samples alone that no label leaves its split and that, within every series
    segment, samples of different splits are more than ``embargo`` bars apart (the later window's first
    bar after the earlier label's last bar).

    Raises:
        LeakageError: naming the first violation.
    """
    starts = np.asarray(starts, dtype=np.int64)
    if len(starts) == 0:
        return
    split = np.asarray(split_ids)
    ends = starts + K - 1 + horizon  # last bar each sample touches
    if ends.max() >= len(split):
        raise LeakageError(f"a label runs past the last bar ({int(ends.max())} >= {len(split)}).")
    bounds = np.asarray(segment_bounds, dtype=np.int64)
    seg = np.searchsorted(bounds, starts, side="right") - 1
    if np.any(np.searchsorted(bounds, ends, side="right") - 1 != seg):
        raise LeakageError("a sample's label runs into the next series segment.")
    same = np.array([np.all(split[a:b + 1] == split[a]) for a, b in zip(starts, ends)])
    if not same.all():
        i = int(np.flatnonzero(~same)[0])
        raise LeakageError(f"the sample at bar {int(starts[i])} has its label in another split than its window "
                           "(not purged).")
    sid = split[starts]
    for g in np.unique(seg):
        at = seg == g
        for a in np.unique(sid[at]):
            for b in np.unique(sid[at]):
                if b <= a:
                    continue
                gap = int(starts[at & (sid == b)].min()) - int(ends[at & (sid == a)].max())
                if gap <= embargo:
                    raise LeakageError(f"in series segment {int(g)}, split {int(b)} starts {gap} bar(s) after the "
                                       f"last label of split {int(a)} ends; the embargo is {embargo} bars.")


__all__ = ["LeakageError", "Selection", "UNSAFE_NO_PURGE_FOR_TESTS", "check_separation", "select"]
