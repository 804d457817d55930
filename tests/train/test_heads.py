"""train/heads.py: the probe's torch heads and metrics, each checked against scikit-learn."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the heads run in torch (make test installs it)")
sklearn = pytest.importorskip("sklearn", reason="scikit-learn is the reference for the heads and metrics "
                                                "(make test installs it; GPU pods may lack it)")

from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.metrics import accuracy_score, log_loss as sk_log_loss, r2_score, roc_auc_score  # noqa: E402

from train import heads  # noqa: E402


def _data(n=600, d=5, seed=0, classes=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.arange(1, d + 1)
    z = X @ rng.normal(size=d) * 0.3 + rng.normal(size=n)
    y = (z > 0).astype(float) if classes else z
    return X, y


@pytest.mark.parametrize("lam", [1e-4, 1e-2, 1.0])
def test_logistic_equals_scikit_learn(lam):
    X, y = _data()
    mean, scale = X.mean(0), X.std(0)
    head = heads.fit_logistic(torch.tensor(X), torch.tensor(y), lam)
    ref = LogisticRegression(C=1 / (2 * lam * len(y)), tol=1e-12, max_iter=10_000).fit((X - mean) / scale, y)
    assert np.allclose(head.w.numpy(), ref.coef_[0], atol=1e-5) and abs(float(head.b) - ref.intercept_[0]) < 1e-5
    p = head.predict(torch.tensor(X)).numpy()
    assert np.allclose(p, ref.predict_proba((X - mean) / scale)[:, 1], atol=1e-6)


@pytest.mark.parametrize("lam", [1e-5, 1e-1, 10.0])
def test_ridge_equals_scikit_learn(lam):
    X, y = _data(classes=False)
    mean, scale = X.mean(0), X.std(0)
    head = heads.fit_ridge(torch.tensor(X), torch.tensor(y), lam)
    ref = Ridge(alpha=lam * len(y)).fit((X - mean) / scale, y)
    assert np.allclose(head.w.numpy(), ref.coef_, atol=1e-9) and abs(float(head.b) - ref.intercept_) < 1e-9


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.4).astype(float)
    p = np.round(np.clip(0.4 + 0.3 * (y - 0.4) + rng.normal(0, 0.2, 500), 0, 1), 2)  # rounded: ties in the ranks
    t = torch.tensor
    assert float(heads.auc(t(y), t(p))) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert float(heads.log_loss(t(y), t(p))) == pytest.approx(sk_log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)), abs=1e-12)
    assert float(heads.accuracy(t(y), t(p))) == accuracy_score(y, p > 0.5)
    v = rng.normal(size=500)
    f = v * 0.5 + rng.normal(size=500) * 0.1
    assert float(heads.r2(t(v), t(f))) == pytest.approx(r2_score(v, f), abs=1e-12)
    q = float(heads.qlike(t(v), t(f)))
    assert q == pytest.approx(np.mean(np.exp(2 * v) / np.exp(2 * f) - np.log(np.exp(2 * v) / np.exp(2 * f)) - 1))
    assert float(heads.qlike(t(v), t(v))) == 0.0


def test_the_head_is_tuned_on_validation():
    X, y = _data(n=400, d=40, seed=2)
    Xt, yt = torch.tensor(X[:200]), torch.tensor(y[:200])
    Xv, yv = torch.tensor(X[200:]), torch.tensor(y[200:])
    head, tried = heads.fit_head(Xt, yt, Xv, yv, logistic=True)
    assert set(tried) == set(heads.LAMBDAS) and tried[head.lam] == min(tried.values())
    assert tried[head.lam] == pytest.approx(float(heads.log_loss(yv, head.predict(Xv))))


def test_block_bootstrap_draws_circular_blocks_and_intervals_cover_the_value():
    idx = heads.block_bootstrap(23, 5, 50, seed=3)
    assert idx.shape == (50, 23)
    for row in idx:
        for a in range(0, 20, 5):  # every block is 5 consecutive samples, wrapping past the end
            assert ((row[a + 1:a + 5] - row[a:a + 4]) % 23 == 1).all()
    y = torch.tensor((np.random.default_rng(4).random(300) < 0.5).astype(float))
    p = torch.full((300,), 0.5)
    value, low, high = heads.interval(heads.log_loss, y, p, heads.block_bootstrap(300, 10, 200, seed=0))
    assert low <= value <= high and value == pytest.approx(math.log(2))
    v, lo, hi = heads.interval(heads.auc, y, torch.rand(300, generator=torch.Generator().manual_seed(0)).double(),
                               heads.block_bootstrap(300, 10, 400, seed=1))
    assert lo < 0.5 < hi  # noise predicts nothing
