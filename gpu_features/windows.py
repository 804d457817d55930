"""Windows: which K-bar stretches of a store a model may learn from, and device batches of them.

A window is never stored; it is the view ``F[s : s + K]`` of the per-bar
features. A start ``s`` is usable when all K bars lie in one series segment
and one split and (by default) all are valid.

The per-bar features go to the target device once (safetensors to torch, or
a GPU engine's CuPy arrays through DLPack without a copy); every batch is then
gathered and masked there::

    src = WindowSource.from_store("data/features/demo", device="cuda")
    loader = src.loader("train", batch_size=256, seed=0)
    for X, mask, valid in loader.batches(epoch=0):   # [B,K,10] f32, [B,K] bool, [B,K] bool
        ...

Shuffling and masks are pure functions of ``(seed, epoch, batch index)``, so a
run that resumes at an epoch boundary sees exactly the batches an
uninterrupted run would have seen. torch is imported lazily: the core package
imports without it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from .arrays import to_numpy
from .errors import GpuFeaturesError
from .splits import SPLIT_NAMES

MASK_KINDS = ("random", "patch")
# Streams of the seeded generators (the same seed drives independent streams).
_STREAM_SHUFFLE, _STREAM_MASK = 1, 2


class WindowError(GpuFeaturesError):
    """A window index or loader was asked for something it cannot do."""


def usable_starts(valid: np.ndarray, split: np.ndarray, segment_bounds: np.ndarray, K: int,
                  min_valid_fraction: float = 1.0) -> np.ndarray:
    """Mark the usable window starts.

    Args:
        valid: ``[n] bool`` per-bar validity.
        split: ``[n] int8`` split index of each bar.
        segment_bounds: ``[G + 1] int64``; segment ``g`` is bars ``bounds[g] : bounds[g + 1]``.
        K: window length.
        min_valid_fraction: least share of valid bars in a window (1.0 = all).

    Returns:
        ``[n] bool``: True at ``s`` when window ``[s, s + K)`` is usable.
    """
    n = len(valid)
    out = np.zeros(n, dtype=bool)
    if n < K:
        return out
    seg = np.zeros(n, dtype=np.int64)
    seg[np.asarray(segment_bounds[1:-1], dtype=np.int64)] = 1
    key = np.cumsum(seg) * 8 + np.asarray(split, dtype=np.int64)
    brk = np.ones(n, dtype=bool)
    brk[1:] = key[1:] != key[:-1]
    run_start = np.maximum.accumulate(np.where(brk, np.arange(n), 0))
    starts = np.arange(n - K + 1)
    same_run = run_start[starts + K - 1] <= starts
    need = int(np.ceil(min_valid_fraction * K - 1e-9))
    csum = np.concatenate([[0], np.cumsum(np.asarray(valid, dtype=np.int64))])
    enough = (csum[starts + K] - csum[starts]) >= need
    out[: n - K + 1] = same_run & enough
    return out


def split_window_starts(valid: np.ndarray, split_ids: np.ndarray, segment_bounds: np.ndarray, K: int,
                        split: str | None = None, min_valid_fraction: float = 1.0) -> np.ndarray:
    """``[w] int64`` sorted usable window starts, of one split (``train``/``val``/``test``) or of all.

    Args as :func:`usable_starts`; ``split_ids`` is ``[n] int8`` (0 train, 1 val, 2 test).
    """
    usable = usable_starts(valid, split_ids, segment_bounds, K, min_valid_fraction)
    if split is not None:
        if split not in SPLIT_NAMES:
            raise WindowError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_NAMES)}.")
        usable &= split_ids == SPLIT_NAMES.index(split)
    return np.flatnonzero(usable)


def stride_starts(starts: np.ndarray, stride: int) -> np.ndarray:
    """Thin sorted usable starts to every ``stride``-th bar.

    Within each run of consecutive usable starts the first is kept, then every
    ``stride``-th bar after it, so a gap (an invalid bar, a split or series
    boundary) restarts the stride instead of shifting every later window.

    Args:
        starts: ``[w] int64`` sorted usable starts.
        stride: bars between kept starts (1 keeps all).

    Returns:
        ``[w'] int64`` kept starts.
    """
    _check_int("stride", stride, 1)
    starts = np.asarray(starts, dtype=np.int64)
    if stride == 1 or len(starts) == 0:
        return starts
    new_run = np.ones(len(starts), dtype=bool)
    new_run[1:] = np.diff(starts) != 1
    run_first = np.maximum.accumulate(np.where(new_run, starts, np.iinfo(np.int64).min))
    return starts[(starts - run_first) % stride == 0]


def evenly_spaced(starts: np.ndarray, max_windows: int | None) -> np.ndarray:
    """At most ``max_windows`` of ``starts``, evenly spaced over the whole range (deterministic)."""
    if max_windows is None:
        return starts
    _check_int("max_windows", max_windows, 1)
    if len(starts) <= max_windows:
        return starts
    pick = np.unique(np.linspace(0, len(starts) - 1, max_windows).round().astype(np.int64))
    return starts[pick]


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the stream ``keys`` of ``seed`` (independent streams from one user seed).

    The words are ``seed`` (as two 32-bit words), the number of keys, then the keys: numpy's
    SeedSequence treats trailing zero words as absent, and the count keeps ``(s, 1)`` and ``(s, 1, 0)`` apart.
    """
    seed = int(seed) & (2**63 - 1)
    words = [seed & 0xFFFFFFFF, seed >> 32, len(keys), *[int(k) & 0xFFFFFFFF for k in keys]]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise WindowError(f"{name} must be an integer >= {low}, got {value!r}.")


def resolve_device(device=None):
    """``None``/``"auto"`` -> cuda when torch sees a GPU, else cpu; anything else as given."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WindowError(f"device {device} was asked for, but torch sees no CUDA device here; use --device cpu.")
    return device


def as_device_tensor(array, device):
    """A torch tensor of ``array`` on ``device``, without a copy whenever the producer's memory can be shared.

    numpy arrays are wrapped with ``torch.from_numpy`` and CuPy (or any DLPack
    producer) arrays with ``torch.from_dlpack``; both share the producer's
    memory, and a copy happens only when ``device`` differs from where the data lives.
    """
    import torch

    if isinstance(array, torch.Tensor):
        t = array
    elif isinstance(array, np.ndarray):
        if not array.flags.writeable:  # torch refuses read-only memory (e.g. np.load with mmap_mode='r')
            array = array.copy()
        t = torch.from_numpy(np.ascontiguousarray(array))
    elif hasattr(array, "__dlpack__"):
        try:
            t = torch.from_dlpack(array)
        except (RuntimeError, TypeError, BufferError):
            # Older DLPack stacks cannot pass bool; go through uint8 (a copy of a small mask only).
            t = torch.from_dlpack(array.view("uint8")).bool() if str(getattr(array, "dtype", "")) == "bool" else None
            if t is None:
                raise
    else:
        t = torch.as_tensor(np.asarray(array))
    return t if _same_device(t.device, torch.device(device)) else t.to(device)


def _same_device(have, want) -> bool:
    """``cuda`` (the current device) matches ``cuda:0`` when 0 is current: no copy for a tensor already there."""
    if have.type != want.type:
        return False
    if want.index is None and have.type == "cuda":
        import torch

        return have.index == torch.cuda.current_device()
    return want.index is None or have.index == want.index


def _host(x, dtype) -> np.ndarray:
    """A numpy copy of a small index array given as numpy, CuPy or torch."""
    if hasattr(x, "cpu"):        # torch
        x = x.cpu().numpy()
    return to_numpy(x).astype(dtype, copy=False)


class Batch(NamedTuple):
    """One batch, the old loader's format.

    Attributes:
        X: ``[B, K, 10] float32`` features (``[B, K, 11]`` with the position channel t / (K - 1) last).
        mask: ``[B, K] bool``, True where the model must reconstruct (only ever at valid bars).
        valid: ``[B, K] bool`` per-bar validity.
    """

    X: "object"
    mask: "object"
    valid: "object"


class WindowSource:
    """Per-bar features resident on one device, and what decides which windows are usable.

    Args:
        features: ``[n, 10] float32`` (numpy, CuPy or torch); shared, not copied, when already on ``device``.
        valid: ``[n] bool``.
        split_ids: ``[n] int8`` split of each bar (0 train, 1 val, 2 test); None puts every bar in train.
        segment_bounds: ``[G + 1] int64`` series segments; None means one segment.
        window_length: K.
        device: ``"cpu"``, ``"cuda"``, a torch.device, or None/``"auto"``.
    """

    def __init__(self, features, valid, split_ids=None, segment_bounds=None, window_length: int = 105,
                 device=None):
        self.device = resolve_device(device)
        self.features = as_device_tensor(features, self.device)
        self.valid = as_device_tensor(valid, self.device)
        n = self.features.shape[0]
        if self.features.ndim != 2 or tuple(self.valid.shape) != (n,):
            raise WindowError(f"features must be [n, D] and valid [n], got {tuple(self.features.shape)} and "
                              f"{tuple(self.valid.shape)}.")
        if str(self.features.dtype) != "torch.float32" or str(self.valid.dtype) != "torch.bool":
            raise WindowError(f"features must be float32 and valid bool, got {self.features.dtype} and "
                              f"{self.valid.dtype}.")
        _check_int("window_length", window_length, 2)
        self.window_length = int(window_length)
        self.split_ids = np.zeros(n, dtype=np.int8) if split_ids is None else _host(split_ids, np.int8)
        self.segment_bounds = np.array([0, n], dtype=np.int64) if segment_bounds is None else \
            _host(segment_bounds, np.int64)
        if len(self.split_ids) != n or self.segment_bounds[0] != 0 or self.segment_bounds[-1] != n:
            raise WindowError(f"split_ids must have n = {n} entries and segment_bounds run from 0 to {n}.")
        self._valid_host = None

    @classmethod
    def from_store(cls, store, device=None) -> "WindowSource":
        """Load a store's per-bar features onto ``device`` once (a path or an opened :class:`Store`)."""
        from .store import Store, open_store

        store = store if isinstance(store, Store) else open_store(store)
        dev = resolve_device(device)
        src = cls(store.features(str(dev)), store.valid(str(dev)), store.split_ids(), store.segment_bounds(),
                  store.config.window_length, dev)
        src._valid_host = store.array("valid")
        return src

    @property
    def n_bars(self) -> int:
        return int(self.features.shape[0])

    def _valid_np(self) -> np.ndarray:
        if self._valid_host is None:
            self._valid_host = self.valid.cpu().numpy()
        return self._valid_host

    def starts(self, split: str | None = "train", stride: int = 1, min_valid_fraction: float = 1.0,
               max_windows: int | None = None) -> np.ndarray:
        """The window index of a split.

        Args:
            split: ``train``, ``val``, ``test`` or None (all splits).
            stride: keep every ``stride``-th start of each run of usable starts (:func:`stride_starts`).
            min_valid_fraction: least share of valid bars in a window (1.0 = all K bars valid).
            max_windows: keep at most this many, evenly spaced (:func:`evenly_spaced`).

        Returns:
            ``[w] int64`` sorted window starts; every window lies in one segment and one split.
        """
        if not (0.0 <= float(min_valid_fraction) <= 1.0):
            raise WindowError(f"min_valid_fraction must lie in [0, 1], got {min_valid_fraction!r}.")
        starts = split_window_starts(self._valid_np(), self.split_ids, self.segment_bounds, self.window_length,
                                     split, min_valid_fraction)
        return evenly_spaced(stride_starts(starts, stride), max_windows)

    def loader(self, split: str = "train", batch_size: int = 256, *, stride: int = 1,
               min_valid_fraction: float = 1.0, max_windows: int | None = None, shuffle: bool | None = None,
               drop_last: bool = False, **mask_options) -> "WindowLoader":
        """A :class:`WindowLoader` over the windows of ``split`` (shuffled by default for train only)."""
        starts = self.starts(split, stride, min_valid_fraction, max_windows)
        return WindowLoader(self.features, self.valid, starts, self.window_length, batch_size,
                            shuffle=(split == "train") if shuffle is None else shuffle, drop_last=drop_last,
                            **mask_options)


class WindowLoader:
    """Batches of windows gathered, masked and shuffled on the features' device.

    Args:
        features: ``[n, D] float32`` torch tensor (on the target device).
        valid: ``[n] bool`` torch tensor (same device).
        starts: ``[w] int64`` window starts (numpy or torch).
        window_length: K.
        batch_size: B.
        shuffle: a seeded permutation per epoch (else windows in ``starts`` order).
        drop_last: leave out a last partial batch.
        mask: ``random`` (exactly ``floor(mask_ratio * valid bars)`` per window, as the old
            loader did) or ``patch`` (contiguous blocks of ``patch_length`` bars).
        mask_ratio: share of bars to mask, in (0, 1).
        patch_length: block length of ``patch`` masks.
        position: append the channel t / (K - 1).
        seed: the generator seed; None draws one from the OS (not reproducible).
    """

    def __init__(self, features, valid, starts, window_length: int, batch_size: int = 256, *,
                 shuffle: bool = True, drop_last: bool = False, mask: str = "random", mask_ratio: float = 0.15,
                 patch_length: int = 10, position: bool = False, seed: int | None = 0):
        import torch

        _check_int("batch_size", batch_size, 1)
        _check_int("window_length", window_length, 2)
        if mask not in MASK_KINDS:
            raise WindowError(f"unknown mask kind {mask!r}; choose one of {', '.join(MASK_KINDS)}.")
        if not (0.0 < float(mask_ratio) < 1.0):
            raise WindowError(f"mask_ratio must lie strictly between 0 and 1, got {mask_ratio!r}.")
        _check_int("patch_length", patch_length, 1)
        if mask == "patch" and patch_length > window_length:
            raise WindowError(f"patch_length {patch_length} is longer than the window ({window_length} bars).")
        self.features, self.valid = features, valid
        self.device = features.device
        self.K, self.batch_size = int(window_length), int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.mask_kind, self.mask_ratio, self.patch_length = mask, float(mask_ratio), int(patch_length)
        self.position = bool(position)
        self.seed = int.from_bytes(os.urandom(8), "little") >> 1 if seed is None else int(seed)
        self.starts = torch.as_tensor(_host(starts, np.int64)).to(self.device)
        if len(self.starts) and (int(self.starts.min()) < 0 or int(self.starts.max()) + self.K > features.shape[0]):
            raise WindowError(f"window starts must lie in 0 .. {features.shape[0] - self.K}.")
        self._offsets = torch.arange(self.K, device=self.device)
        # floor(ratio * v) computed in float64 exactly as the old loader's int(ratio * v), for v = 0 .. K.
        self._n_mask = torch.tensor([int(self.mask_ratio * v) for v in range(self.K + 1)], device=self.device)
        self._n_patches = max(1, int(self.mask_ratio * self.K / self.patch_length + 0.5))
        self._position = (self._offsets.to(torch.float32) / (self.K - 1)).view(1, self.K, 1)
        self._gen = torch.Generator(device=self.device)
        self._epoch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.starts)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def n_windows(self) -> int:
        return int(len(self.starts))

    def order(self, epoch: int):
        """``[w] int64`` torch tensor: the window starts in the order epoch ``epoch`` visits them."""
        import torch

        if not self.shuffle:
            return self.starts
        self._gen.manual_seed(derive_seed(self.seed, _STREAM_SHUFFLE, epoch))
        perm = torch.randperm(len(self.starts), generator=self._gen, device=self.device)
        return self.starts[perm]

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` from batch index ``start`` on; each window exactly once per epoch."""
        order = self.order(epoch)
        for i in range(start, len(self)):
            yield self._make(order[i * self.batch_size:(i + 1) * self.batch_size], epoch, i)

    def batch(self, epoch: int, index: int) -> Batch:
        """Batch ``index`` of epoch ``epoch`` (the same one :meth:`batches` yields)."""
        if not 0 <= index < len(self):
            raise WindowError(f"batch index {index} is outside 0 .. {len(self) - 1}.")
        return self._make(self.order(epoch)[index * self.batch_size:(index + 1) * self.batch_size], epoch, index)

    def __iter__(self) -> Iterator[Batch]:
        """One epoch; each new iteration is the next epoch (new order and masks), like a DataLoader."""
        epoch, self._epoch = self._epoch, self._epoch + 1
        return self.batches(epoch)

    def gather(self, starts):
        """``X [B, K, D]`` and ``valid [B, K]`` of the windows at ``starts`` ``[B]`` (a device gather)."""
        idx = (starts[:, None] + self._offsets).reshape(-1)
        B = starts.shape[0]
        return (self.features.index_select(0, idx).view(B, self.K, -1),
                self.valid.index_select(0, idx).view(B, self.K))

    def _make(self, starts, epoch: int, index: int) -> Batch:
        import torch

        X, valid = self.gather(starts)
        self._gen.manual_seed(derive_seed(self.seed, _STREAM_MASK, epoch, index))
        mask = self._random_mask(valid) if self.mask_kind == "random" else self._patch_mask(valid)
        if self.position:
            X = torch.cat([X, self._position.expand(X.shape[0], self.K, 1)], dim=-1)
        return Batch(X, mask, valid)

    def _random_mask(self, valid):
        """Exactly ``floor(ratio * valid bars)`` masked bars per window, uniformly among the valid ones."""
        import torch

        B = valid.shape[0]
        u = torch.rand((B, self.K), generator=self._gen, device=self.device)
        u = u.masked_fill(~valid, 2.0)  # invalid bars sort last and are never picked
        order = u.argsort(dim=1)
        rank = torch.empty_like(order).scatter_(1, order, self._offsets.expand(B, self.K))
        return rank < self._n_mask[valid.sum(dim=1)][:, None]

    def _patch_mask(self, valid):
        """``round(ratio * K / patch_length)`` blocks of ``patch_length`` bars at uniform starts (they may overlap)."""
        import torch

        B = valid.shape[0]
        first = torch.randint(0, self.K - self.patch_length + 1, (B, self._n_patches, 1), generator=self._gen,
                              device=self.device)
        t = self._offsets.view(1, 1, self.K)
        return ((t >= first) & (t < first + self.patch_length)).any(dim=1) & valid


# --- compatibility with the old pipeline -------------------------------------------------------


SEED_FILES = ("features_10d.npy", "valid_mask.npy", "metadata.json", "splits.json")


def _seed_layout_source(path: Path, device) -> WindowSource:
    """A seed-layout export (``features_10d.npy [N,K,10]`` ...) as a source whose segments are the N windows."""
    missing = [f for f in SEED_FILES if not (path / f).is_file()]
    if missing:
        raise WindowError(f"{path}: no {', '.join(missing)}, so this is neither a gpu-features store nor a "
                          "seed-layout export; build one with `make precompute`.")
    feats = np.load(path / "features_10d.npy", mmap_mode="r", allow_pickle=False)
    valid = np.load(path / "valid_mask.npy", mmap_mode="r", allow_pickle=False)
    splits = json.loads((path / "splits.json").read_text())
    if feats.ndim != 3 or valid.shape != feats.shape[:2]:
        raise WindowError(f"{path}: features_10d.npy {feats.shape} and valid_mask.npy {valid.shape} do not "
                          "describe [N, K, D] windows; re-export them.")
    N, K, D = feats.shape
    ids = np.full(N, -1, dtype=np.int8)
    for k, name in enumerate(SPLIT_NAMES):
        a, b = splits[f"{name}_indices"]
        ids[a:b] = k
    return WindowSource(np.asarray(feats, dtype=np.float32).reshape(N * K, D), np.asarray(valid).reshape(N * K),
                        np.repeat(ids, K), np.arange(N + 1, dtype=np.int64) * K, K, device)


def create_fast_dataloaders(feature_dir, batch_size: int = 256, mask_ratio: float = 0.15, seed: int | None = None,
                            stride: int | None = None, device=None):
    """The old pipeline's entry point, backed by device-resident windows.

    Args:
        feature_dir: a gpu-features store, or a seed-layout export (``gpu-features export --layout seed``).
        batch_size: windows per batch.
        mask_ratio: share of valid bars masked per window (``random`` masks, as before).
        seed: seed of shuffling and masks (None: a fresh one, as the old loader did).
        stride: keep every ``stride``-th window (None = 1).
        device: where batches live (None: cuda when available, else cpu).

    Returns:
        ``(train, val, test)`` loaders; iterating one yields ``(X [B,K,10] float32, mask [B,K] bool,
        valid [B,K] bool)`` on ``device``, a new shuffle and new masks each pass. Train is shuffled and
        drops a last partial batch, as the old train loader did; val and test keep order and every window.
    """
    path = Path(feature_dir)
    if (path / "manifest.json").is_file():
        src, fraction = WindowSource.from_store(path, device), 1.0
    elif path.is_dir():
        src, fraction = _seed_layout_source(path, device), 0.0  # the old arrays kept every window
    else:
        raise WindowError(f"{path}: no such feature directory; build the demo store with `make precompute`.")
    seed = int.from_bytes(os.urandom(8), "little") >> 1 if seed is None else int(seed)
    stride = 1 if stride is None else stride
    return tuple(src.loader(name, batch_size, stride=stride, min_valid_fraction=fraction, drop_last=name == "train",
                            mask_ratio=mask_ratio, seed=derive_seed(seed, k))
                 for k, name in enumerate(SPLIT_NAMES))
