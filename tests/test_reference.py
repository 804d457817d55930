"""The reference engine against the golden file and hand-worked examples of every rule.

The hand-built series use o = previous close, h = max(o, c), l = min(o, c), so
each bar's true range is |close - previous close| and the ATR is easy to
follow by hand. Every example also runs on the fast engines (fast_engine
fixture), so the same expectations hold for host and gpu.
"""
import filecmp

import numpy as np
import pytest

from gpu_features import FeatureConfig, engines
from gpu_features import state as S
from tests.conftest import GOLDEN, GOLDEN_IN_REPO
from tests.harness import assert_same_run

SH, SL, BARS_SH, BARS_SL = 6, 7, 8, 9


def walk(closes, first_open=None):
    """Bars from a list of closes: o = previous close, h/l = max/min(o, c)."""
    c = np.asarray(closes, dtype=np.float64)
    o = np.empty_like(c)
    o[0] = c[0] if first_open is None else first_open
    o[1:] = c[:-1]
    return o, np.maximum(o, c), np.minimum(o, c), c


UP_THEN_DOWN = [100.0 + k for k in range(11)] + [109.0, 108.0, 107.0]  # peak 110 at bar 10


def run_all(engine, o, h, l, c, cfg=None, offsets=None):
    """Reference result, also asserting the given fast engine agrees bit for bit."""
    ref = engines.run(o, h, l, c, config=cfg, engine="reference", offsets=offsets)
    if engine != "reference":
        got = engines.run(o, h, l, c, config=cfg, engine=engine, offsets=offsets, chunk_bars=3, warm_bars=2,
                          poison=True)
        assert_same_run(got, ref, f"{engine} on a hand-built series")
    return ref


def test_golden_bit_for_bit(golden):
    feats, valid = engines.compute_features(golden["open"], golden["high"], golden["low"], golden["close"],
                                            engine="reference")
    assert feats.dtype == np.float32 and feats.shape == (20000, 10)
    diff = np.flatnonzero(np.any(feats.view(np.uint32) != golden["features"].view(np.uint32), axis=1))
    assert len(diff) == 0, f"{len(diff)} golden rows differ, first {diff[:5]}"
    assert valid.dtype == np.bool_ and valid[:60].sum() == 0 and valid.sum() == 19940


def test_golden_copy_matches_shared_original():
    if not GOLDEN.is_file():
        pytest.skip(f"shared original not present at {GOLDEN}; the in-repo copy is used")
    assert filecmp.cmp(GOLDEN, GOLDEN_IN_REPO, shallow=False)


def test_first_bars(engine):
    o, h, l, c = np.array([100.0, 101.0]), np.array([102.0, 101.5]), np.array([99.0, 100.5]), np.array([101.0, 101.0])
    r = run_all(engine, o, h, l, c)
    np.testing.assert_array_equal(r.features[0], np.float32([1 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, 1.0, 0, 0, 0, 0]))
    assert not r.valid.any() and not r.swing.any()
    end = r.end_states[0]
    # bar 0 never starts the zigzag; bar 1 has atr > 0, so the first leg starts UP at its close
    assert end[S.TREND] == S.TREND_UP and end[S.EXT] == 101.0 and end[S.EXT_I] == 1
    assert end[S.N_TRS] == 1 and end[S.TRS] == 1.0  # tr = max(h - l, |h - 101|, |l - 101|) = 1.0


def test_primary_rule_confirms_at_k_atr(engine):
    cfg = FeatureConfig(hybrid=False, warmup_bars=0)
    r = run_all(engine, *walk(UP_THEN_DOWN), cfg=cfg)
    # atr = 1 throughout; bar 11 is 1 below the peak (< 1.2), bar 12 is 2 below: confirmed there
    assert np.flatnonzero(r.swing).tolist() == [12] and r.swing[12] == 1
    assert r.features[11, SH] == 0 and r.features[12, SH] == np.float32(2.0)
    assert r.features[12, BARS_SH] == np.float32(2 / 105)
    assert r.features[13, SH] == np.float32(3.0) and r.features[13, BARS_SH] == np.float32(3 / 105)
    assert r.features[12, SL] == 0 and r.features[12, BARS_SL] == 0


# With the default hybrid threshold (0.5 ATR) a walk whose bars span 1 ATR confirms a swing on
# nearly every bar (cand - l is the bar's own range); a 1.5 ATR threshold and k = 3 keep the
# walk quiet, so each rule can be seen alone.
QUIET = dict(zigzag_k=3.0, hybrid_min_retrace_atr=1.5)


def test_hybrid_rule_confirms_on_a_quick_retrace(engine):
    r = run_all(engine, *walk(UP_THEN_DOWN), cfg=FeatureConfig(**QUIET))
    # bar 12: the peak (cand, bar 10) is 2 bars old and the low retraces 2 >= 1.5 atr; primary needs 3
    assert np.flatnonzero(r.swing).tolist() == [12] and r.swing[12] == 1
    assert r.features[12, SH] == np.float32(2.0) and r.features[12, BARS_SH] == np.float32(2 / 105)
    off = run_all(engine, *walk(UP_THEN_DOWN), cfg=FeatureConfig(hybrid=False, **QUIET))
    assert np.flatnonzero(off.swing).tolist() == [13]  # primary alone: 110 - 107 = 3 >= 3 atr


