"""train/targets.py: the probe's labels, checked against plain loops over the closes."""
import math

import numpy as np
import pytest

from tests.harness import one_sentence
from train.config import TrainError
from train.targets import Target, labels, parse_target, parse_targets, past_volatility, source_closes


def _closes(n=400, seed=3):
    rng = np.random.default_rng(seed)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    c[50:60] = c[50]  # a flat stretch: zero returns and zero volatility
    return np.round(c, 2)


@pytest.mark.parametrize("kind", ["return-sign", "realized-vol"])
@pytest.mark.parametrize("N", [1, 5, 30])
def test_labels_equal_a_plain_loop(kind, N):
    close = _closes()
    bounds = np.array([0, 150, 151, 400])  # a one-bar segment and a series change at 150
    ends = np.arange(len(close))
    got = labels(close, bounds, ends, Target(kind, N))
    for e in ends:
        seg_end = bounds[np.searchsorted(bounds, e, side="right")]
        if e + N >= seg_end:
            assert math.isnan(got.y[e]) and got.past_segment[e]
            continue
        assert not got.past_segment[e]
        if kind == "return-sign":
            r = math.log(close[e + N]) - math.log(close[e])
            assert got.degenerate[e] == (r == 0)
            if r != 0:
                assert got.y[e] == (1.0 if r > 0 else 0.0)
        else:
            s = 0.0
            for i in range(1, N + 1):
                s += (math.log(close[e + i]) - math.log(close[e + i - 1])) ** 2
            assert got.degenerate[e] == (s == 0)
            if s:
                assert got.y[e] == pytest.approx(0.5 * math.log(s), rel=1e-12)
    assert got.degenerate.any() or N == 30  # the flat stretch shows


def test_past_volatility_uses_only_the_windows_own_bars():
    close, K, N = _closes(), 20, 5
    ends = np.arange(K - 1, len(close))
    got = past_volatility(close, ends, K, N)
    lc = np.log(close)
    for row, e in zip(got, ends):
        short = sum((lc[j] - lc[j - 1]) ** 2 for j in range(e - N + 1, e + 1))
        long_ = sum((lc[j] - lc[j - 1]) ** 2 for j in range(e - K + 2, e + 1)) * N / (K - 1)
        assert row == pytest.approx(0.5 * np.log(np.maximum([short, long_], 1e-12)), rel=1e-9, abs=1e-12)


def test_targets_parse_or_are_refused_in_one_sentence():
    assert parse_target("return-sign:5") == Target("return-sign", 5) and parse_target(" realized-vol:20").horizon == 20
    assert [t.name for t in parse_targets(["return-sign:5", "return-sign:5", "realized-vol:3"])] == \
        ["return-sign:5", "realized-vol:3"]
    for bad in ("return-sign", "return-sign:0", "return-sign:-1", "sign:5", "realized-vol:1e3", "", "return-sign:100001"):
        with pytest.raises(TrainError, match="is not one of return-sign:N, realized-vol:N") as err:
            parse_target(bad)
        assert one_sentence(str(err.value))


def test_closes_come_from_the_stores_sources(make_store, tmp_path):
    from gpu_features import synthetic
    from tests.harness import write_parquet

    bars = synthetic.generate(3000, 2, 4)
    store = make_store(write_parquet(tmp_path / "b.parquet", bars), tmp_path / "s")
    got = source_closes([store])
    order = np.concatenate([np.flatnonzero(np.array(bars.segment_names)[np.searchsorted(
        bars.segment_bounds(), np.arange(bars.n), side="right") - 1] == g.name) for g in store.segments])
    assert np.array_equal(got, bars.close[order][:store.n_bars])
    (tmp_path / "b.parquet").write_bytes(b"changed")
    with pytest.raises(TrainError, match="the probe's labels need the store's source bars, but source .* changed"):
        source_closes([store])
