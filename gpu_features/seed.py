"""The old pipeline's window layout and API, in one place.

Files of a seed-layout export (``gpu-features export STORE --layout seed``)::

    features_10d.npy   float32 [N, K, 10]   every exported window, train first, then val, then test
    valid_mask.npy     bool    [N, K]
    metadata.json      created_at, source store, feature names, K, counts, stride, config
    splits.json        {"train_indices": [a, b], "val_indices": [b, c], "test_indices": [c, N]}

:func:`export_seed` writes them; :func:`create_fast_dataloaders` is the old
loader's entry point, backed by device-resident windows of a store or of such
an export. Windows are the store's usable windows (all K bars valid, one
series, one split). The arrays are 44 bytes per window bar (7.4 GB for the
1.8M-bar demo), so the size is stated first and anything above 1 GB needs
``yes``. Files are written with ``.npy`` headers only (no pickle), in a
temporary sibling directory fsynced and swapped into place when complete,
under the output's writer lock (two exports into one folder run one after
the other; stale temporaries of killed exports are removed, as for stores).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .errors import GpuFeaturesError, WindowError
from .fileio import (absolute, check_writable, describe_entries, folder_entries, fsync_dir, fsync_file, inside, now_iso,
                     read_json_file, replace_dir, temp_sibling, writer_lock)
from .progress import Progress, no_progress
from .splits import SPLIT_NAMES
from .store import MANIFEST, Store, is_dataset, open_store
from .store.recovery import clean
from .window_index import stride_starts
from .windows import WindowSource, derive_seed

CONFIRM_ABOVE_BYTES = 1_000_000_000
CHUNK_WINDOWS = 16_384


class ExportError(GpuFeaturesError):
    """An export cannot be written as asked."""


def seed_layout_bytes(n_windows: int, K: int, n_features: int = 10) -> int:
    """Bytes of ``features_10d.npy`` + ``valid_mask.npy`` (128-byte .npy headers included)."""
    return n_windows * K * (4 * n_features + 1) + 2 * 128


def plan(store, splits=SPLIT_NAMES, stride: int = 1) -> dict:
    """Which windows an export holds: ``{"starts": {split: [w] int64}, "n_windows", "bytes", "K"}``."""
    for s in splits:
        if s not in SPLIT_NAMES:
            raise ExportError(f"unknown split {s!r}; choose from {', '.join(SPLIT_NAMES)}.")
    K = store.config.window_length
    starts = {s: stride_starts(store.usable_window_starts(s), stride) if s in splits else np.zeros(0, np.int64)
              for s in SPLIT_NAMES}
    n = int(sum(len(v) for v in starts.values()))
    return {"starts": starts, "n_windows": n, "K": K, "bytes": seed_layout_bytes(n, K)}


SEED_FORMAT = "gpu-features seed-layout export"  # metadata.json's "format": how an export is recognised


def is_seed_export(path: Path) -> bool:
    """True when the folder ``path`` is an export this package wrote, whole: nothing but the seed-layout
    files, and a ``metadata.json`` that names the format."""
    names = folder_entries(path)
    if not names or not set(names) <= set(SEED_FILES) or "metadata.json" not in names:
        return False
    try:
        meta = read_json_file(path / "metadata.json", "an export's metadata", "", ExportError, 1 << 20)
    except ExportError:
        return False
    return isinstance(meta, dict) and meta.get("format") == SEED_FORMAT


def export_seed(store, out_dir, splits=SPLIT_NAMES, stride: int = 1, yes: bool = False, overwrite: bool = False,
                confirm_above: int | None = None,
                progress: Progress = no_progress) -> dict:
    """Write a store's usable windows in the seed layout.

    Args:
        store: an opened :class:`~gpu_features.store.Store` or its path.
        out_dir: the new directory.
        splits: which splits to include (in train, val, test order).
        stride: keep every ``stride``-th window of each run of usable windows.
        yes: confirm an export above ``confirm_above`` bytes (default :data:`CONFIRM_ABOVE_BYTES`, 1 GB).
        overwrite: replace an existing seed-layout export at ``out_dir``.
        progress: optional ``callback(stage, done, total)``.

    Returns:
        The ``metadata.json`` record.

    Raises:
        ExportError: too large without ``yes``, not enough disk, or ``out_dir`` in the way.
    """
    st = store if isinstance(store, Store) else open_store(store)
    out = check_output(out_dir, overwrite, st)  # before the plan: a refusal costs nothing
    p = plan(st, splits, stride)
    n, K, size = p["n_windows"], p["K"], p["bytes"]
    if n == 0:
        raise ExportError(f"{st.path} has no usable windows in {', '.join(splits)}; nothing to export.")
    if size > (CONFIRM_ABOVE_BYTES if confirm_above is None else confirm_above) and not yes:
        raise ExportError(f"the seed layout of {st.path} is {size / 1e9:.2f} GB ({n:,} windows x {K} bars x 44 bytes); "
                          f"pass --yes to write it, or export less with --stride N or --split.")
    out.parent.mkdir(parents=True, exist_ok=True)
    check_writable(out.parent, "--output", ExportError)  # a read-only target is not a full disk
    free = shutil.disk_usage(out.parent).free
    if free < size:
        raise ExportError(f"{out.parent} has {free / 1e9:.2f} GB free but the export needs {size / 1e9:.2f} GB; "
                          "free space, choose another --output, or export less with --stride N.")
    with writer_lock(out, "the export"):
        check_output(out, overwrite, st)  # again: another export may have finished while this one waited
        clean(out, None)  # .NAME.tmp-* / .NAME.old-* of killed exports
        return _write_export(st, out, p, stride, progress)


def check_output(out_dir, overwrite: bool, st: Store) -> Path:
    """Only our own files: a new path, an empty folder, or (with ``overwrite``) a whole seed-layout export;
    never the store being read, a folder inside it, or a folder holding it. Returns the absolute path."""
    given, out = out_dir, absolute(out_dir)
    if not out.name:
        raise ExportError(f"--output {out} is the filesystem root; an export is a folder of its own, so choose a new "
                          "folder below it.")
    if inside(out, st.path) or inside(st.path, out):
        where = ("is" if inside(st.path, out) else "lies inside") if inside(out, st.path) else "holds"
        raise ExportError(f"--output {given} {where} the store {st.path} it exports; an export is written outside the "
                          "store, so choose another --output.")
    if not out.exists() and not out.is_symlink():
        return out
    if not out.is_dir() or out.is_symlink():
        raise ExportError(f"{given} already exists and is not a seed-layout export; refusing to touch it (a file), "
                          "even with --overwrite, so choose another --output.")
    names = folder_entries(out)
    if not names:
        return out
    if not is_seed_export(out):
        raise ExportError(f"{given} already exists and is not a seed-layout export; refusing to touch it (it holds "
                          f"{describe_entries(out, names)}), even with --overwrite, so choose another --output.")
    if not overwrite:
        raise ExportError(f"{given} already exists and is a seed-layout export; pass --overwrite to replace it, or "
                          "choose another --output.")
    return out


def _write_export(st, out: Path, p: dict, stride: int, progress) -> dict:
    """Write the files into a temporary sibling and swap it into place (the caller holds the lock)."""
    n, K = p["n_windows"], p["K"]
    feats, valid = st.array("features"), st.array("valid")
    windows = np.lib.stride_tricks.sliding_window_view(feats, K, axis=0)  # [n - K + 1, 10, K], a view
    vwin = np.lib.stride_tricks.sliding_window_view(valid, K)              # [n - K + 1, K]
    order = np.concatenate([p["starts"][s] for s in SPLIT_NAMES])
    tmp = temp_sibling(out, "tmp")
    tmp.mkdir()
    try:
        # open_memmap writes a plain .npy header for a float32 array (nothing to pickle), chunk by chunk,
        # so a 7 GB export never needs 7 GB of memory.
        fx = np.lib.format.open_memmap(tmp / "features_10d.npy", mode="w+", dtype=np.float32,
                                       shape=(n, K, feats.shape[1]))
        total = -(-n // CHUNK_WINDOWS)
        for k, a in enumerate(range(0, n, CHUNK_WINDOWS)):
            fx[a:a + CHUNK_WINDOWS] = windows[order[a:a + CHUNK_WINDOWS]].transpose(0, 2, 1)
            progress("export", k + 1, total)
        fx.flush()
        del fx
        np.save(tmp / "valid_mask.npy", np.ascontiguousarray(vwin[order]), allow_pickle=False)
        bounds = np.cumsum([0] + [len(p["starts"][s]) for s in SPLIT_NAMES]).tolist()
        split_record = {f"{s}_indices": [bounds[i], bounds[i + 1]] for i, s in enumerate(SPLIT_NAMES)}
        meta = {"created_at": now_iso(), "layout": "seed", "format": SEED_FORMAT,
                "source_store": str(st.path), "store_created": st.created,
                "feature_names": st.feature_names, "window_length": K, "n_windows": n,
                "windows": {s: len(p["starts"][s]) for s in SPLIT_NAMES}, "stride": stride,
                "min_valid_fraction": 1.0, "config": st.config.to_dict()}
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        (tmp / "splits.json").write_text(json.dumps(split_record, indent=1) + "\n")
        for name in SEED_FILES:
            fsync_file(tmp / name)
        fsync_dir(tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


SEED_FILES = ("features_10d.npy", "valid_mask.npy", "metadata.json", "splits.json")


def _seed_layout_source(path: Path, device) -> WindowSource:
    """A seed-layout export (``features_10d.npy [N,K,10]`` ...) as a source whose segments are the N windows."""
    missing = [f for f in SEED_FILES if not (path / f).is_file()]
    if missing:
        raise WindowError(f"{path}: no {', '.join(missing)}, so this is neither a gpu-features store nor a "
                          "seed-layout export; build one with `make precompute`.")
    feats = np.load(path / "features_10d.npy", mmap_mode="r", allow_pickle=False)
    valid = np.load(path / "valid_mask.npy", mmap_mode="r", allow_pickle=False)
    if feats.ndim != 3 or valid.shape != feats.shape[:2]:
        raise WindowError(f"{path}: features_10d.npy {feats.shape} and valid_mask.npy {valid.shape} do not "
                          "describe [N, K, D] windows; re-export them.")
    N, K, D = feats.shape
    ids = np.full(N, -1, dtype=np.int8)
    try:
        splits = json.loads((path / "splits.json").read_text())
        for k, name in enumerate(SPLIT_NAMES):
            a, b = (int(x) for x in splits[f"{name}_indices"])
            if not 0 <= a <= b <= N:
                raise ValueError
            ids[a:b] = k
    except (ValueError, KeyError, TypeError):  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise WindowError(f"{path}: splits.json must give train_indices, val_indices and test_indices as [start, "
                          f"stop] pairs within the {N:,} windows; re-export with `gpu-features export`.") from None
    return WindowSource(np.asarray(feats, dtype=np.float32).reshape(N * K, D), np.asarray(valid).reshape(N * K),
                        np.repeat(ids, K), np.arange(N + 1, dtype=np.int64) * K, K, device)


def create_fast_dataloaders(feature_dir, batch_size: int = 256, mask_ratio: float = 0.15, seed: int | None = None,
                            stride: int | None = None, device=None):
    """The old pipeline's entry point, backed by device-resident windows.

    Args:
        feature_dir: a gpu-features store or dataset, or a seed-layout export (``gpu-features export --layout seed``).
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
    if (path / MANIFEST).is_file() or is_dataset(path):
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
