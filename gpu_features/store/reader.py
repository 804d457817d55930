"""Reading a store or a dataset: :func:`open_store` checks either, :class:`Store` hands out arrays and records.

Callers read the manifest through the typed accessors here (segments, shards,
splits, engine record, statistics, the last write's :class:`~.report.BuildReport`
...), never by raw key, so the on-disk names live in one place.

A dataset (the parts of a distributed build, each a complete store) is read as
one store: on a directory holding ``dataset.json`` :func:`open_store` returns a
:class:`Dataset`, a :class:`Store` whose manifest is the parts' manifests laid
end to end (bars, segments, sources and shards, part by part; shard files named
``part-XXXXX/bars-....safetensors``), so every reader (verify, inspect, plot,
export, windows and the trainer) uses it unchanged. Each part is opened and
checked like a store, and its manifest must have the size and SHA-256 the
dataset recorded (always checked: it is small, and it vouches for the part's
shard checksums). Writing datasets is :mod:`.dataset`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .. import splits as splits_mod
from .. import state as S
from ..config import FEATURE_NAMES, FeatureConfig
from ..errors import ConfigError, StoreError
from ..window_index import split_window_starts
from .format import (DATASET_FORMAT, DATASET_MANIFEST, DATASET_VERSION, MANIFEST, SHARD_TENSORS, check_file,
                     check_files, check_schema, check_states, read_json_record, read_manifest)
from .recovery import recover, siblings, size_of
from .report import BuildReport, EngineUse, read_report
from .stats import merge_stat_records


_DATASET_SCHEMA = {"format": str, "version": int, "created": str, "config": dict, "splits": dict, "parts": list,
                   "build": dict}
_PART_KEYS = {"dir": str, "symbols": list, "n_bars": int, "manifest_bytes": int, "manifest_sha256": str}


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
    def report(self) -> BuildReport:
        """What the last write of this store did (its build, or its latest append), typed."""
        return read_report(self.manifest)

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


def open_store(path, checksums: bool = True) -> Store:
    """Open a store, or a dataset of part stores as one :class:`Dataset`, and check it: manifest schema, types
    and ranges, shard files, sizes, tensor shapes, and the SHA-256 of every shard and of the state file (of
    every part of a dataset, whose part manifests are always hashed).

    Checksums are on by default (hashing runs at disk speed: tens of milliseconds for the demo store),
    so a flipped byte or swapped shard is refused before anything reads it. ``checksums=False`` skips
    only the hashing (sizes, headers and shapes are still checked); it is for very large stores whose
    files are trusted, and ``gpu-features verify`` always hashes. This recomputes no feature
    (``gpu-features verify`` does, see :mod:`gpu_features.verify`).

    A store whose replace was interrupted (see :mod:`.recovery`) is put back first.

    Args:
        path: the store (or dataset) directory.
        checksums: check the SHA-256 of every shard and of the state file (default True).

    Raises:
        StoreError: one sentence naming the file and the problem.
    """
    if is_dataset(path):
        return open_dataset(path, checksums)
    return _open_one(Path(path), checksums)


def _open_one(path: Path, checksums: bool) -> Store:
    """Open and check one store directory (see :func:`open_store`)."""
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
    check_files(path, manifest, S.state_dim(cfg.atr_period), checksums)
    return Store(path, manifest)


# --- datasets ----------------------------------------------------------------------------------


def is_dataset(path) -> bool:
    """True when ``path`` holds a dataset manifest."""
    return (Path(path) / DATASET_MANIFEST).is_file()


def read_dataset_manifest(path: Path) -> dict:
    """Read and check ``path/dataset.json``: size, JSON, format, version (:func:`.format.read_json_record`),
    schema, part names."""
    mpath = path / DATASET_MANIFEST
    record = read_json_record(mpath, DATASET_FORMAT, DATASET_VERSION, "dataset", "dataset record")
    check_schema(record, _DATASET_SCHEMA, str(mpath))
    if not record["parts"]:
        raise StoreError(f"{mpath}: the dataset lists no parts; rebuild it.")
    seen: dict[str, str] = {}
    for k, entry in enumerate(record["parts"]):
        check_schema(entry, _PART_KEYS, f"{mpath} parts[{k}]")
        if Path(entry["dir"]).name != entry["dir"] or entry["dir"].startswith("."):
            raise StoreError(f"{mpath} parts[{k}]: part directory {entry['dir']!r} must be a plain name inside the "
                             "dataset; the manifest is corrupt.")
        for name in entry["symbols"]:
            if name in seen:
                raise StoreError(f"{mpath}: symbol {name} is in parts {seen[name]} and {entry['dir']}; a symbol "
                                 "must live in one part, rebuild the dataset.")
            seen[name] = entry["dir"]
    return record


def open_dataset(path, checksums: bool = True) -> "Dataset":
    """Open and check a dataset: its manifest, each part's manifest checksum, each part as a store."""
    path = Path(path)
    record = read_dataset_manifest(path)
    parts = []
    for entry in record["parts"]:
        folder = path / entry["dir"]
        if not (folder / MANIFEST).is_file():
            raise StoreError(f"{path}: part {entry['dir']} has no {MANIFEST}; the dataset is incomplete, rebuild it.")
        check_file(folder, {"file": MANIFEST, "bytes": entry["manifest_bytes"], "sha256": entry["manifest_sha256"]},
                   f"{path}: the manifest of part {entry['dir']}", checksum=True)
        parts.append(_open_one(folder, checksums))
    return Dataset(path, record, parts)


