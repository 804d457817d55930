"""Manifest statistics: the block-moment kernel against its numpy reference, the merge against plain
numpy, the lean window counting against the window-index rule, and shards written from memory."""

import numpy as np
import pytest

import gpu_features as gf
from gpu_features import engines, reference
from gpu_features import splits as splits_mod
from gpu_features import synthetic
from gpu_features.config import FEATURE_NAMES, N_FEATURES
from gpu_features.engines import gpu, host, launch
from gpu_features.store import stats
from gpu_features.window_index import usable_starts, window_counts

needs_host = pytest.mark.skipif(not host.available(), reason="no C++ compiler for the host engine")


def random_features(rng, n, valid_share=0.8):
    """``[n, 10] f32`` features with repeated values, zeros and a constant column; valid in runs."""
    feats = rng.choice([-3.0, -0.5, 0.0, 0.25, 1.0, 2.75], size=(n, N_FEATURES)).astype(np.float32)
    feats[:, 3] += rng.normal(size=n).astype(np.float32)
    feats[:, 7] = np.float32(0.1)  # constant over every bar: std must come out exactly 0
    valid = rng.random(n) < valid_share
    valid[: n // 7] = False  # a warm-up stretch
    swing = rng.choice(np.array([0, 0, 0, 1, 2], dtype=np.int8), size=n)
    return feats, valid, swing


def plain_stats(feats, valid):
    """The record computed the obvious way (two passes, float64)."""
    x = feats[valid].astype(np.float64)
    return {name: {"min": x[:, k].min(), "max": x[:, k].max(), "mean": x[:, k].mean(), "std": x[:, k].std(),
                   "nonzero": np.count_nonzero(x[:, k]) / len(x)} for k, name in enumerate(FEATURE_NAMES)}


def assert_close(got, want, rtol=1e-12):
    for name in FEATURE_NAMES:
        for key, value in want[name].items():
            assert got[name][key] == pytest.approx(value, rel=rtol, abs=1e-13), (name, key)


@needs_host
@pytest.mark.parametrize("n, offsets", [(1, [0]), (7, [0, 3]), (1023, [0]), (1025, [0, 1]),
                                        (5000, [0, 1024, 1025, 3001]), (2049, [0, 2048])])
def test_host_moments_equal_the_reference_bit_for_bit(n, offsets):
    rng = np.random.default_rng(n)
    feats, valid, swing = random_features(rng, n)
    if n > 1000:
        valid[offsets[-1]:] = False  # a last segment without a valid bar
    got = engines.moments(feats, valid, swing, offsets=np.array(offsets), engine="host")
    want = engines.moments(feats, valid, swing, offsets=np.array(offsets), engine="reference")
    assert np.array_equal(got.block_segment, want.block_segment)
    assert np.array_equal(got.counts, want.counts)
    assert np.array_equal(got.moments.view(np.uint64), want.moments.view(np.uint64))


@needs_host
def test_moment_blocks_never_cross_a_segment_and_cover_every_bar():
    offsets = np.array([0, 10, 2000, 2001])
    m = engines.moments(*random_features(np.random.default_rng(3), 5000), offsets=offsets, engine="host")
    start, end, seg, _ = launch.chunk_table(offsets, 5000, launch.STATS_BLOCK_BARS)
    assert np.array_equal(m.block_segment, seg)
    assert end[-1] == 5000 and np.array_equal(start[1:], end[:-1])
    assert np.all(np.searchsorted(offsets, start, side="right") == np.searchsorted(offsets, end - 1, side="right"))


def test_reference_moments_of_a_block_without_valid_bars_are_zero():
    feats, valid, swing = random_features(np.random.default_rng(4), 50)
    counts, parts = reference.block_moments(feats, np.zeros(50, bool), swing, np.array([0]), np.array([50]))
    assert counts[0].tolist() == [0, int(np.sum(swing == 1)), int(np.sum(swing == 2))]
    assert not parts.any()


@pytest.mark.parametrize("moments_engine", ["reference", pytest.param("host", marks=needs_host)])
def test_store_stats_per_symbol_and_overall_match_plain_numpy(moments_engine):
    rng = np.random.default_rng(5)
    n = 9000
    feats, valid, swing = random_features(rng, n)
    # Segments in bar order, symbol A twice (an append's layout): A, B, A, C (C has no valid bar).
    segments = [{"name": "A", "first": 0, "count": 3000}, {"name": "B", "first": 3000, "count": 2500},
                {"name": "A", "first": 5500, "count": 2500}, {"name": "C", "first": 8000, "count": 1000}]
    valid[8000:] = False
    starts = np.array([g["first"] for g in segments])
    m = engines.moments(feats, valid, swing, offsets=starts, engine=moments_engine)
    rec = stats.store_stats(m, segments, ["A", "B", "C"], swings_before=np.array([[1, 2], [0, 0], [5, 0]]))
    assert_close(rec["features"], plain_stats(feats, valid))
    assert rec["bars"] == n and rec["valid_bars"] == int(valid.sum())
    assert rec["valid_fraction"] == float(valid.mean())
    sel = {"A": np.r_[0:3000, 5500:8000], "B": np.r_[3000:5500], "C": np.r_[8000:9000]}
    for (name, rows), before in zip(sel.items(), [(1, 2), (0, 0), (5, 0)]):
        got = rec["per_symbol"][name]
        assert got["bars"] == len(rows) and got["valid_bars"] == int(valid[rows].sum())
        assert got["swings"]["highs"] == int(np.sum(swing[rows] == 1)) + before[0]
        assert got["swings"]["lows"] == int(np.sum(swing[rows] == 2)) + before[1]
        if name == "C":
            assert all(v is None for v in got["features"]["close_norm"].values())
        else:
            assert_close(got["features"], plain_stats(feats[rows], valid[rows]))
    assert rec["swings"]["highs"] == int(np.sum(swing == 1)) + 6
    constant = rec["features"][FEATURE_NAMES[7]]  # column 7 is 0.1 on every bar: merged exactly
    assert constant["std"] == 0.0 and constant["mean"] == float(np.float32(0.1))


def test_stat_records_merge_to_the_stats_of_all_their_bars():
    """A dataset's statistics come from its parts' records: merging the per-symbol records (one with no
    valid bar) gives plain numpy over every bar, and the exact counts."""
    feats, valid, swing = random_features(np.random.default_rng(8), 9000)
    valid[8000:] = False
    segments = [{"name": "A", "first": 0, "count": 5000}, {"name": "B", "first": 5000, "count": 3000},
                {"name": "C", "first": 8000, "count": 1000}]
    m = engines.moments(feats, valid, swing, offsets=[0, 5000, 8000], engine="reference")
    rec = stats.store_stats(m, segments, ["A", "B", "C"])
    merged = stats.merge_stat_records(list(rec["per_symbol"].values()))
    assert_close(merged["features"], plain_stats(feats, valid))
    assert {k: merged[k] for k in ("bars", "valid_bars", "swings")} == \
        {"bars": 9000, "valid_bars": int(valid.sum()), "swings": rec["swings"]}
    assert merged["features"][FEATURE_NAMES[7]]["std"] == 0.0  # the constant column stays constant
    none = stats.merge_stat_records([rec["per_symbol"]["C"]])["features"]["open_norm"]
    assert none == {"min": None, "max": None, "mean": None, "std": None, "nonzero": None}


def test_feature_stats_is_the_same_with_and_without_a_compiler(monkeypatch):
    feats, valid, _ = random_features(np.random.default_rng(6), 4000)
    with_host = stats.feature_stats(feats, valid)
    monkeypatch.setattr(host, "available", lambda: False)
    assert stats.feature_stats(feats, valid) == with_host  # the same bits, numpy or the kernel
    assert_close(with_host, plain_stats(feats, valid))
    none = stats.feature_stats(feats, np.zeros(4000, bool))
    assert none["open_norm"] == {"min": None, "max": None, "mean": None, "std": None, "nonzero": None}


def test_store_statistics_stay_accurate_for_many_symbols():
    """2,000 short series: every symbol's record equals plain numpy (cost is per block, not per symbol)."""
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 40, 2000)
    n = int(lengths.sum())
    feats, valid, swing = random_features(rng, n, valid_share=0.9)
    firsts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    names = [f"S{k:04d}" for k in range(2000)]
    segments = [{"name": names[k], "first": int(firsts[k]), "count": int(lengths[k])} for k in range(2000)]
    m = engines.moments(feats, valid, swing, offsets=firsts, engine="host" if host.available() else "reference")
    rec = stats.store_stats(m, segments, names)
    for k in rng.choice(2000, 25, replace=False):
        rows = slice(firsts[k], firsts[k] + lengths[k])
        got = rec["per_symbol"][names[k]]
        assert got["bars"] == lengths[k] and got["valid_bars"] == int(valid[rows].sum())
        if valid[rows].any():
            assert_close(got["features"], plain_stats(feats[rows], valid[rows]))


