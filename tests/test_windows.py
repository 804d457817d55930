"""Window index, device batches, masks, seeding and the old-pipeline compatibility loader."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gpu_features as gf  # noqa: E402
from gpu_features import synthetic  # noqa: E402
from gpu_features.seed import create_fast_dataloaders  # noqa: E402
from gpu_features.window_index import evenly_spaced, stride_starts, usable_starts  # noqa: E402
from gpu_features.windows import WindowError, WindowSource, derive_seed  # noqa: E402

K = 105


@pytest.fixture(scope="module")
def store(make_store, tmp_path_factory):
    """3 symbols x 12,000 bars: several series starts (with warm-up bars) and all three splits."""
    return make_store(synthetic.generate(12_000, 3, 7), tmp_path_factory.mktemp("w") / "s")


@pytest.fixture(scope="module")
def src(store):
    return WindowSource.from_store(store, "cpu")


def _toy(n=700, seed=0):
    """A source from arrays: 2 segments, split boundaries inside them, scattered invalid bars."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(n, 10)).astype(np.float32)
    valid = rng.random(n) > 0.03
    valid[:20] = False
    split = np.zeros(n, np.int8)
    split[500:600], split[600:] = 1, 2
    return feats, valid, split, np.array([0, 350, n])


# --- the window index ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_window_is_valid_in_one_series_and_one_split(store, src, split):
    starts = src.starts(split)
    assert len(starts) == store.manifest["splits"]["counts"][split]["windows"] > 0
    ids, bounds, valid = store.split_ids(), store.segment_bounds(), store.array("valid")
    want = ("train", "val", "test").index(split)
    seg = np.searchsorted(bounds, starts, side="right")
    assert np.array_equal(seg, np.searchsorted(bounds, starts + K - 1, side="right"))  # one segment
    win = starts[:, None] + np.arange(K)
    assert (ids[win] == want).all() and valid[win].all()
    np.testing.assert_array_equal(starts, store.usable_window_starts(split))


def test_min_valid_fraction_admits_partly_valid_windows_only_within_segments():
    feats, valid, split, bounds = _toy()
    src = WindowSource(feats, valid, split, bounds, K, "cpu")
    full, half = src.starts(None), src.starts(None, min_valid_fraction=0.5)
    assert set(full) < set(half)
    for s in half:
        assert valid[s:s + K].sum() >= int(np.ceil(0.5 * K))
        assert np.searchsorted(bounds, s, "right") == np.searchsorted(bounds, s + K - 1, "right")
        assert len(set(split[s:s + K])) == 1
    with pytest.raises(WindowError, match="min_valid_fraction must lie in"):
        src.starts(None, min_valid_fraction=1.5)


def test_stride_restarts_at_every_gap():
    starts = np.array([3, 4, 5, 6, 7, 8, 20, 21, 22, 23, 40])
    np.testing.assert_array_equal(stride_starts(starts, 1), starts)
    np.testing.assert_array_equal(stride_starts(starts, 3), [3, 6, 20, 23, 40])
    np.testing.assert_array_equal(stride_starts(starts, 100), [3, 20, 40])
    with pytest.raises(WindowError, match="stride must be an integer >= 1"):
        stride_starts(starts, 0)


def test_stride_on_a_store_thins_each_run(src):
    all_, strided = src.starts("train"), src.starts("train", stride=7)
    assert set(strided) <= set(all_) and len(all_) / 8 < len(strided) <= len(all_) / 7 + 10
    assert np.diff(strided).min() >= 7


def test_evenly_spaced_cap_covers_the_whole_range(src):
    starts = src.starts("train")
    capped = evenly_spaced(starts, 100)
    assert len(capped) == 100 and capped[0] == starts[0] and capped[-1] == starts[-1]
    assert set(capped) <= set(starts)
    assert evenly_spaced(starts, None) is starts


def test_unknown_split_is_refused(src):
    with pytest.raises(WindowError, match="unknown split 'dev'; choose one of train, val, test"):
        src.starts("dev")


def test_usable_starts_signature_is_unchanged():
    valid = np.ones(12, bool)
    valid[5] = False
    out = usable_starts(valid, np.zeros(12, np.int8), np.array([0, 12]), 4)
    np.testing.assert_array_equal(np.flatnonzero(out), [0, 1, 6, 7, 8])


# --- batches ------------------------------------------------------------------------------------


def test_batches_gather_the_right_bars_on_the_device(store, src):
    loader = src.loader("val", 64, shuffle=True, seed=3)
    feats, valid = store.array("features"), store.array("valid")
    order = loader.order(0).numpy()
    for i, (X, mask, v) in enumerate(loader.batches(0)):
        assert X.dtype == torch.float32 and mask.dtype == torch.bool and v.dtype == torch.bool
        assert X.device == src.device and X.shape[1:] == (K, 10) and mask.shape == v.shape == X.shape[:2]
        for b in (0, X.shape[0] - 1):
            s = order[i * 64 + b]
            np.testing.assert_array_equal(X[b].numpy(), feats[s:s + K])
            np.testing.assert_array_equal(v[b].numpy(), valid[s:s + K])
    assert X.shape[0] == loader.n_windows - (len(loader) - 1) * 64  # the partial last batch is kept


