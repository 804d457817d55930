"""The baselines a run reports beside Jade: interpolation and the training mean."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.train.runs import K  # noqa: E402
from train.baselines import (interpolate, predictions,  # noqa: E402
                             train_mean, train_mean_on_device)


def test_interpolation_baseline():
    X = torch.tensor([[0., 1., 2., 30., 4., 5., 6.]]).unsqueeze(-1)
    known = torch.tensor([[False, True, False, False, True, True, False]])
    out = interpolate(X, known, torch.tensor([-9.0]))[0, :, 0]
    # left edge: nearest known (1); bars 2 and 3 between 1 (t=1) and 4 (t=4); right edge: nearest (5)
    np.testing.assert_allclose(out.numpy(), [1, 1, 2, 3, 4, 5, 5], rtol=0, atol=1e-6)
    none = interpolate(X, torch.zeros(1, 7, dtype=torch.bool), torch.tensor([-9.0]))
    assert (none == -9).all()
    mean = torch.tensor([0.5] * 10)
    p = predictions(torch.randn(2, K, 11), torch.zeros(2, K, dtype=torch.bool), torch.ones(2, K, dtype=torch.bool),
                    mean)
    assert p["mean"].shape == p["interp"].shape == (2, K, 10)


def test_train_mean_uses_valid_training_bars_only():
    feats = np.arange(12, dtype=np.float32).reshape(6, 2)
    valid = np.array([1, 1, 0, 1, 1, 1], bool)
    split = np.array([0, 0, 0, 0, 1, 2], np.int8)
    np.testing.assert_allclose(train_mean(feats, valid, split), [(0 + 2 + 6) / 3, (1 + 3 + 7) / 3])
    feats[2] = np.nan  # what an invalid bar holds must not matter, on the device path either (chunks of 4 rows)
    got = train_mean_on_device(torch.from_numpy(feats), torch.from_numpy(valid), split, chunk=4)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), train_mean(feats, valid, split), rtol=1e-6)
