"""Interrupted writes put right: pending replaces recovered, leftovers found and cleaned.

Writers (:mod:`.writer`, :mod:`.append`, the seed export) hold the store's
writer lock (:func:`gpu_features.fileio.writer_lock`) and assemble new files
under names the committed manifest does not use. A writer killed at any
instant can leave, and only leave:

- hidden siblings ``.NAME.tmp-*`` (a new store being assembled) and
  ``.NAME.old-*`` (an old store being removed) beside the store;
- inside the store, shard or state files the manifest does not list (a killed
  ``--append``) and ``.manifest.json.tmp-*`` (a killed manifest write).

:func:`recover` runs when a store is opened and is missing: where a replace
was cut between its two renames (only on systems without an atomic exchange),
the complete store among the siblings is moved into place. :func:`leftovers`
lists what a killed writer left (``verify`` reports it) and :func:`clean`
removes it; the next writer calls it under the lock.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import StoreError
from ..fileio import writer_lock
from .format import MANIFEST

LEFTOVER_PATTERNS = ("bars-*.safetensors", "state*.safetensors", f".{MANIFEST}.tmp-*")


def siblings(out: Path, tag: str) -> list[Path]:
    """Hidden siblings ``.NAME.<tag>-*`` of ``out`` (temporary or old copies), newest first."""
    out = Path(out)
    if not out.parent.is_dir():
        return []
    found = [p for p in out.parent.glob(f".{out.name}.{tag}-*") if p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _complete(path: Path) -> bool:
    from .format import read_manifest

    try:
        read_manifest(path)
        return True
    except StoreError:
        return False


def recover(out: Path) -> Path | None:
    """Put a store back at ``out`` when a replace was interrupted between its two renames.

    Only acts when ``out`` is missing and an ``.NAME.old-*`` sibling shows that a replace was under
    way: the new store (a complete ``.NAME.tmp-*``, renamed only after its manifest was written)
    goes into place, else the old one goes back. Returns the path moved into place, or None.

    Raises:
        StoreError: the siblings cannot be moved (read-only folder); the sentence gives the command.
    """
    out = Path(out)
    if out.exists() or not siblings(out, "old"):
        return None
    try:
        with writer_lock(out, "the command"):
            return _recover_locked(out)
    except OSError as err:  # the lock file cannot be made: a read-only folder
        chosen = next((p for p in siblings(out, "tmp") + siblings(out, "old") if _complete(p)), None)
        raise StoreError(f"{out} is missing because a replace was interrupted, and it cannot be put back here "
                         f"({err.strerror}); run `mv {chosen} {out}` as a user who may write there.") from None


def _recover_locked(out: Path) -> Path | None:
    """:func:`recover` itself, under the writer lock (another writer may have finished meanwhile)."""
    if out.exists():
        return None
    candidates = [p for p in siblings(out, "tmp") + siblings(out, "old") if _complete(p)]
    if not candidates:
        return None
    chosen = candidates[0]
    try:
        chosen.rename(out)
    except OSError as err:
        raise StoreError(f"{out} is missing because a replace was interrupted, and the complete store "
                         f"{chosen} cannot be moved back ({err.strerror}); run `mv {chosen} {out}` as "
                         "a user who may write there.") from None
    return chosen


def leftovers(out: Path, manifest: dict | None) -> list[Path]:
    """What killed writers left: stale ``.NAME.tmp-*`` / ``.NAME.old-*`` siblings, and inside the store
    shard, state and manifest-temporary files its ``manifest`` does not list."""
    out = Path(out)
    found = siblings(out, "tmp") + siblings(out, "old")
    if manifest is not None and out.is_dir():
        listed = {s["file"] for s in manifest.get("shards", [])} | {manifest.get("state", {}).get("file")}
        for pattern in LEFTOVER_PATTERNS:
            found += sorted(p for p in out.glob(pattern) if p.name not in listed and not p.is_dir())
    return found


def size_of(paths) -> int:
    """Bytes in files and folders ``paths`` (symlinks not followed)."""
    total = 0
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())
        elif p.exists():
            total += p.lstat().st_size
    return total


def clean(out: Path, manifest: dict | None) -> list[Path]:
    """Remove :func:`leftovers` (the caller holds the writer lock); returns what was removed."""
    removed = leftovers(out, manifest)
    for p in removed:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return removed