def test_an_epoch_visits_each_window_exactly_once(src):
    loader = src.loader("train", 500, seed=1)
    seen = [loader.order(2)[i * 500:(i + 1) * 500] for i in range(len(loader))]
    seen = torch.cat(seen).numpy()
    assert len(seen) == loader.n_windows
    np.testing.assert_array_equal(np.sort(seen), src.starts("train"))
    dropped = src.loader("train", 500, seed=1, drop_last=True)
    assert len(dropped) == loader.n_windows // 500


def test_shuffle_and_masks_are_seeded_and_reproducible(src):
    a, b = src.loader("train", 128, seed=5), src.loader("train", 128, seed=5)
    c = src.loader("train", 128, seed=6)
    for (xa, ma, _), (xb, mb, _) in zip(a.batches(1), b.batches(1)):
        assert torch.equal(xa, xb) and torch.equal(ma, mb)
    assert torch.equal(a.batch(1, 3).mask, list(a.batches(1))[3].mask)  # random access = iteration
    assert torch.equal(list(a.batches(1, start=2))[0].X, a.batch(1, 2).X)
    assert not torch.equal(a.order(0), a.order(1))  # a new permutation every epoch
    assert not torch.equal(a.order(0), c.order(0))
    assert not torch.equal(a.batch(0, 0).mask, a.batch(1, 0).mask)
    # iterating the loader itself moves on one epoch per pass, like a DataLoader
    first, second = next(iter(a)), next(iter(a))
    assert torch.equal(first.X, a.batch(0, 0).X) and torch.equal(second.X, a.batch(1, 0).X)


def test_random_masks_hide_exactly_floor_ratio_of_valid_bars():
    feats, valid, split, bounds = _toy(seed=2)
    src = WindowSource(feats, valid, split, bounds, K, "cpu")
    for ratio in (0.15, 0.29, 0.5):
        loader = src.loader(None, 64, min_valid_fraction=0.4, mask_ratio=ratio, seed=0)
        n_valid_seen = set()
        for X, mask, v in loader.batches(0):
            assert not (mask & ~v).any()                       # never an invalid bar
            nv = v.sum(1).tolist()
            n_valid_seen |= set(nv)
            assert mask.sum(1).tolist() == [int(ratio * x) for x in nv]  # the old loader's int(ratio * n)
        assert len(n_valid_seen) > 3  # the test saw windows with different numbers of valid bars
    counts = torch.zeros(K)
    loader = src.loader("train", 256, min_valid_fraction=0.4, mask_ratio=0.5, seed=4)
    assert loader.n_windows > 200
    for _, mask, _ in loader.batches(0):
        counts += mask.sum(0)
    assert counts.min() > 0  # every position gets masked somewhere: masks are not a fixed pattern


def test_random_masks_are_uniform_among_the_valid_bars():
    """One window with 12 invalid bars, masked 4,000 times: each valid bar is masked with probability k / v."""
    from gpu_features.windows import WindowLoader

    feats = torch.arange(K * 10, dtype=torch.float32).view(K, 10)
    valid = torch.ones(K, dtype=torch.bool)
    valid[[0, 1, 2, 9, 20, 21, 22, 23, 40, 50, 62, 63]] = False
    loader = WindowLoader(feats, valid, np.zeros(4000, dtype=np.int64), K, 4000, shuffle=False, mask_ratio=0.3)
    X, mask, v = loader.batch(0, 0)
    nv = int(valid.sum())
    k = int(0.3 * nv)
    assert (mask.sum(1) == k).all() and not (mask & ~v).any()
    share = mask.sum(0)[valid].double() / 4000
    # Binomial(4000, p) per bar: 5 standard deviations, seeded (not flaky), and a fixed pattern would fail.
    p = k / nv
    assert (share - p).abs().max() < 5 * (p * (1 - p) / 4000) ** 0.5
    assert len({tuple(row) for row in mask[:50].tolist()}) == 50  # different subsets per window


def test_random_access_after_another_epoch_returns_the_same_batch(src):
    loader = src.loader("train", 64, seed=9)
    first = loader.batch(0, 3)
    list(loader.batches(1))[:1]
    again = loader.batch(0, 3)
    assert torch.equal(first.X, again.X) and torch.equal(first.mask, again.mask)


def test_gather_reads_each_window_from_the_features():
    from gpu_features.windows import WindowLoader

    feats = torch.randn(300, 10)
    valid = torch.rand(300) < 0.8
    loader = WindowLoader(feats, valid, np.arange(0, 300 - K + 1, 7), K, 16, shuffle=False)
    starts = torch.tensor([0, 5, 300 - K, 17])
    X, v = loader.gather(starts)
    for b, s in enumerate(starts.tolist()):
        assert torch.equal(X[b], feats[s:s + K]) and torch.equal(v[b], valid[s:s + K])