def test_default_hybrid_confirms_on_almost_every_bar_of_a_walk(engine):
    r = run_all(engine, *walk(UP_THEN_DOWN), cfg=FeatureConfig())
    # bar 2: cand - l = 102 - 101 = 1 >= 0.5 atr -> swing high; bar 3: c - ext = 2 >= 1.2 -> swing low ...
    assert r.swing[2] == 1 and r.swing[3] == 2 and r.swing[4] == 1


def _stale_peak_series():
    """Peak 110 at bar 10, six bars pinned at the peak (h 110, l 109.75), then a dip to 109 at bar 17."""
    closes = [100.0 + k for k in range(11)]
    o, h, l, c = (list(x) for x in walk(closes))
    for _ in range(6):
        o.append(110.0); h.append(110.0); l.append(109.75); c.append(110.0)
    o.append(110.0); h.append(110.0); l.append(109.0); c.append(109.5)
    return tuple(np.array(x) for x in (o, h, l, c))


@pytest.mark.parametrize("lookback, confirmed", [(5, False), (6, False), (7, True)])
def test_hybrid_lookback_limits_the_candidate_age(engine, lookback, confirmed):
    # bar 17: atr = (3 x 1 + 6 x 0.25 + 1) / 10 = 0.55; primary needs 110 - 109.5 >= 1.65 (no),
    # hybrid needs cand - l = 1 >= 0.825 (yes) from a candidate 7 bars old
    r = run_all(engine, *_stale_peak_series(), cfg=FeatureConfig(hybrid_lookback=lookback, **QUIET))
    assert bool(r.swing[17]) is confirmed
    assert not r.swing[:17].any()


def test_hybrid_off_uses_primary_only(engine):
    r = run_all(engine, *_stale_peak_series(), cfg=FeatureConfig(hybrid=False, hybrid_lookback=7, **QUIET))
    assert not r.swing.any()


@pytest.mark.parametrize("k, confirmed", [(2.0, True), (2.0000001, False)])
def test_move_of_exactly_k_atr_confirms(engine, k, confirmed):
    cfg = FeatureConfig(hybrid=False, zigzag_k=k)
    r = run_all(engine, *walk(UP_THEN_DOWN), cfg=cfg)
    # bar 12: ext - c = 110 - 108 = 2.0 and atr = 1.0 exactly; the rule is >=
    assert bool(r.swing[12]) is confirmed


def test_flat_bars_with_high_equal_low(engine):
    o = h = l = c = np.full(50, 100.0)
    r = run_all(engine, o, h, l, c)
    assert not r.features.any() and not r.valid.any() and not r.swing.any()
    end = r.end_states[0]
    assert end[S.TREND] == S.TREND_NONE and end[S.N_TRS] == 10 and not end[S.TRS:].any()


def test_atr_zero_stretch_uses_the_1e8_floor(engine):
    # up 10, down 3 (swing high at 110 confirmed), then 20 identical flat bars at 107
    o, h, l, c = walk(UP_THEN_DOWN + [107.0] * 20)
    r = run_all(engine, o, h, l, c, cfg=FeatureConfig(hybrid=False))
    last = r.features[-1]
    # 10 flat bars fill the true-range window with zeros: atr == 0, so the distance uses 1e-8 and clips
    assert last[SH] == np.float32(3.0) and last[SL] == 0
    assert last[BARS_SH] == np.float32((len(c) - 1 - 10) / 105)
    assert not r.swing[14:].any()  # no confirmation is possible while atr == 0
    end = r.end_states[0]
    assert not end[S.TRS:].any()


def test_validity_needs_warmup_and_both_swings(engine):
    closes = UP_THEN_DOWN + [106.0, 105.0, 106.0, 107.0, 108.0, 109.0, 110.0, 111.0, 110.0, 109.0]
    o, h, l, c = walk(closes)
    r = run_all(engine, o, h, l, c, cfg=FeatureConfig(hybrid=False, warmup_bars=20))
    first_sh = np.flatnonzero(r.swing == 1)[0]
    first_sl = np.flatnonzero(r.swing == 2)[0]
    assert first_sh == 12 and first_sl < 20
    want = (np.arange(len(c)) >= 20) & (np.arange(len(c)) >= max(first_sh, first_sl))
    np.testing.assert_array_equal(r.valid, want)
    r0 = run_all(engine, o, h, l, c, cfg=FeatureConfig(hybrid=False, warmup_bars=0))
    np.testing.assert_array_equal(r0.valid, np.arange(len(c)) >= max(first_sh, first_sl))


def test_several_series_equal_each_series_alone(engine):
    rng = np.random.default_rng(7)
    from tests.harness import random_bars

    lengths = [1, 11, 150, 3, 400]
    o, h, l, c, offsets = random_bars(rng, lengths)
    whole = run_all(engine, o, h, l, c, offsets=offsets)
    for s, (a, n) in enumerate(zip(offsets, lengths)):
        alone = run_all(engine, o[a:a + n], h[a:a + n], l[a:a + n], c[a:a + n])
        np.testing.assert_array_equal(whole.features[a:a + n].view(np.uint32), alone.features.view(np.uint32))
        np.testing.assert_array_equal(whole.valid[a:a + n], alone.valid)
        np.testing.assert_array_equal(whole.end_states[s], alone.end_states[0])


def test_contract_copy_matches_shared_original():
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / "shared" / "FEATURES.md"
    if not shared.is_file():
        pytest.skip(f"shared original not present at {shared}; docs/FEATURES.md is the copy in use")
    copy = (Path(__file__).resolve().parents[1] / "docs" / "FEATURES.md").read_text()
    assert copy.split("\n", 2)[2] == shared.read_text()
