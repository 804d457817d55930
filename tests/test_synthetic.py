import numpy as np
import pytest

import gpu_features as gf
from gpu_features import engines, synthetic
from gpu_features.ingest import assemble
from tests.cli.console import run
from tests.harness import one_sentence


def test_deterministic_and_seed_dependent():
    a, b = synthetic.generate(5000, 2, seed=3), synthetic.generate(5000, 2, seed=3)
    for k in ("open", "high", "low", "close", "timestamp", "offsets"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.close, synthetic.generate(5000, 2, seed=4).close)
    assert a.segment_names == ("SYN0", "SYN1") and a.offsets.tolist() == [0, 5000]
    assert synthetic.generate(10).segment_names == ("NQ",)


def test_bars_pass_every_ingest_rule_on_a_tick_grid():
    b = synthetic.generate(200_000, seed=1)
    prices = {"open": b.open, "high": b.high, "low": b.low, "close": b.close}
    again = assemble("synthetic", prices, b.timestamp, None, "error", b.source)  # raises on any bad bar
    assert again.n == b.n
    for x in prices.values():
        assert np.all(np.mod(x, synthetic.TICK) == 0) and np.all(x > 0)
    assert np.any(b.high > np.maximum(b.open, b.close)) and np.any(b.low < np.minimum(b.open, b.close))


def test_globex_sessions_and_gaps():
    ts = synthetic.session_timestamps(3 * synthetic.SESSION_BARS * 5)  # three weeks
    d = np.diff(ts) // 60_000_000_000
    gaps = sorted(set(d.tolist()))
    assert gaps == [1, 61, 2941]  # minutes: bar to bar, 16:59 -> 18:00 daily, Friday 16:59 -> Sunday 18:00
    assert np.count_nonzero(d == 61) == 3 * 4 and np.count_nonzero(d == 2941) == 2
    # the first bar is Sunday 2019-01-06 18:00 New York (23:00 UTC)
    assert ts[0] == np.datetime64("2019-01-06T23:00", "ns").astype(np.int64)


def test_volatility_clusters():
    b = synthetic.generate(200_000, seed=0)
    r = np.abs(np.diff(np.log(b.close)))
    lag1 = np.corrcoef(r[:-1], r[1:])[0, 1]
    assert lag1 > 0.1  # absolute returns are autocorrelated: calm and busy stretches


def test_regenerate_from_the_manifest_record():
    b = synthetic.generate(1000, 3, seed=9)
    again = synthetic.regenerate(b.source)
    np.testing.assert_array_equal(again.close, b.close)


def test_features_are_not_degenerate():
    b = synthetic.generate(50_000)
    feats, valid = engines.compute_features(b.open, b.high, b.low, b.close, engine="host")
    assert valid.mean() > 0.99
    assert ((feats[valid] != 0).mean(axis=0) > 0.5).all()


def test_too_many_synthetic_bars_are_refused_before_allocating(tmp_path, capsys, monkeypatch):
    def never(*a, **k):
        raise AssertionError("allocated")

    monkeypatch.setattr(synthetic, "_one_symbol", never)
    code, _, err = run(capsys, "precompute", "--output", tmp_path / "s", "--synthetic-bars", "1e12", "--quiet")
    assert code == 2 and one_sentence(err) and "need about 88,000.0 GB of memory" in err, err
    with pytest.raises(gf.BarsError, match="synthetic seed must lie in 0 .. 17,179,869,184"):
        synthetic.generate(10, 1, 1 << 40)


def _plain_one_symbol(n, rng):
    """The generator's formulas written plainly, one new array per operation: the oracle of the in-place code."""
    T = synthetic.TICK
    base = float(rng.uniform(9_000.0, 18_000.0))

    def smoothed(span):
        c = np.cumsum(rng.standard_normal(n + span))
        return (c[span:] - c[:-span]) / np.sqrt(span)

    log_vol = sum(w * smoothed(span) for w, span in ((0.25, 30), (0.3, 600), (0.35, 6000)))
    minute = np.arange(n) % synthetic.SESSION_BARS
    cash = np.exp(-((minute - 930) / 60.0) ** 2) + 0.7 * np.exp(-((minute - 1320) / 45.0) ** 2)
    vol = 0.00035 * np.exp(log_vol) * (0.45 + 1.6 * cash)
    ret = vol * rng.standard_t(4, size=n) / np.sqrt(2.0)
    ret[minute == 0] += rng.normal(0.0, 0.004, size=int((minute == 0).sum()))
    close = np.maximum(np.round(base * np.exp(np.cumsum(ret)) / T) * T, T)
    open_ = np.empty(n)
    open_[0], open_[1:] = close[0], close[:-1]
    gap_at = np.flatnonzero(minute == 0)
    gap_at = gap_at[gap_at > 0]
    prev = close[gap_at - 1]
    open_[gap_at] = np.maximum(np.round((prev + 0.7 * (close[gap_at] - prev)) / T) * T, T)
    wick = np.abs(rng.standard_normal((2, n))) * vol * close * 0.6
    high = np.maximum(open_, close) + np.round(wick[0] / T) * T
    low = np.maximum(np.minimum(open_, close) - np.round(wick[1] / T) * T, T)
    return open_, high, low, close


@pytest.mark.parametrize("n, symbols, seed", [(1, 1, 0), (1381, 1, 4), (20_000, 3, 11)])
def test_the_in_place_generator_gives_the_plain_formulas_bits(n, symbols, seed):
    bars = synthetic.generate(n, symbols, seed)
    for s in range(symbols):
        want = _plain_one_symbol(n, np.random.default_rng([seed, s]))
        got = (bars.open, bars.high, bars.low, bars.close)
        for w, g in zip(want, got):
            assert np.array_equal(w.view(np.uint64), g[s * n:(s + 1) * n].view(np.uint64))
    minute = np.arange(n, dtype=np.int64)
    session = minute // synthetic.SESSION_BARS
    want_ts = synthetic._FIRST_MONDAY_NS + (((session // 5) * 7 + session % 5) * 24 * 60 - 6 * 60
                                            + minute % synthetic.SESSION_BARS) * synthetic._NS_PER_MIN
    assert np.array_equal(bars.timestamp, np.tile(want_ts, symbols))
