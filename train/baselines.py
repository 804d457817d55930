"""Two trivial predictors of masked bars, so a run shows whether the model learned anything.

- ``mean``: the per-feature mean of the valid bars of the training split.
- ``interp``: linear interpolation between the nearest unmasked valid bars
  of the same window; the nearest one alone at the window's edges; the
  training mean when a window has no such bar.

Both run on the batch's device with the same masks the model sees.
"""
from __future__ import annotations

import numpy as np
import torch


def train_mean(features: np.ndarray, valid: np.ndarray, split_ids: np.ndarray) -> np.ndarray:
    """``[D] float32`` mean of each feature over valid training bars (float64 sum)."""
    sel = np.asarray(valid, bool) & (np.asarray(split_ids) == 0)
    if not sel.any():
        return np.zeros(features.shape[1], dtype=np.float32)
    return features[sel].astype(np.float64).mean(axis=0).astype(np.float32)


def train_mean_on_device(features: torch.Tensor, valid: torch.Tensor, split_ids: np.ndarray,
                         chunk: int = 1 << 20) -> torch.Tensor:
    """``[D] float32`` :func:`train_mean` of device-resident ``features [n, D]`` / ``valid [n]``, on that device.

    Summed in float64 over chunks of bars, so no host copy of the features and no full-size
    float64 copy on the device are made.
    """
    n, D = features.shape
    sel = valid & torch.as_tensor(np.asarray(split_ids) == 0).to(features.device)
    total = torch.zeros(D, dtype=torch.float64, device=features.device)
    count = torch.zeros((), dtype=torch.float64, device=features.device)
    for a in range(0, n, chunk):
        s = sel[a:a + chunk]
        # where, not a product: a NaN at an invalid bar times 0 would still be NaN (train_mean selects)
        total += torch.where(s.unsqueeze(1), features[a:a + chunk].double(), 0.0).sum(dim=0)
        count += s.sum()
    return (total / count.clamp(min=1.0)).float()


def interpolate(X: torch.Tensor, known: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Fill every bar from the known bars of its window.

    Args:
        X: ``[B, K, D]`` values (only read at known bars).
        known: ``[B, K] bool`` bars whose values may be used (unmasked and valid).
        fallback: ``[D]`` value for windows without any known bar.

    Returns:
        ``[B, K, D]``: at bar t with known neighbours l <= t <= r, ``X[l] + (X[r] - X[l]) * (t - l) / (r - l)``
        (``X[t]`` itself when t is known); ``X[l]`` or ``X[r]`` when only one side exists.
    """
    B, K, D = X.shape
    t = torch.arange(K, device=X.device).expand(B, K)
    left = torch.where(known, t, -1).cummax(dim=1).values
    right = torch.where(known, t, K).flip(1).cummin(dim=1).values.flip(1)
    has_l, has_r = left >= 0, right < K
    xl = X.gather(1, left.clamp(min=0).unsqueeze(-1).expand(B, K, D))
    xr = X.gather(1, right.clamp(max=K - 1).unsqueeze(-1).expand(B, K, D))
    span = (right - left).clamp(min=1).to(X.dtype)
    w = ((t - left).to(X.dtype) / span).unsqueeze(-1)
    both = xl + (xr - xl) * w
    out = torch.where((has_l & has_r).unsqueeze(-1), both, torch.where(has_l.unsqueeze(-1), xl, xr))
    return torch.where((has_l | has_r).unsqueeze(-1), out, fallback.to(X.dtype).expand(B, K, D))


def predictions(X: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor, mean: torch.Tensor) -> dict:
    """``{"mean": [B,K,D], "interp": [B,K,D]}`` baseline predictions for a batch (D = ``len(mean)``)."""
    feats = X[..., :mean.shape[0]].float()
    return {"mean": mean.float().expand_as(feats), "interp": interpolate(feats, valid & ~mask, mean.float())}