def test_patch_masks_are_contiguous_blocks(src):
    loader = src.loader("train", 256, mask="patch", patch_length=10, mask_ratio=0.15, seed=0)
    X, mask, v = loader.batch(0, 0)
    assert v.all()
    m = mask.numpy().astype(np.int8)
    edges = np.diff(np.pad(m, ((0, 0), (1, 1))), axis=1)
    for row in edges:
        run_starts, run_ends = np.flatnonzero(row == 1), np.flatnonzero(row == -1)
        lengths = run_ends - run_starts
        assert len(lengths) >= 1 and (lengths >= 10).all()
    per_window = mask.sum(1)
    assert per_window.max() <= 2 * 10 and per_window.min() >= 10  # round(0.15 * 105 / 10) = 2 blocks
    assert (per_window == 20).any() and (per_window < 20).any()  # blocks may overlap


def test_position_channel(src):
    X, _, _ = src.loader("val", 8, position=True).batch(0, 0)
    assert X.shape[-1] == 11
    np.testing.assert_allclose(X[3, :, 10].numpy(), np.arange(K) / (K - 1), rtol=0, atol=1e-7)


@pytest.mark.parametrize("kwargs, message", [
    ({"mask": "blocks"}, "unknown mask kind 'blocks'"),
    ({"mask_ratio": 1.0}, "mask_ratio must lie strictly between 0 and 1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ({"mask": "patch", "patch_length": 200}, "patch_length 200 is longer than the window"),
])
def test_bad_loader_options_are_refused(src, kwargs, message):
    with pytest.raises(WindowError, match=message):
        src.loader("val", **kwargs)


def test_derive_seed_gives_independent_streams():
    assert derive_seed(0, 1) == derive_seed(0, 1)
    assert len({derive_seed(0, 1), derive_seed(0, 2), derive_seed(1, 1), derive_seed(0, 1, 0)}) == 4
    assert 0 <= derive_seed(2**70, 3) < 2**63


# --- zero copy ----------------------------------------------------------------------------------


def test_cpu_source_shares_the_producers_memory():
    feats, valid, split, bounds = _toy()
    src = WindowSource(feats, valid, split, bounds, K, "cpu")
    assert src.features.data_ptr() == feats.__array_interface__["data"][0]
    feats[400, 3] = 123.0  # a write through the producer shows in the tensor: shared, not copied
    assert src.features[400, 3].item() == 123.0


def test_store_source_shares_the_loaded_array(store, src):
    assert src.features.data_ptr() == store.array("features").__array_interface__["data"][0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for torch")
def test_gpu_engine_cupy_features_reach_torch_without_a_copy():
    from gpu_features.engines import gpu as gpu_engine

    if not gpu_engine.available():
        pytest.skip(f"GPU engine: {gpu_engine.unavailable_reason()}")
    import cupy as cp
    from gpu_features import engines

    bars = synthetic.generate(20_000, 1, 3)
    run = engines.run(cp.asarray(bars.open), cp.asarray(bars.high), cp.asarray(bars.low), cp.asarray(bars.close),
                      engine="gpu")
    src = WindowSource(run.features, run.valid, None, None, K, "cuda")
    assert src.features.is_cuda and src.features.data_ptr() == run.features.data.ptr
    run.features[500, 2] = 7.0
    assert src.features[500, 2].item() == 7.0
    X, mask, v = src.loader("train", 1024, seed=0).batch(0, 0)
    assert X.is_cuda and mask.is_cuda and X.shape == (1024, K, 10)
    assert (mask.sum(1) == (v.sum(1).double() * 0.15).floor().long()).all()


# --- compatibility ------------------------------------------------------------------------------


def test_create_fast_dataloaders_on_a_store(store):
    train, val, test = create_fast_dataloaders(store.path, batch_size=100, mask_ratio=0.2, seed=1, stride=3,
                                               device="cpu")
    counts = store.manifest["splits"]["counts"]
    assert train.n_windows < counts["train"]["windows"] and len(train) == train.n_windows // 100  # drop_last
    assert len(val) == -(-val.n_windows // 100)
    X, mask, valid = next(iter(train))
    assert X.shape == (100, K, 10) and X.dtype == torch.float32
    assert mask.sum(1).tolist() == [int(0.2 * K)] * 100
    again = create_fast_dataloaders(store.path, batch_size=100, mask_ratio=0.2, seed=1, stride=3, device="cpu")[0]
    assert torch.equal(next(iter(again)).mask, mask)


def test_create_fast_dataloaders_refuses_a_missing_directory(tmp_path):
    with pytest.raises(WindowError, match="no such feature directory; build the demo store with `make precompute`"):
        create_fast_dataloaders(tmp_path / "nope")
    with pytest.raises(WindowError, match="neither a gpu-features store nor a seed-layout export"):
        create_fast_dataloaders(tmp_path)
