"""Reading a store: :func:`open_store` checks it, :class:`Store` hands out its arrays and manifest records.

Callers read the manifest through the typed accessors here (segments, shards,
splits, engine record, statistics, ...), never by raw key, so the on-disk
names live in one place.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .. import splits as splits_mod
from .. import state as S
from ..config import FeatureConfig
from ..window_index import split_window_starts
from ..errors import StoreError
from .format import SHARD_TENSORS, check_files, check_states, read_manifest
from .recovery import recover, siblings, size_of


@dataclasses.dataclass(frozen=True)
class Segment:
    """A contiguous run of one symbol's bars in the store (a symbol has several after appends).

    Attributes:
        name: the symbol.
        first, count: bars ``first : first + count`` of the store.
        start_index: the engine's local index of the segment's first bar: bars of this symbol stored
            before it, or 0 when it restarts.
        source: index into the store's sources; source_first: the segment's first bar within that source's series.
        restart: the segment starts from a fresh engine state (a futures roll cut by ``roll_column``).
    """

    name: str
    first: int
    count: int
    start_index: int
    source: int
    source_first: int
    restart: bool = False

    @property
    def stop(self) -> int:
        return self.first + self.count


@dataclasses.dataclass(frozen=True)
class Shard:
    """One shard file: bars ``first : first + count``, its size and SHA-256."""

    file: str
    first: int
    count: int
    bytes: int
    sha256: str


class Store:
    """An opened, checked feature store. Build one with :func:`open_store`."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.config = FeatureConfig.from_dict(manifest["config"])
        self.segments = [Segment(**{f.name: g[f.name] for f in dataclasses.fields(Segment) if f.name in g})
                         for g in manifest["series"]]
        self.shards = [Shard(**{f.name: s[f.name] for f in dataclasses.fields(Shard)}) for s in manifest["shards"]]
        self._cache: dict[str, np.ndarray] = {}

    # --- manifest records ---------------------------------------------------------------
    @property
    def n_bars(self) -> int:
        return int(self.manifest["n_bars"])

    @property
    def symbols(self) -> list[str]:
        return list(self.manifest["symbols"])

    @property
    def created(self) -> str:
        return self.manifest["created"]

    @property
    def feature_names(self) -> list[str]:
        return list(self.manifest["feature_names"])

    @property
    def sources(self) -> list[dict]:
        """Where the bars came from: ``{"kind": "file" | "synthetic" | "memory", ...}`` per source."""
        return self.manifest["sources"]

    @property
    def splits(self) -> dict:
        """``{"method", "boundaries": [[start, end] ns or None] x 3, "counts": {split: {bars, windows}}}``."""
        return self.manifest["splits"]

    @property
    def engine(self) -> dict:
        """The engine of the build: ``{"name", "chunks", "fixups", "kernel_seconds"}``."""
        return self.manifest["engine"]

    @property
    def timings(self) -> dict:
        return self.manifest["timings"]

    @property
    def stats(self) -> dict:
        """Statistics over valid bars: ``{"bars", "valid_bars", "features", "swings", "per_symbol"}``."""
        return self.manifest["stats"]

    @property
    def state_record(self) -> dict:
        """The state file's record: ``{"file", "bytes", "sha256", "checkpoint_every"}``."""
        return self.manifest["state"]

    @property
    def appends(self) -> list[dict]:
        return self.manifest.get("appends", [])

    @property
    def bytes_on_disk(self) -> int:
        """Bytes of the shard and state files."""
        return sum(s.bytes for s in self.shards) + int(self.state_record["bytes"])

    def file_records(self) -> list[tuple[Path, dict, str]]:
        """Every shard and the state file as ``(folder, {"file", "bytes", "sha256"}, description)``."""
        out = [(self.path, dataclasses.asdict(s), f"shard {s.file}") for s in self.shards]
        return out + [(self.path, self.state_record, f"state file {self.state_record['file']}")]

    def segment_bounds(self) -> np.ndarray:
        """``[G + 1] int64``: segment ``g`` holds bars ``bounds[g] : bounds[g + 1]``."""
        return np.array([s.first for s in self.segments] + [self.n_bars], dtype=np.int64)

    def symbol_of_bar(self) -> np.ndarray:
        """``[n] int64`` index into :attr:`symbols` of every bar."""
        index = {name: k for k, name in enumerate(self.symbols)}
        ids = np.array([index[s.name] for s in self.segments], dtype=np.int64)
        return np.repeat(ids, [s.count for s in self.segments])

    # --- arrays -------------------------------------------------------------------------
    def array(self, name: str) -> np.ndarray:
        """A per-bar tensor of all shards as one numpy array (``features``, ``valid`` or ``timestamp``)."""
        if name not in self._cache:
            from safetensors import safe_open

            dtype, tail = SHARD_TENSORS[name]
            np_dtype = {"F32": np.float32, "I64": np.int64, "BOOL": np.bool_}[dtype]
            out = np.empty((self.n_bars,) + tail, dtype=np_dtype)
            for shard in self.shards:
                with safe_open(str(self.path / shard.file), framework="numpy") as f:
                    out[shard.first: shard.first + shard.count] = f.get_tensor(name)
            self._cache[name] = out
        return self._cache[name]

    def features(self, device: str = "cpu"):
        """``[n, 10] float32`` torch tensor on ``device`` (zero-copy from the loaded array on the CPU)."""
        from ..devices import as_device_tensor

        return as_device_tensor(self.array("features"), device)

    def valid(self, device: str = "cpu"):
        """``[n] bool`` torch tensor on ``device``."""
        from ..devices import as_device_tensor

        return as_device_tensor(self.array("valid"), device)

    def timestamps(self) -> np.ndarray:
        """``[n] int64`` ns since the epoch, UTC."""
        return self.array("timestamp")

    def split_ids(self) -> np.ndarray:
        """``[n] int8`` split of each bar (0 train, 1 val, 2 test)."""
        return splits_mod.split_ids(self.timestamps(), self.splits)

    def states(self) -> dict[str, np.ndarray]:
        """``checkpoint_bar [c] i64``, ``checkpoint_state [c, 16+P] f64``, ``end_state [symbols, 16+P] f64``."""
        from safetensors.numpy import load_file

        states = load_file(str(self.path / self.state_record["file"]))
        check_states(states, self.manifest, f"state file {self.state_record['file']}")
        return states

    def to_arrow(self):
        """``pyarrow.Table``: timestamp, symbol (dictionary), valid and the ten features, one row per bar."""
        from ..arrow_export import store_to_arrow

        return store_to_arrow(self)

    def usable_window_starts(self, split: str | None = None, min_valid_fraction: float = 1.0) -> np.ndarray:
        """``[w] int64`` starts of usable windows (all of a split when ``split`` is given)."""
        return split_window_starts(self.array("valid"), self.split_ids(), self.segment_bounds(),
                                   self.config.window_length, split, min_valid_fraction)


