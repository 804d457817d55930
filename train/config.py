"""TrainConfig: everything that decides a training run, frozen, validated, saved whole in its checkpoint.

Two profiles fill what the user leaves unset: ``full`` (the reference
configuration: Jade 2x128 BiLSTM, B = 256, every window of every split) on a
GPU, and ``small`` on a CPU (hidden 64, a few epochs over an evenly spaced
subset of windows) so ``make train`` finishes in under 3 minutes on 2 cores.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from gpu_features.config import MAX_WINDOW_LENGTH, FrozenConfig
from gpu_features.errors import GpuFeaturesError

from .jade import JadeConfig


DEVICES = ("auto", "cpu", "cuda")
GRAPH_MODES = ("auto", "on", "off")
# Sizes beyond these only end in an allocation failure: refused up front, naming the option.
MAX_BATCH_SIZE = 1 << 20
MAX_HIDDEN_SIZE = 1 << 14
MAX_LAYERS = 64


class TrainError(GpuFeaturesError):
    """A run cannot start, resume or continue (bad option, bad run directory, non-finite loss)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig(FrozenConfig):
    """One training run.

    Attributes:
        epochs: planned epochs (the schedule's length; early stopping may end sooner).
        batch_size: windows per step (B).
        lr: peak AdamW learning rate, reached after the linear warm-up.
        weight_decay: AdamW decoupled weight decay.
        warmup_fraction: share of all planned steps spent warming up linearly.
        grad_clip: max global gradient norm.
        seed: drives shuffling, masks, dropout and the initial weights.
        device: ``auto``, ``cpu`` or ``cuda``.
        bf16: bf16 autocast (used on CUDA only).
        stride: keep every stride-th usable window.
        min_valid_fraction: least share of valid bars per window.
        max_train_windows, max_val_windows, max_final_windows: evenly spaced caps (None = all) on the
            windows of an epoch, of the per-epoch validation, and of the final val/test evaluation.
        mask, mask_ratio, patch_length: masking (see gpu_features.windows.WindowLoader).
        patience: epochs without a better validation MAE before stopping early.
        hidden_size, num_layers, dropout, position_channel: the Jade architecture.
        profile: ``small`` or ``full`` (recorded; defaults were filled from it).
        window_length: K of the training windows (None: the store's K). The features' bars-since
            normalizer stays the store's whatever K is chosen here.
        cuda_graphs: capture the training step once per epoch and replay it (``auto``: on CUDA in a
            single process; ``on``; ``off``, the default until the captured step has run on a GPU).
            See :mod:`train.step`.

    ``batch_size`` is per process (per GPU): under torchrun with N processes a step sees N x B windows.
    """

    _error = TrainError
    _prefix = "training option "

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    stride: int = 1
    min_valid_fraction: float = 1.0
    max_train_windows: int | None = None
    max_val_windows: int | None = None
    max_final_windows: int | None = None
    mask: str = "random"
    mask_ratio: float = 0.15
    patch_length: int = 10
    patience: int = 3
    hidden_size: int = 128
    num_layers: int = 2
    dropout: float = 0.1
    position_channel: bool = False
    profile: str = "full"
    window_length: int | None = None
    cuda_graphs: str = "off"  # opt-in until the captured step has run on a GPU (make test-gpu checks it)

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [("epochs", self.epochs >= 1, ">= 1"),
                  ("batch_size", 1 <= self.batch_size <= MAX_BATCH_SIZE, f"1 .. {MAX_BATCH_SIZE:,}"),
                  ("seed", 0 <= self.seed < 1 << 63, "0 .. 2**63 - 1"),
                  ("hidden_size", 1 <= self.hidden_size <= MAX_HIDDEN_SIZE, f"1 .. {MAX_HIDDEN_SIZE:,}"),
                  ("num_layers", 1 <= self.num_layers <= MAX_LAYERS, f"1 .. {MAX_LAYERS}"),
                  ("lr", 0 < self.lr < 10, "0 < lr < 10"),
                  ("weight_decay", 0 <= self.weight_decay < 10, "0 <= wd < 10"),
                  ("warmup_fraction", 0 <= self.warmup_fraction < 1, "0 <= f < 1"),
                  ("grad_clip", self.grad_clip > 0, "> 0"), ("stride", self.stride >= 1, ">= 1"),
                  ("min_valid_fraction", 0 <= self.min_valid_fraction <= 1, "0 .. 1"),
                  ("mask_ratio", 0 < self.mask_ratio < 1, "0 < ratio < 1"),
                  ("patch_length", 1 <= self.patch_length <= MAX_WINDOW_LENGTH, f"1 .. {MAX_WINDOW_LENGTH}"),
                  ("patience", self.patience >= 1, ">= 1"),
                  ("device", self.device in DEVICES, "auto, cpu or cuda"),
                  ("mask", self.mask in ("random", "patch"), "random or patch"),
                  ("profile", self.profile in ("small", "full"), "small or full"),
                  ("window_length", self.window_length is None or 2 <= self.window_length <= MAX_WINDOW_LENGTH,
                   f"2 .. {MAX_WINDOW_LENGTH} or unset"),
                  ("cuda_graphs", self.cuda_graphs in GRAPH_MODES, "auto, on or off")]
        for name in ("max_train_windows", "max_val_windows", "max_final_windows"):
            checks.append((name, getattr(self, name) is None or getattr(self, name) >= 1, ">= 1 or unset"))
        for name, ok, allowed in checks:
            self._check(ok, name, allowed)
        self.jade_config()  # architecture errors surface now, not after the store is loaded

    def jade_config(self, n_features: int = 10) -> JadeConfig:
        return JadeConfig(n_features=n_features, hidden_size=self.hidden_size, num_layers=self.num_layers,
                          dropout=self.dropout, position_channel=self.position_channel)


# What each profile sets when the user does not.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"epochs": 10, "batch_size": 256, "lr": 1e-3, "hidden_size": 128, "num_layers": 2,
             "max_train_windows": None, "max_val_windows": None, "max_final_windows": None},
    # 65k window-steps at ~900 windows/s on 2 cores plus ~10 s of evaluation: about 90 s in all.
    "small": {"epochs": 4, "batch_size": 128, "lr": 2e-3, "hidden_size": 64, "num_layers": 2,
              "max_train_windows": 16_384, "max_val_windows": 4_096, "max_final_windows": 8_192},
}


def make_config(profile: str, **overrides) -> TrainConfig:
    """A TrainConfig from a profile's defaults and the options the user set (``None`` = unset)."""
    if profile not in PROFILES:
        raise TrainError(f"unknown profile {profile!r}; choose small or full.")
    values = dict(PROFILES[profile])
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["profile"] = profile
    return TrainConfig.from_dict(values)


def auto_profile(device: str) -> str:
    """The profile ``--profile auto`` picks: ``full`` where ``device`` is (or ``auto`` finds) a GPU, else ``small``.

    Raises:
        TrainError: ``device`` cannot be used here (``cuda`` without a GPU).
    """
    from gpu_features.devices import resolve_device

    try:
        return "full" if resolve_device(device).type == "cuda" else "small"
    except GpuFeaturesError as err:
        raise TrainError(str(err)) from None
