"""Device batches of windows: the per-bar features on one device, gathered and masked there.

Which windows are usable is decided by :mod:`gpu_features.window_index`.

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

Several stores make one dataset (:meth:`WindowSource.from_stores`): their
per-bar arrays are concatenated and every store boundary is a segment
boundary, so no window crosses a store. Several processes (data-parallel
ranks) share one epoch through ``rank`` / ``world_size`` of
:class:`WindowLoader`: every rank draws the same permutation and takes every
``world_size``-th batch of it.
"""
from __future__ import annotations

import os
from typing import Iterator, NamedTuple

import numpy as np

from .devices import as_device_tensor, host_array, resolve_device
from .errors import WindowError
from .store import Store, open_store
from .window_index import check_int, evenly_spaced, split_window_starts, stride_starts

__all__ = ["Batch", "WindowError", "WindowLoader", "WindowSource", "derive_seed", "resolve_device"]

MASK_KINDS = ("random", "patch")
# Streams of the seeded generators (the same seed drives independent streams).
_STREAM_SHUFFLE, _STREAM_MASK = 1, 2


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed for the stream ``keys`` of ``seed`` (independent streams from one user seed).

    The words are ``seed`` (as two 32-bit words), the number of keys, then the keys: numpy's
    SeedSequence treats trailing zero words as absent, and the count keeps ``(s, 1)`` and ``(s, 1, 0)`` apart.
    """
    seed = int(seed) & (2**63 - 1)
    words = [seed & 0xFFFFFFFF, seed >> 32, len(keys), *[int(k) & 0xFFFFFFFF for k in keys]]
    state = np.random.SeedSequence(words).generate_state(2, np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & (2**63 - 1)


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
        check_int("window_length", window_length, 2)
        self.window_length = int(window_length)
        self.split_ids = np.zeros(n, dtype=np.int8) if split_ids is None else host_array(split_ids, np.int8)
        self.segment_bounds = np.array([0, n], dtype=np.int64) if segment_bounds is None else \
            host_array(segment_bounds, np.int64)
        if len(self.split_ids) != n or self.segment_bounds[0] != 0 or self.segment_bounds[-1] != n:
            raise WindowError(f"split_ids must have n = {n} entries and segment_bounds run from 0 to {n}.")
        self._valid_host = None
        self.store_bounds = np.array([0, n], dtype=np.int64)

    @classmethod
    def from_store(cls, store, device=None, window_length: int | None = None) -> "WindowSource":
        """Load a store's per-bar features onto ``device`` once (a path or an opened :class:`Store`).

        ``window_length`` (default: the store's K) picks windows of another length from the same
        per-bar features; the bars-since normalizer inside the features stays the store's.
        """
        store = store if isinstance(store, Store) else open_store(store)
        dev = resolve_device(device)
        K = store.config.window_length if window_length is None else window_length
        src = cls(store.features(str(dev)), store.valid(str(dev)), store.split_ids(), store.segment_bounds(),
                  K, dev)
        src._valid_host = store.array("valid")
        src.store_bounds = np.array([0, store.n_bars], dtype=np.int64)
        return src

    @classmethod
    def from_stores(cls, stores, device=None, window_length: int | None = None) -> "WindowSource":
        """One dataset of several stores (paths or opened :class:`Store` objects), on ``device`` once.

        The stores' per-bar arrays are concatenated on the host (one copy), then moved to the
        device; each store's segments stay segments, so a window never crosses a store, series,
        segment or split boundary. ``store_bounds`` ``[S + 1] int64`` says where each store's bars lie.

        Raises:
            WindowError: no stores; stores built with different feature configs; several stores
                whose splits are fractions of their own bars (combining them needs split dates).
        """
        stores = [s if isinstance(s, Store) else open_store(s) for s in stores]
        if not stores:
            raise WindowError("a dataset needs at least one store.")
        if len(stores) == 1:
            return cls.from_store(stores[0], device, window_length)
        check_combinable(stores)
        dev = resolve_device(device)
        n = sum(s.n_bars for s in stores)
        first = stores[0]
        features = np.empty((n, len(first.feature_names)), dtype=np.float32)
        valid = np.empty(n, dtype=bool)
        split_ids = np.empty(n, dtype=np.int8)
        bounds, store_bounds, at = [], [0], 0
        for st in stores:
            m = st.n_bars
            features[at:at + m] = st.array("features")
            valid[at:at + m] = st.array("valid")
            split_ids[at:at + m] = st.split_ids()
            bounds.append(st.segment_bounds()[:-1] + at)
            at += m
            store_bounds.append(at)
        seg = np.unique(np.concatenate(bounds + [np.array([n], dtype=np.int64)]))
        K = first.config.window_length if window_length is None else window_length
        src = cls(features, valid, split_ids, seg, K, dev)
        src._valid_host = valid
        src.store_bounds = np.array(store_bounds, dtype=np.int64)
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

    def gather(self, starts):
        """``X [B, K, D]`` and ``valid [B, K]`` of the windows at ``starts`` (``[B] int64`` torch, on the device),
        unmasked: what embedding and probing read (training batches come from :class:`WindowLoader`)."""
        import torch

        idx = starts.unsqueeze(1) + torch.arange(self.window_length, device=starts.device)
        return self.features[idx], self.valid[idx]

    def loader(self, split: str = "train", batch_size: int = 256, *, stride: int = 1,
               min_valid_fraction: float = 1.0, max_windows: int | None = None, shuffle: bool | None = None,
               drop_last: bool = False, **options) -> "WindowLoader":
        """A :class:`WindowLoader` over the windows of ``split`` (shuffled by default for train only).

        ``options``: masking, ``position``, ``seed`` and the rank sharding (``rank``, ``world_size``, ``pad``).
        """
        starts = self.starts(split, stride, min_valid_fraction, max_windows)
        return WindowLoader(self.features, self.valid, starts, self.window_length, batch_size,
                            shuffle=(split == "train") if shuffle is None else shuffle, drop_last=drop_last,
                            **options)


def check_combinable(stores) -> None:
    """Refuse stores that cannot form one dataset (different feature configs, or per-store fractional splits)."""
    first = stores[0]
    for st in stores[1:]:
        if st.config != first.config:
            a, b = first.config.to_dict(), st.config.to_dict()
            diff = ", ".join(f"{k} {b[k]!r} (vs {a[k]!r})" for k in a if a[k] != b[k])
            raise WindowError(f"{st.path}: built with other feature settings than {first.path} ({diff}); a dataset "
                              "combines stores of one feature config; rebuild one of them with the other's settings.")
    for st in stores:
        if st.splits["method"] != "dates":
            raise WindowError(f"{st.path}: its splits are fractions of its own bars, so combined with other stores "
                              "one store's test period could lie inside another's training period; rebuild the "
                              "stores with the same --split-dates to train on them together.")
    dates = {tuple(st.splits["dates"]) for st in stores}
    if len(dates) > 1:
        raise WindowError(f"the stores split at different dates ({'; '.join(', '.join(d) for d in sorted(dates))}); "
                          "one store's test period would lie inside another's training period; rebuild them with "
                          "the same --split-dates.")


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
        rank, world_size: this process's share of an epoch. Every rank draws the same permutation,
            cut into batches of B; batch ``g`` of it belongs to rank ``g % world_size``, and its masks are
            seeded by ``g`` (the global batch index), so the windows and masks of an epoch do not depend
            on the world size, only their grouping into steps does.
        pad: with ``world_size > 1``, give every rank the same number of full batches by wrapping to
            the start of the permutation (like torch's DistributedSampler; a few windows appear twice
            in such an epoch). Without it, ranks take only real windows and their batch counts may
            differ by one (for evaluation, where no collective runs per batch). Default: ``shuffle``.
    """

    def __init__(self, features, valid, starts, window_length: int, batch_size: int = 256, *,
                 shuffle: bool = True, drop_last: bool = False, mask: str = "random", mask_ratio: float = 0.15,
                 patch_length: int = 10, position: bool = False, seed: int | None = 0, rank: int = 0,
                 world_size: int = 1, pad: bool | None = None):
        import torch

        check_int("batch_size", batch_size, 1)
        check_int("window_length", window_length, 2)
        if mask not in MASK_KINDS:
            raise WindowError(f"unknown mask kind {mask!r}; choose one of {', '.join(MASK_KINDS)}.")
        if not (0.0 < float(mask_ratio) < 1.0):
            raise WindowError(f"mask_ratio must lie strictly between 0 and 1, got {mask_ratio!r}.")
        check_int("patch_length", patch_length, 1)
        if mask == "patch" and patch_length > window_length:
            raise WindowError(f"patch_length {patch_length} is longer than the window ({window_length} bars).")
        self.features, self.valid = features, valid
        self.device = features.device
        self.K, self.batch_size = int(window_length), int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.mask_kind, self.mask_ratio, self.patch_length = mask, float(mask_ratio), int(patch_length)
        self.position = bool(position)
        check_int("world_size", world_size, 1)
        check_int("rank", rank, 0)
        if rank >= world_size:
            raise WindowError(f"rank {rank} is outside 0 .. {world_size - 1} (world size {world_size}).")
        self.rank, self.world_size = int(rank), int(world_size)
        self.pad = self.shuffle if pad is None else bool(pad)
        self.seed = int.from_bytes(os.urandom(8), "little") >> 1 if seed is None else int(seed)
        self.starts = torch.as_tensor(host_array(starts, np.int64)).to(self.device)
        if len(self.starts) and (int(self.starts.min()) < 0 or int(self.starts.max()) + self.K > features.shape[0]):
            raise WindowError(f"window starts must lie in 0 .. {features.shape[0] - self.K}.")
        self._offsets = torch.arange(self.K, device=self.device)
        # floor(ratio * v) computed in float64 exactly as the old loader's int(ratio * v), for v = 0 .. K.
        self._n_mask = torch.tensor([int(self.mask_ratio * v) for v in range(self.K + 1)], device=self.device)
        self._k_max = int(self.mask_ratio * self.K)  # the most any window masks (v = K): a static topk size
        if mask == "random" and self._k_max == 0:  # nothing would ever be masked: a run that learns nothing
            raise WindowError(f"mask_ratio {self.mask_ratio:g} masks no bar of a {self.K}-bar window "
                              f"(floor({self.mask_ratio:g} x {self.K}) = 0); use at least {1 / self.K:.4g}.")
        self._ranks = torch.arange(self._k_max, device=self.device)
        # Every window as a view: [n - K + 1, K, D] and [n - K + 1, K] (strides of the bars, no copy).
        n_win, D = max(features.shape[0] - self.K + 1, 0), features.shape[1]
        self._windows = features.as_strided((n_win, self.K, D), (features.stride(0), features.stride(0),
                                                                 features.stride(1)))
        self._valid_windows = valid.as_strided((n_win, self.K), (valid.stride(0), valid.stride(0)))
        self._n_patches = max(1, int(self.mask_ratio * self.K / self.patch_length + 0.5))
        self._position = (self._offsets.to(torch.float32) / (self.K - 1)).view(1, self.K, 1)
        self._gen = torch.Generator(device=self.device)
        self._epoch = 0
        self._order = (None, None)  # (epoch, its window order): the last permutation drawn

    def __len__(self) -> int:
        """Batches per epoch of this rank."""
        chunks = self.global_batches
        if self.world_size == 1:
            return chunks
        if self.pad:
            return -(-chunks // self.world_size)
        return len(range(self.rank, chunks, self.world_size))

    @property
    def global_batches(self) -> int:
        """Batches of B in one epoch's permutation (over all ranks, before padding)."""
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
        if self._order[0] != epoch:  # random access (batch()) reuses the epoch's permutation
            self._gen.manual_seed(derive_seed(self.seed, _STREAM_SHUFFLE, epoch))
            perm = torch.randperm(len(self.starts), generator=self._gen, device=self.device)
            self._order = (epoch, self.starts[perm])
        return self._order[1]

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """This rank's batches of epoch ``epoch`` from its batch index ``start`` on.

        With one rank each window comes exactly once per epoch; with several, see ``pad``.
        """
        order = self.order(epoch)
        for i in range(start, len(self)):
            g = i * self.world_size + self.rank
            yield self._make(self._chunk(order, g), epoch, g)

    def batch(self, epoch: int, index: int) -> Batch:
        """This rank's batch ``index`` of epoch ``epoch`` (the same one :meth:`batches` yields)."""
        if not 0 <= index < len(self):
            raise WindowError(f"batch index {index} is outside 0 .. {len(self) - 1}.")
        g = index * self.world_size + self.rank
        return self._make(self._chunk(self.order(epoch), g), epoch, g)

    def rank_order(self, epoch: int):
        """``[len(self) * B]`` (or fewer) window starts this rank visits in epoch ``epoch``, in order."""
        import torch

        order = self.order(epoch)
        parts = [self._chunk(order, i * self.world_size + self.rank) for i in range(len(self))]
        return torch.cat(parts) if parts else order[:0]

    def _chunk(self, order, g: int):
        """Window starts of global batch ``g``: ``order[g*B : (g+1)*B]``, wrapped past the end when padding."""
        import torch

        B = self.batch_size
        if self.pad and self.world_size > 1 and (g + 1) * B > len(order) and len(order):
            return order[torch.arange(g * B, (g + 1) * B, device=order.device) % len(order)]
        return order[g * B:(g + 1) * B]

    def __iter__(self) -> Iterator[Batch]:
        """One epoch; each new iteration is the next epoch (new order and masks), like a DataLoader."""
        epoch, self._epoch = self._epoch, self._epoch + 1
        return self.batches(epoch)

    def gather(self, starts):
        """``X [B, K, D]`` and ``valid [B, K]`` of the windows at ``starts`` ``[B]``: one gather kernel each.

        The windows are strided views of the features (``[n - K + 1, K, D]``, no copy), so each
        batch is a single indexed copy, with no index arithmetic of its own.
        """
        return self._windows.index_select(0, starts), self._valid_windows.index_select(0, starts)

    def _make(self, starts, epoch: int, index: int) -> Batch:
        import torch

        X, valid = self.gather(starts)
        self._gen.manual_seed(derive_seed(self.seed, _STREAM_MASK, epoch, index))
        mask = self._random_mask(valid) if self.mask_kind == "random" else self._patch_mask(valid)
        if self.position:
            X = torch.cat([X, self._position.expand(X.shape[0], self.K, 1)], dim=-1)
        return Batch(X, mask, valid)

    def _random_mask(self, valid):
        """Exactly ``floor(ratio * valid bars)`` masked bars per window, uniformly among the valid ones.

        Each bar gets a uniform key (invalid bars 2.0, so they come last); the ``floor(ratio * K)``
        smallest keys of a window (``topk``, not a full sort) in ascending order, of which the first
        ``floor(ratio * v)`` are masked: a uniform subset of exactly that size, ties or not.
        """
        import torch

        B = valid.shape[0]
        u = torch.rand((B, self.K), generator=self._gen, device=self.device)
        keys = torch.where(valid, u, 2.0)
        picked = keys.topk(self._k_max, dim=1, largest=False, sorted=True).indices  # [B, k_max]
        take = self._ranks < self._n_mask[valid.sum(dim=1)][:, None]                 # [B, k_max]
        return torch.zeros((B, self.K), dtype=torch.bool, device=self.device).scatter_(1, picked, take)

    def _patch_mask(self, valid):
        """``round(ratio * K / patch_length)`` blocks of ``patch_length`` bars at uniform starts (they may overlap)."""
        import torch

        B = valid.shape[0]
        first = torch.randint(0, self.K - self.patch_length + 1, (B, self._n_patches, 1), generator=self._gen,
                              device=self.device)
        t = self._offsets.view(1, 1, self.K)
        return ((t >= first) & (t < first + self.patch_length)).any(dim=1) & valid
