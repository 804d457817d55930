"""``gpu-features export STORE --layout seed``: the old pipeline's materialized window arrays.

Writes, into a new directory::

    features_10d.npy   float32 [N, K, 10]   every exported window, train first, then val, then test
    valid_mask.npy     bool    [N, K]
    metadata.json      created_at, source store, feature names, K, counts, stride, config
    splits.json        {"train_indices": [a, b], "val_indices": [b, c], "test_indices": [c, N]}

This is what the old loader (and ``gpu_features.windows.create_fast_dataloaders``)
reads. Windows are the store's usable windows (all K bars valid, one series,
one split). The arrays are 44 bytes per window bar (7.4 GB for the 1.8M-bar
demo), so the size is stated first and anything above 1 GB needs ``--yes``.
Files are written with ``.npy`` headers only (no pickle), in a temporary
sibling directory renamed into place when complete.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import GpuFeaturesError
from .splits import SPLIT_NAMES
from .windows import SEED_FILES

CONFIRM_ABOVE_BYTES = 1_000_000_000
CHUNK_WINDOWS = 16_384
LAYOUTS = ("seed", "parquet")


class ExportError(GpuFeaturesError):
    """An export cannot be written as asked."""


def seed_layout_bytes(n_windows: int, K: int, n_features: int = 10) -> int:
    """Bytes of ``features_10d.npy`` + ``valid_mask.npy`` (128-byte .npy headers included)."""
    return n_windows * K * (4 * n_features + 1) + 2 * 128


def plan(store, splits=SPLIT_NAMES, stride: int = 1) -> dict:
    """Which windows an export holds: ``{"starts": {split: [w] int64}, "n_windows", "bytes", "K"}``."""
    from .windows import stride_starts

    for s in splits:
        if s not in SPLIT_NAMES:
            raise ExportError(f"unknown split {s!r}; choose from {', '.join(SPLIT_NAMES)}.")
    K = store.config.window_length
    starts = {s: stride_starts(store.usable_window_starts(s), stride) if s in splits else np.zeros(0, np.int64)
              for s in SPLIT_NAMES}
    n = int(sum(len(v) for v in starts.values()))
    return {"starts": starts, "n_windows": n, "K": K, "bytes": seed_layout_bytes(n, K)}


def _is_seed_export_or_empty(path: Path) -> bool:
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return not names or names == set(SEED_FILES)


def export_seed(store, out_dir, splits=SPLIT_NAMES, stride: int = 1, yes: bool = False, overwrite: bool = False,
                confirm_above: int | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> dict:
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
    from .store import Store, _replace_dir, now_iso, open_store

    st = store if isinstance(store, Store) else open_store(store)
    out = Path(out_dir)
    p = plan(st, splits, stride)
    n, K, size = p["n_windows"], p["K"], p["bytes"]
    if n == 0:
        raise ExportError(f"{st.path} has no usable windows in {', '.join(splits)}; nothing to export.")
    if size > (CONFIRM_ABOVE_BYTES if confirm_above is None else confirm_above) and not yes:
        raise ExportError(f"the seed layout of {st.path} is {size / 1e9:.2f} GB ({n:,} windows x {K} bars x 44 bytes); "
                          f"pass --yes to write it, or export less with --stride N or --split.")
    if out.exists() and not (overwrite and _is_seed_export_or_empty(out)):
        what = "a seed-layout export" if _is_seed_export_or_empty(out) else "not a seed-layout export"
        hint = "pass --overwrite to replace it" if what == "a seed-layout export" else "refusing to touch it"
        raise ExportError(f"{out} already exists and is {what}; {hint}, or choose another --output.")
    out.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out.parent).free
    if free < size:
        raise ExportError(f"{out.parent} has {free / 1e9:.2f} GB free but the export needs {size / 1e9:.2f} GB; "
                          "free space, choose another --output, or export less with --stride N.")
    feats, valid = st.array("features"), st.array("valid")
    windows = np.lib.stride_tricks.sliding_window_view(feats, K, axis=0)  # [n - K + 1, 10, K], a view
    vwin = np.lib.stride_tricks.sliding_window_view(valid, K)              # [n - K + 1, K]
    order = np.concatenate([p["starts"][s] for s in SPLIT_NAMES])
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        # open_memmap writes a plain .npy header for a float32 array (nothing to pickle), chunk by chunk,
        # so a 7 GB export never needs 7 GB of memory.
        fx = np.lib.format.open_memmap(tmp / "features_10d.npy", mode="w+", dtype=np.float32,
                                       shape=(n, K, feats.shape[1]))
        total = -(-n // CHUNK_WINDOWS)
        for k, a in enumerate(range(0, n, CHUNK_WINDOWS)):
            fx[a:a + CHUNK_WINDOWS] = windows[order[a:a + CHUNK_WINDOWS]].transpose(0, 2, 1)
            if progress:
                progress("export", k + 1, total)
        fx.flush()
        del fx
        np.save(tmp / "valid_mask.npy", np.ascontiguousarray(vwin[order]), allow_pickle=False)
        bounds = np.cumsum([0] + [len(p["starts"][s]) for s in SPLIT_NAMES]).tolist()
        split_record = {f"{s}_indices": [bounds[i], bounds[i + 1]] for i, s in enumerate(SPLIT_NAMES)}
        meta = {"created_at": now_iso(), "layout": "seed", "format": "gpu-features seed-layout export",
                "source_store": str(st.path), "store_created": st.manifest["created"],
                "feature_names": list(st.manifest["feature_names"]), "window_length": K, "n_windows": n,
                "windows": {s: len(p["starts"][s]) for s in SPLIT_NAMES}, "stride": stride,
                "min_valid_fraction": 1.0, "config": st.manifest["config"]}
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=1) + "\n")
        (tmp / "splits.json").write_text(json.dumps(split_record, indent=1) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def cmd_export(args) -> int:
    """The ``export`` command; returns the exit code."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .store import open_store

    console = Console()
    if args.layout not in LAYOUTS:
        raise ExportError(f"unknown layout {args.layout!r}; choose one of {', '.join(LAYOUTS)}.")
    if args.stride < 1:
        raise ExportError(f"--stride must be >= 1, got {args.stride}.")
    st = open_store(args.store)
    if args.layout == "parquet":  # one row per bar: timestamp, symbol, valid, the ten features
        from .arrow_export import write_parquet

        out = write_parquet(st, args.output, overwrite=args.overwrite)
        console.print(f"[bold green]wrote[/] {out}: {st.n_bars:,} bars x (timestamp, symbol, valid, 10 features)")
        return 0
    splits = tuple(s for s in SPLIT_NAMES if s in (args.split or SPLIT_NAMES))
    p = plan(st, splits, args.stride)
    console.print(f"export {st.path} -> {args.output} (layout {args.layout}): {p['n_windows']:,} windows of "
                  f"{p['K']} bars from {', '.join(splits)} = [bold]{p['bytes'] / 1e9:.2f} GB[/]")
    with Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, disable=args.quiet) as prog:
        tasks: dict[str, int] = {}

        def progress(stage, done, total):
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=total)
            prog.update(tasks[stage], completed=done, total=total)

        meta = export_seed(st, args.output, splits, args.stride, yes=args.yes, overwrite=args.overwrite,
                           progress=progress)
    console.print(f"[bold green]wrote[/] {args.output}: features_10d.npy [{meta['n_windows']}, {meta['window_length']}, "
                  f"10], valid_mask.npy, metadata.json, splits.json ({', '.join(f'{k} {v:,}' for k, v in meta['windows'].items())})")
    return 0


def add_parser(subparsers) -> None:
    """Register ``export`` on the ``gpu-features`` sub-command parsers."""
    p = subparsers.add_parser("export", help="write a store's windows in the old pipeline's layout",
                              description="Materialize a store's usable windows as the old pipeline's "
                                          "features_10d.npy [N,K,10], valid_mask.npy [N,K], metadata.json and "
                                          "splits.json. States the size first; above 1 GB it needs --yes.")
    p.add_argument("store", help="store directory")
    p.add_argument("--layout", choices=LAYOUTS, default="seed",
                   help="seed: window arrays (a directory); parquet: one row per bar (a file) [seed]")
    p.add_argument("--output", required=True, metavar="PATH", help="new directory (seed) or .parquet file")
    p.add_argument("--split", action="append", choices=SPLIT_NAMES,
                   help="export only this split (repeatable) [all three]")
    p.add_argument("--stride", type=int, default=1, metavar="N", help="every N-th usable window [1]")
    p.add_argument("--yes", action="store_true", help="confirm an export above 1 GB")
    p.add_argument("--overwrite", action="store_true", help="replace an existing seed-layout export at --output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)