class Dataset(Store):
    """A dataset read as one store: bars, segments and shards of its parts end to end.

    Attributes:
        record: the checked ``dataset.json``.
        parts: the opened part :class:`Store` objects, in order.
    """

    def __init__(self, path: Path, record: dict, parts: list[Store]):
        super().__init__(path, combine_manifests(record, parts, Path(path) / DATASET_MANIFEST))
        self.record = record
        self.parts = parts

    def part_offsets(self) -> np.ndarray:
        """``[P + 1] int64``: part ``p`` holds bars ``offsets[p] : offsets[p + 1]`` of the dataset."""
        return np.concatenate([[0], np.cumsum([p.n_bars for p in self.parts])]).astype(np.int64)

    def states(self) -> dict[str, np.ndarray]:
        """The parts' state files end to end (checkpoint bars shifted to dataset positions)."""
        got = [p.states() for p in self.parts]
        offsets = self.part_offsets()
        return {"checkpoint_bar": np.concatenate([g["checkpoint_bar"] + offsets[k] for k, g in enumerate(got)]),
                "checkpoint_state": np.concatenate([g["checkpoint_state"] for g in got]),
                "end_state": np.concatenate([g["end_state"] for g in got])}

    @property
    def report(self) -> BuildReport:
        """What the last write of this dataset did (its build, or its latest append), typed."""
        return read_report(self.manifest, self.record, len(self.parts))

    def file_records(self) -> list[tuple[Path, dict, str]]:
        """Every shard and state file of every part: ``(folder, record, description)``."""
        return [(root, rec, f"{part.path.name}/{what}") for part in self.parts
                for root, rec, what in part.file_records()]


def combine_manifests(record: dict, parts: list[Store], where) -> dict:
    """One store manifest for the parts of a dataset, laid end to end (refuses parts that do not belong).

    ``where``: the dataset's ``dataset.json``, named in the refusals.
    """
    series, shards, sources, symbols, appends = [], [], [], [], []
    bar0 = src0 = 0
    boundaries = record["splits"]["boundaries"]
    try:
        config = FeatureConfig.from_dict(record["config"])
    except ConfigError as err:
        raise StoreError(f"{where}: bad feature config ({err}); rebuild the dataset.") from None
    for entry, part in zip(record["parts"], parts):
        d = entry["dir"]
        if part.config != config:
            raise StoreError(f"{where}: part {d} was built with another feature config than the dataset's; "
                             "rebuild the dataset.")
        if part.splits["boundaries"] != boundaries:
            raise StoreError(f"{where}: part {d} is split at other boundaries than the dataset; rebuild the dataset.")
        if part.symbols != list(entry["symbols"]) or part.n_bars != entry["n_bars"]:
            raise StoreError(f"{where}: part {d} holds {part.n_bars} bars of {part.symbols}, but the dataset lists "
                             f"{entry['n_bars']} bars of {entry['symbols']}; rebuild the dataset.")
        series += [dict(g, first=g["first"] + bar0, source=g["source"] + src0) for g in part.manifest["series"]]
        shards += [dict(s, file=f"{d}/{s['file']}", first=s["first"] + bar0) for s in part.manifest["shards"]]
        appends += [dict(a, source=a["source"] + src0, part=d) for a in part.appends]
        sources += part.sources
        symbols += part.symbols
        bar0 += part.n_bars
        src0 += len(part.sources)
    counts = {name: {key: sum(p.splits["counts"][name][key] for p in parts) for key in ("bars", "windows")}
              for name in splits_mod.SPLIT_NAMES}
    return {
        "format": parts[0].manifest["format"], "version": parts[0].manifest["version"], "created": record["created"],
        "feature_names": list(FEATURE_NAMES), "config": config.to_dict(), "n_bars": bar0, "symbols": symbols,
        "sources": sources, "series": series, "shards": shards,
        "state": {"file": f"{len(parts)} part state files", "bytes": sum(int(p.state_record["bytes"]) for p in parts),
                  "sha256": "", "checkpoint_every": parts[0].state_record["checkpoint_every"]},
        "splits": dict(record["splits"], counts=counts),
        "engine": EngineUse.summed([EngineUse.from_record(p.engine) for p in parts]).record(),
        "timings": record["build"].get("timings") or {k: sum(p.timings.get(k, 0.0) for p in parts)
                                                      for k in ("read_s", "compute_s", "write_s", "total_s")},
        "stats": combine_stats([p.stats for p in parts]),
        "appends": appends,
    }


def combine_stats(parts: list[dict]) -> dict:
    """The ``stats`` record of several stores' bars together, from their own records.

    Counts and extremes add up exactly; means and standard deviations combine in
    float64 (:func:`.stats.merge_stat_records`, Chan's pairwise update), equal to a
    recomputation to ~1e-15 relative.
    """
    per_symbol: dict = {}
    for st in parts:
        per_symbol.update(st["per_symbol"])
    return dict(merge_stat_records(parts), per_symbol=per_symbol)