def test_window_counts_equal_the_window_index_rule():
    rng = np.random.default_rng(8)
    for _ in range(600):
        n, K = int(rng.integers(0, 80)), int(rng.integers(1, 9))
        valid = rng.random(n) < rng.choice([0.6, 0.95, 1.0])
        split = np.sort(rng.integers(0, 3, n)).astype(np.int8) if rng.random() < 0.7 else \
            rng.integers(0, 3, n).astype(np.int8)
        inner = np.unique(rng.integers(1, max(n, 2), int(rng.integers(0, 4)))) if n > 1 else np.array([], int)
        bounds = np.concatenate([[0], inner[inner < n], [n]]).astype(np.int64)
        frac = float(rng.choice([1.0, 0.5, 0.0]))
        want = np.bincount(split[usable_starts(valid, split, bounds, K, frac)].astype(np.int64), minlength=3)
        assert window_counts(valid, split, bounds, K, 3, frac).tolist() == want.tolist()


def test_split_boundaries_without_a_full_sort():
    rng = np.random.default_rng(9)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        t = rng.integers(0, 40, n)
        if rng.random() < 0.5:
            t = np.sort(t)
        ks = [int(k) for k in rng.integers(0, n + 3, 2)]
        s = np.sort(t)
        assert splits_mod.order_statistics(t, ks) == [int(s[k]) if k < n else int(s[-1]) + 1 for k in ks]
    ts = np.arange(100, dtype=np.int64) * 60
    rec = splits_mod.resolve(None, ts[::-1].copy())  # unsorted input: the same boundaries as sorted
    assert rec["boundaries"] == splits_mod.resolve(None, ts)["boundaries"]


