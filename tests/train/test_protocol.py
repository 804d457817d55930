"""train/protocol.py: purging and the embargo, and the separation check that catches a probe that leaks."""
import numpy as np
import pytest

from gpu_features.window_index import split_window_starts
from train import protocol
from train.protocol import LeakageError, check_separation, select

K, N = 10, 3
# two series of 200 bars, each train 0..119, val 120..159, test 160..199 (by position inside the series)
SPLIT = np.tile(np.repeat(np.array([0, 1, 2], dtype=np.int8), [120, 40, 40]), 2)
BOUNDS = np.array([0, 200, 400])
VALID = np.ones(400, dtype=bool)


def _candidates():
    starts = split_window_starts(VALID, SPLIT, BOUNDS, K)
    ends = starts + K - 1
    seg_end = BOUNDS[np.searchsorted(BOUNDS, ends, side="right")]
    return starts, ends + N >= seg_end


def _select(embargo=K + N):
    starts, past = _candidates()
    sel = select(starts, K, N, SPLIT, BOUNDS, past, np.zeros(len(starts), bool), embargo)
    return starts, sel


def test_purge_and_embargo_remove_exactly_the_samples_near_a_boundary():
    starts, sel = _select()
    kept = starts[sel.keep]
    local = kept % 200
    sid = SPLIT[kept]
    # train: labels end by the last train bar; val/test: start at least K + N bars into the split
    assert local[sid == 0].max() + K - 1 + N == 119
    assert local[sid == 1].min() == 120 + K + N and local[sid == 2].min() == 160 + K + N
    assert local[sid == 1].max() + K - 1 + N == 159 and local[sid == 2].max() + K - 1 + N == 199
    c = sel.counts
    assert c["purged"] == 2 * 2 * N and c["past_segment"] == 2 * N  # train and val lose N each per series
    assert c["embargoed"] == 2 * 2 * (K + N)  # per series, the first K + N starts of val and of test
    assert c["used"] == int(sel.keep.sum()) == c["windows"] - c["purged"] - c["past_segment"] - c["embargoed"]
    check_separation(kept, K, N, SPLIT, BOUNDS, K + N)  # passes


def test_switching_purging_off_is_caught_by_the_separation_check(monkeypatch):
    """The deliberately leaky setting: labels of train reach into val; the check fails without purging."""
    monkeypatch.setattr(protocol, "UNSAFE_NO_PURGE_FOR_TESTS", True)
    starts, sel = _select()
    assert sel.counts["purged"] == sel.counts["embargoed"] == 0
    with pytest.raises(LeakageError, match="has its label in another split than its window"):
        check_separation(starts[sel.keep], K, N, SPLIT, BOUNDS, K + N)


def test_an_embargo_too_short_is_caught():
    starts, sel = _select(embargo=2)
    with pytest.raises(LeakageError, match=r"split 1 starts \d+ bar\(s\) after the last label of split 0 ends; the "
                                           r"embargo is 13 bars"):
        check_separation(starts[sel.keep], K, N, SPLIT, BOUNDS, K + N)


def test_a_label_past_its_series_is_caught():
    with pytest.raises(LeakageError, match="runs into the next series segment"):
        check_separation(np.array([200 - K]), K, N, SPLIT, BOUNDS, K + N)