def open_store(path, checksums: bool = True, *, verify: bool | None = None) -> Store:
    """Open a store and check it: manifest schema, types and ranges, shard files, sizes, tensor shapes,
    and the SHA-256 of every shard and of the state file.

    Checksums are on by default (hashing runs at disk speed: tens of milliseconds for the demo store),
    so a flipped byte or swapped shard is refused before anything reads it. ``checksums=False`` skips
    only the hashing (sizes, headers and shapes are still checked); it is for very large stores whose
    files are trusted, and ``gpu-features verify`` always hashes. This recomputes no feature
    (``gpu-features verify`` does, see :mod:`gpu_features.verify`).

    A store whose replace was interrupted (see :mod:`.recovery`) is put back first.

    Args:
        path: the store directory.
        checksums: check the SHA-256 of every shard and of the state file (default True).
        verify: the former name of ``checksums``.

    Raises:
        StoreError: one sentence naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        recover(path)
    if not path.exists():
        partial = siblings(path, "tmp")
        if partial:
            raise StoreError(f"{path}: no such store directory; a build into it was interrupted and left "
                             f"{len(partial)} incomplete folder(s) ({size_of(partial) / 1e6:.1f} MB, "
                             f"{partial[0].name} ...), so run `gpu-features precompute` again (it removes them).")
    manifest = read_manifest(path)
    cfg = FeatureConfig.from_dict(manifest["config"])
    check_files(path, manifest, S.state_dim(cfg.atr_period), checksums if verify is None else verify)
    return Store(path, manifest)