@pytest.mark.gpu
@pytest.mark.skipif(not gpu.available(), reason=f"GPU engine: {gpu.unavailable_reason()}")
@pytest.mark.parametrize("n, offsets", [(1, [0]), (5000, [0, 1024, 1025, 3001]), (300_001, [0, 99_999])])
def test_device_moments_equal_the_host_ones_bit_for_bit(n, offsets):
    import cupy

    feats, valid, swing = random_features(np.random.default_rng(n), n)
    want = engines.moments(feats, valid, swing, offsets=np.array(offsets),
                           engine="host" if host.available() else "reference")
    got = engines.moments(cupy.asarray(feats), cupy.asarray(valid), cupy.asarray(swing), offsets=np.array(offsets),
                          engine="gpu")
    assert isinstance(got.moments, cupy.ndarray)  # reduced where the features are
    assert np.array_equal(cupy.asnumpy(got.counts), want.counts)
    assert np.array_equal(cupy.asnumpy(got.moments).view(np.uint64), want.moments.view(np.uint64))


@pytest.mark.gpu
@pytest.mark.skipif(not gpu.available(), reason=f"GPU engine: {gpu.unavailable_reason()}")
def test_gpu_store_statistics_equal_the_host_store(make_store, tmp_path):
    bars = synthetic.generate(20_000, 4, seed=3)
    a = make_store(bars, tmp_path / "gpu", engine="gpu")
    b = make_store(bars, tmp_path / "host", engine="host")
    assert a.stats == b.stats and a.splits == b.splits
    assert gf.verify_store(tmp_path / "gpu").ok


def test_split_ids_count_the_boundaries_at_or_before_each_bar():
    t = np.random.default_rng(11).integers(0, 100, 5000)
    for cuts in ([10, 50], [0, 1], [99, 100], [50, 51]):
        record = {"boundaries": [[None, cuts[0]], cuts, [cuts[1], None]]}
        got = splits_mod.split_ids(t, record)
        assert got.dtype == np.int8
        assert np.array_equal(got, np.searchsorted(np.array(cuts), t, side="right"))


def test_split_boundaries_from_all_bars_equal_those_from_counted_timestamps():
    rng = np.random.default_rng(12)
    for _ in range(200):
        t = rng.integers(0, 50, int(rng.integers(1, 80)))
        if rng.random() < 0.5:
            t = np.sort(t)
        spec = {"fractions": [0.6, 0.25, 0.15]} if rng.random() < 0.5 else None
        times, counts = np.unique(t, return_counts=True)
        assert splits_mod.resolve(spec, t) == splits_mod.resolve_counted(spec, times, counts)
