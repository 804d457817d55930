"""Fast engines against the reference: randomized and adversarial inputs, tiny chunks, forced fix-ups.

Every run poisons its outputs with NaN first (harness.cross_check), so an
element a kernel forgets to write fails the comparison. Tiny chunk sizes and
warm-ups make small inputs cross many chunk boundaries; W = 0 starts every
chunk cold at its first bar, so the speculative start is wrong and the
fix-up pass must repair it exactly.
"""

import numpy as np
import pytest

from gpu_features import FeatureConfig, engines
from gpu_features import state as S
from gpu_features.engines import gpu, host, launch
from gpu_features.errors import EngineError
from tests.harness import cross_check, random_bars

P, K = 10, 105
ADVERSARIAL_LENGTHS = [1, 2, P, P + 1, P + 2, K - 1, K, K + 1, 97, 101, 127, 128, 129, 1009]


def test_golden_default_chunks(fast_engine, golden):
    got, _ = cross_check(fast_engine, golden["open"], golden["high"], golden["low"], golden["close"], what="golden")
    assert np.array_equal(got.features.view(np.uint32) if fast_engine == "host" else got.features.get().view(np.uint32),
                          golden["features"].view(np.uint32))


@pytest.mark.parametrize("chunk, warm", [(1, 0), (2, 1), (7, 3), (64, 0), (100, 12), (333, 128), (4096, 512)])
def test_golden_tiny_chunks(fast_engine, golden, chunk, warm):
    got, _ = cross_check(fast_engine, golden["open"], golden["high"], golden["low"], golden["close"],
                         chunk_bars=chunk, warm_bars=warm, what=f"golden C={chunk} W={warm}")
    assert got.chunks == -(-20000 // chunk)


def test_cold_starts_force_fixups_and_stay_exact(fast_engine, golden):
    got, _ = cross_check(fast_engine, golden["open"], golden["high"], golden["low"], golden["close"],
                         chunk_bars=50, warm_bars=0, what="W=0")
    assert got.fixups > 0.5 * got.chunks  # most cold starts were wrong and were re-run
    warm, _ = cross_check(fast_engine, golden["open"], golden["high"], golden["low"], golden["close"],
                          chunk_bars=50, warm_bars=512, what="W=512")
    assert warm.fixups == 0


@pytest.mark.parametrize("length", ADVERSARIAL_LENGTHS)
@pytest.mark.parametrize("chunk, warm", [(1, 0), (11, 12), (128, 0)])
def test_adversarial_lengths(fast_engine, length, chunk, warm):
    rng = np.random.default_rng(length * 1000 + chunk)
    o, h, l, c, off = random_bars(rng, [length])
    cross_check(fast_engine, o, h, l, c, off, chunk_bars=chunk, warm_bars=warm, what=f"n={length}")


@pytest.mark.parametrize("chunk", [127, 128, 129])
def test_lengths_around_the_chunk_size(fast_engine, chunk):
    rng = np.random.default_rng(chunk)
    for length in (chunk - 1, chunk, chunk + 1, 2 * chunk - 1, 2 * chunk + 1):
        o, h, l, c, off = random_bars(rng, [length])
        cross_check(fast_engine, o, h, l, c, off, chunk_bars=chunk, warm_bars=P + 5, what=f"n={length} C={chunk}")


def test_empty_input(fast_engine):
    e = np.zeros(0)
    r = engines.run(e, e, e, e, engine=fast_engine)
    assert r.features.shape == (0, 10) and r.valid.shape == (0,) and r.end_states.shape == (0, S.state_dim(P))


@pytest.mark.parametrize("seed", range(6))
def test_many_short_series(fast_engine, seed):
    rng = np.random.default_rng(100 + seed)
    lengths = rng.integers(1, 40, size=150).tolist()
    o, h, l, c, off = random_bars(rng, lengths)
    got, _ = cross_check(fast_engine, o, h, l, c, off, chunk_bars=int(rng.integers(1, 20)),
                         warm_bars=int(rng.integers(0, 30)), what=f"150 short series seed {seed}")
    assert got.end_states.shape == (150, S.state_dim(P))


@pytest.mark.parametrize("seed", range(4))
def test_flat_stretches_and_huge_gaps(fast_engine, seed):
    rng = np.random.default_rng(200 + seed)
    o, h, l, c, off = random_bars(rng, [3000, 1500, 17], flat_share=0.3, gap_share=0.01)
    cross_check(fast_engine, o, h, l, c, off, chunk_bars=64, warm_bars=int(rng.integers(0, 40)),
                what=f"flat + gaps seed {seed}")


@pytest.mark.parametrize("cfg", [
    FeatureConfig(hybrid=False),
    FeatureConfig(atr_period=1, ema_period=1, warmup_bars=0),
    FeatureConfig(atr_period=64, zigzag_k=3.5, hybrid_lookback=0, window_length=2),
    FeatureConfig(hybrid_min_retrace_atr=0.0, eps=0.5),
])
def test_other_configs(fast_engine, cfg, golden):
    n = 5000
    cross_check(fast_engine, golden["open"][:n], golden["high"][:n], golden["low"][:n], golden["close"][:n],
                config=cfg, chunk_bars=97, warm_bars=40, what=str(cfg))


def test_start_states_continue_a_series_exactly(fast_engine, golden):
    """Running bars [a, n) from the state after bar a - 1 equals the tail of one full run (append)."""
    o, h, l, c = (golden[k][:8000] for k in ("open", "high", "low", "close"))
    full = engines.run(o, h, l, c, engine="reference")
    for a in (1, 61, 4000, 7999):
        head = engines.run(o[:a], h[:a], l[:a], c[:a], engine=fast_engine)
        head_end = head.end_states if fast_engine == "host" else head.end_states.get()
        tail, _ = cross_check(fast_engine, o[a:], h[a:], l[a:], c[a:], start_states=head_end, chunk_bars=500,
                              warm_bars=100, what=f"continuation from bar {a}")
        tf = tail.features if fast_engine == "host" else tail.features.get()
        np.testing.assert_array_equal(tf.view(np.uint32), full.features[a:].view(np.uint32))


def test_snapshots_equal_the_state_of_a_prefix(fast_engine, golden):
    o, h, l, c = (golden[k][:3000] for k in ("open", "high", "low", "close"))
    at = np.array([0, 1, 5, 63, 64, 65, 1000, 2999])
    got, _ = cross_check(fast_engine, o, h, l, c, snapshot_at=at, chunk_bars=64, warm_bars=0, what="snapshots")
    snaps = got.snapshots if fast_engine == "host" else got.snapshots.get()
    for k, p in enumerate(at):
        prefix = engines.run(o[:p], h[:p], l[:p], c[:p], engine="reference")
        want = prefix.end_states[0] if p else np.zeros(S.state_dim(P))
        np.testing.assert_array_equal(snaps[k].view(np.uint64), want.view(np.uint64))


def test_snapshots_at_series_starts_of_many_series(fast_engine):
    rng = np.random.default_rng(5)
    o, h, l, c, off = random_bars(rng, [30, 1, 200, 9])
    at = np.unique(np.concatenate([off, off + 0, [35, 100, 239]]))
    cross_check(fast_engine, o, h, l, c, off, snapshot_at=at, chunk_bars=16, warm_bars=16, what="snapshots multi")


def test_bad_arguments_are_refused():
    x = np.ones(5)
    with pytest.raises(EngineError, match="offsets must start at 0"):
        engines.run(x, x, x, x, offsets=[1, 3])
    with pytest.raises(EngineError, match="unknown engine 'cuda'"):
        engines.run(x, x, x, x, engine="cuda")
    with pytest.raises(EngineError, match="1-D with 5 elements"):
        engines.run(np.ones(4), x, x, x)
    with pytest.raises(EngineError, match="chunk_bars must be >= 1"):
        engines.run(x, x, x, x, engine="host", chunk_bars=0)
    with pytest.raises(EngineError, match="start_states has shape"):
        engines.run(x, x, x, x, start_states=np.zeros((1, 3)))


def test_chunk_table_never_crosses_a_series_start():
    start, end, seg, first = launch.chunk_table(np.array([0, 5, 6, 20]), 23, 4)
    assert list(zip(start.tolist(), end.tolist())) == [(0, 4), (4, 5), (5, 6), (6, 10), (10, 14), (14, 18),
                                                       (18, 20), (20, 23)]
    assert seg.tolist() == [0, 0, 1, 2, 2, 2, 2, 3] and first.tolist() == [0, 2, 3, 7, 8]


def test_auto_picks_the_fastest_engine_present(monkeypatch):
    assert engines.resolve("auto") == ("gpu" if gpu.available() else "host")
    monkeypatch.setattr(gpu, "available", lambda: False)
    monkeypatch.setattr(host, "available", lambda: False)
    assert engines.resolve("auto") == "reference"


def test_float_rounding_keeps_subnormals(fast_engine):
    """Prices near 1e-46 make candle features float32-subnormal; no engine may flush them to 0."""
    rng = np.random.default_rng(46)
    o, h, l, c, off = random_bars(rng, [300, 41])
    o, h, l, c = (x * 1e-46 for x in (o, h, l, c))
    got, want = cross_check(fast_engine, o, h, l, c, off, chunk_bars=64, warm_bars=16, what="tiny prices")
    feats = np.asarray(want.features)
    assert np.count_nonzero((feats != 0) & (np.abs(feats) < np.finfo(np.float32).tiny)) > 100
