"""The probe's heads and metrics, in torch on the embeddings' device (no host round trip, no scikit-learn
needed at run time; the tests check every one against scikit-learn).

Heads (inputs standardised with the training split's mean and deviation):

- :func:`fit_logistic`: L2-regularised logistic regression, ``mean log-loss + lam * ||w||^2`` (the
  intercept is not penalised), fitted by L-BFGS in float64; scikit-learn's ``LogisticRegression(C)``
  with ``C = 1 / (2 * lam * n)``.
- :func:`fit_ridge`: ``mean squared error + lam * ||w||^2``, solved in closed form in float64;
  scikit-learn's ``Ridge(alpha = lam * n)``.

:func:`fit_head` fits one per value of :data:`LAMBDAS` on the training split and keeps the one with
the best validation loss (log-loss, mean squared error).

Metrics: AUC (Mann-Whitney with mid-ranks for ties), log-loss, accuracy at 0.5, R^2 (1 - SSE / SST
around the evaluated split's own mean, as ``r2_score``) and QLIKE for a log-volatility forecast
``f`` of a log realized volatility ``y``: ``mean(exp(2 (y - f)) - 2 (y - f) - 1)`` (0 for a perfect
forecast; Patton 2011's loss on variances ``exp(2 y)`` against ``exp(2 f)``).

Intervals: :func:`block_bootstrap`, a circular block bootstrap over samples in time order.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

LAMBDAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] in the log-loss, as scikit-learn's (float64) clip


class Head(NamedTuple):
    """A fitted linear head: ``predict(Z) = ((Z - mean) / scale) @ w + b`` (a logit or a value)."""

    w: object
    b: object
    mean: object
    scale: object
    lam: float
    logistic: bool

    def predict(self, Z):
        """``[w]`` float64: a probability (logistic) or a value (ridge) for each row of ``Z [w, d]``."""
        import torch

        out = ((Z.double() - self.mean) / self.scale) @ self.w + self.b
        return torch.sigmoid(out) if self.logistic else out


def standardizer(Z):
    """``(mean [d], scale [d])`` float64 of ``Z [n, d]``; a constant column gets scale 1."""
    Z = Z.double()
    mean = Z.mean(dim=0)
    scale = Z.std(dim=0, unbiased=False)
    return mean, scale.masked_fill(scale < 1e-12, 1.0)


def fit_logistic(Z, y, lam: float, mean=None, scale=None, max_iter: int = 200) -> Head:
    """L2 logistic regression on ``Z [n, d]``, labels ``y [n]`` in {0, 1} (see the module doc)."""
    import torch

    if mean is None:
        mean, scale = standardizer(Z)
    X = (Z.double() - mean) / scale
    y = y.double()
    n, d = X.shape
    w = torch.zeros(d, dtype=torch.float64, device=X.device, requires_grad=True)
    p0 = y.mean().clamp(EPS, 1 - EPS)
    b = torch.log(p0 / (1 - p0)).clone().detach().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        z = X @ w + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y) + lam * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return Head(w.detach(), b.detach(), mean, scale, lam, True)


def fit_ridge(Z, y, lam: float, mean=None, scale=None) -> Head:
    """Ridge regression on ``Z [n, d]``, targets ``y [n]`` (see the module doc), in closed form."""
    import torch

    if mean is None:
        mean, scale = standardizer(Z)
    X = (Z.double() - mean) / scale
    y = y.double()
    n, d = X.shape
    xm, ym = X.mean(dim=0), y.mean()
    Xc = X - xm
    A = Xc.T @ Xc + lam * n * torch.eye(d, dtype=torch.float64, device=X.device)
    w = torch.linalg.solve(A, Xc.T @ (y - ym))
    return Head(w, ym - xm @ w, mean, scale, lam, False)


def fit_head(Z_train, y_train, Z_val, y_val, logistic: bool) -> tuple[Head, dict]:
    """The head over :data:`LAMBDAS` with the best validation loss; ``(head, {lam: validation loss})``."""
    mean, scale = standardizer(Z_train)
    fit = fit_logistic if logistic else fit_ridge
    loss = log_loss if logistic else mse
    best, tried = None, {}
    for lam in LAMBDAS:
        head = fit(Z_train, y_train, lam, mean, scale)
        tried[lam] = float(loss(y_val, head.predict(Z_val)))
        if best is None or tried[lam] < tried[best.lam]:
            best = head
    return best, tried


# --- metrics: (y [n], prediction [n]) -> 0-d float64 tensor -------------------------------------------------


def _mid_ranks(x):
    """1-based ranks of ``x [n]`` with ties given their average rank."""
    import torch

    order = torch.argsort(x)
    xs = x[order]
    new = torch.ones(len(xs), dtype=torch.bool, device=x.device)
    new[1:] = xs[1:] != xs[:-1]
    group = torch.cumsum(new.long(), 0) - 1
    pos = torch.arange(1, len(xs) + 1, dtype=torch.float64, device=x.device)
    sums = torch.zeros(int(group[-1]) + 1, dtype=torch.float64, device=x.device).index_add_(0, group, pos)
    counts = torch.bincount(group).double()
    ranks = torch.empty(len(xs), dtype=torch.float64, device=x.device)
    ranks[order] = (sums / counts)[group]
    return ranks


def auc(y, p):
    """Area under the ROC curve (NaN when one class is absent)."""
    y = y.double()
    pos = y.sum()
    neg = len(y) - pos
    r = _mid_ranks(p.double())
    return ((r * y).sum() - pos * (pos + 1) / 2) / (pos * neg)


def log_loss(y, p):
    p = p.double().clamp(EPS, 1 - EPS)
    y = y.double()
    return -(y * p.log() + (1 - y) * (1 - p).log()).mean()


def accuracy(y, p):
    return ((p.double() > 0.5).double() == y.double()).double().mean()


def mse(y, f):
    return ((y.double() - f.double()) ** 2).mean()


def r2(y, f):
    y = y.double()
    return 1 - ((y - f.double()) ** 2).sum() / ((y - y.mean()) ** 2).sum()


def qlike(y, f):
    d = 2 * (y.double() - f.double())
    return (d.exp() - d - 1).mean()


CLASSIFICATION = {"auc": auc, "log_loss": log_loss, "accuracy": accuracy}
REGRESSION = {"r2": r2, "qlike": qlike}


def block_bootstrap(n: int, block: int, resamples: int, seed: int, device=None):
    """``[resamples, n] int64`` circular block bootstrap indices of ``n`` samples in time order: each row
    strings together blocks of ``block`` consecutive samples (wrapping at the end) from uniform starts."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    blocks = math.ceil(n / block)
    starts = torch.randint(0, n, (resamples, blocks), generator=gen)
    idx = (starts.unsqueeze(-1) + torch.arange(block)).reshape(resamples, -1)[:, :n] % n
    return idx.to(device) if device is not None else idx


def interval(metric: Callable, y, pred, idx, level: float = 0.95) -> tuple[float, float, float]:
    """``(value, low, high)``: the metric on all samples and the central ``level`` percentile interval of
    the metric over the bootstrap rows ``idx [R, n]`` (rows where it is undefined are left out)."""
    import torch

    value = float(metric(y, pred))
    reps = torch.stack([metric(y[row], pred[row]) for row in idx])
    reps = reps[torch.isfinite(reps)]
    if len(reps) == 0:
        return value, math.nan, math.nan
    q = torch.quantile(reps, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64,
                                          device=reps.device))
    return value, float(q[0]), float(q[1])


__all__ = ["CLASSIFICATION", "Head", "LAMBDAS", "REGRESSION", "accuracy", "auc", "block_bootstrap", "fit_head",
           "fit_logistic", "fit_ridge", "interval", "log_loss", "mse", "qlike", "r2", "standardizer"]
