"""The store format (version 1): names, sizes, and the checks that trust nothing on disk.

Layout of a store directory (format ``gpu-features-store``, version 1)::

    manifest.json                 the commit point; everything else is listed here
    bars-00000.safetensors        features f32 [m,10], timestamp i64 [m], valid bool [m]
    ...                           (numbered in bar order; appends continue the numbering)
    state.safetensors             checkpoint_bar i64 [c], checkpoint_state f64 [c,16+P],
                                  end_state f64 [symbols,16+P]

The manifest holds the format and version, feature names, the full config,
the sources (kind ``file``: path, bytes, sha256, read options and ingest
record; ``files``: the same per file; ``synthetic``: the generator's
parameters; ``memory``: bars handed over in memory), the series segments (name, first bar, count, local index of the
first bar), shards (file, first bar, count, bytes, sha256), the state file,
the chronological splits with bar and window counts, the engine that ran,
timings, and per-feature statistics over valid bars, per symbol too.

Every check here raises :class:`StoreError` with one sentence naming the file
and the problem; :mod:`.reader` runs them when a store is opened.
"""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np

from ..config import MAX_WINDOW_LENGTH, N_FEATURES
from ..errors import StoreError
from ..fileio import absolute, check_parents, describe_entries, folder_entries, inside, read_json_file, sha256_file

FORMAT = "gpu-features-store"
VERSION = 1
MANIFEST = "manifest.json"
STATE_FILE = "state.safetensors"
# A dataset of part stores (store/dataset.py reads and writes it; its names live here, with the store's,
# so that one check recognises both as ours).
DATASET_FORMAT = "gpu-features-dataset"
DATASET_VERSION = 1
DATASET_MANIFEST = "dataset.json"
SHARD_BARS = 1 << 19          # 524,288 bars (20 MB of features) per shard: 1.8M bars -> 4 shards
CHECKPOINT_BARS = 4096        # verify recomputes whole checkpoint intervals of this many bars
# Limits a manifest is checked against before anything is allocated from its numbers.
MAX_BARS = 1 << 34            # 17 billion bars (0.7 TB of features): far above any real store
MAX_MANIFEST_BYTES = 1 << 30  # a 1.8M-bar manifest is a few kB

# tensor name -> (safetensors dtype, trailing shape) of every shard
SHARD_TENSORS = {"features": ("F32", (N_FEATURES,)), "timestamp": ("I64", ()), "valid": ("BOOL", ())}
_DTYPE_BYTES = {"F32": 4, "F64": 8, "I64": 8, "BOOL": 1, "I8": 1, "U8": 1, "I32": 4}


def shard_name(index: int) -> str:
    """File name of the ``index``-th shard in bar order (appends continue the numbering)."""
    return f"bars-{index:05d}.safetensors"


# --- safetensors headers ---------------------------------------------------------------------


def read_safetensors_header(path: Path, where: str) -> dict:
    """Parse and check a safetensors header without trusting it.

    Returns ``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {...}}``;
    raises StoreError naming ``where`` when the header is cut short, not JSON,
    or describes tensors that overlap, leave gaps or run past the end of the file.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise StoreError(f"{where}: file is {size} bytes, too short for a safetensors header; rebuild the store.")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 100_000_000:
            raise StoreError(f"{where}: header length {n} runs past the file's {size} bytes (truncated or "
                             "corrupt); rebuild the store.")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise StoreError(f"{where}: the safetensors header is not valid JSON (corrupt); rebuild the store.") from None
    if not isinstance(header, dict):
        raise StoreError(f"{where}: the safetensors header is not a JSON object; rebuild the store.")
    data_len = size - 8 - n
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (a, b) = info["dtype"], [int(x) for x in info["shape"]], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise StoreError(f"{where}: tensor '{name}' has a malformed header entry; rebuild the store.") from None
        want = int(np.prod(shape, dtype=np.int64)) * _DTYPE_BYTES.get(dtype, 0)
        if dtype not in _DTYPE_BYTES or b - a != want or a < 0 or b > data_len:
            raise StoreError(f"{where}: tensor '{name}' ({dtype} {shape}) does not fit its byte range "
                             f"[{a}, {b}) of {data_len} data bytes (truncated or corrupt); rebuild the store.")
        spans.append((a, b))
    spans.sort()
    pos = 0
    for a, b in spans:
        if a != pos:
            raise StoreError(f"{where}: tensor data overlaps or leaves a gap at byte {pos}; rebuild the store.")
        pos = b
    if pos != data_len:
        raise StoreError(f"{where}: {data_len - pos} bytes after the last tensor (corrupt); rebuild the store.")
    return header


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its ``__metadata__`` keys sorted.

    The safetensors library writes metadata from a hash map, so its key order (and the file's
    SHA-256) changes from run to run; sorting it makes equal tensors and metadata give equal bytes.
    The header keeps its length (same keys and values, compact JSON, the original space padding),
    so tensor offsets are unchanged. This defines a store file's bytes; the store writer lays them out
    directly from the arrays (``writer.safetensors_parts``) and tests compare the two.
    """
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    ordered = ({"__metadata__": dict(sorted(meta.items()))} if meta is not None else {})
    ordered.update(header)
    raw = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > n:  # never: the same keys and values; keep the library's bytes rather than break offsets
        return data
    return data[:8] + raw + b" " * (n - len(raw)) + data[8 + n:]


def check_tensor(header: dict, where: str, name: str, dtype: str, shape: tuple) -> None:
    info = header.get(name)
    if info is None:
        raise StoreError(f"{where}: tensor '{name}' is missing; rebuild the store.")
    if info["dtype"] != dtype or tuple(info["shape"]) != tuple(shape):
        raise StoreError(f"{where}: tensor '{name}' is {info['dtype']} {list(info['shape'])}, "
                         f"expected {dtype} {list(shape)}; rebuild the store.")


# --- the manifest --------------------------------------------------------------------------


_MANIFEST_SCHEMA = {
    "format": str, "version": int, "created": str, "feature_names": list, "config": dict, "n_bars": int,
    "symbols": list, "sources": list, "series": list, "shards": list, "state": dict, "splits": dict,
    "engine": dict, "timings": dict, "stats": dict,
}
_SERIES_KEYS = {"name": str, "first": int, "count": int, "start_index": int, "source": int, "source_first": int}
_SHARD_KEYS = {"file": str, "first": int, "count": int, "bytes": int, "sha256": str}
_STATE_KEYS = {"file": str, "bytes": int, "sha256": str, "checkpoint_every": int}


def check_schema(obj: dict, schema: dict, where: str) -> None:
    """Every key of ``schema`` present in ``obj`` with its type (``bool`` is not an ``int`` here)."""
    if not isinstance(obj, dict):
        raise StoreError(f"{where}: expected a JSON object; rebuild the store.")
    for key, typ in schema.items():
        if key not in obj:
            raise StoreError(f"{where}: required key '{key}' is missing; rebuild the store.")
        value = obj[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise StoreError(f"{where}: key '{key}' should be {typ.__name__}, got {type(value).__name__}; "
                             "rebuild the store.")


def check_layout(manifest: dict, mpath: Path, n: int) -> None:
    """Segments and shards must each tile bars 0..n in order, without gaps or overlaps."""
    for what, items, keys in (("series", manifest["series"], _SERIES_KEYS), ("shards", manifest["shards"], _SHARD_KEYS)):
        pos = 0
        for k, item in enumerate(items):
            check_schema(item, keys, f"{mpath} {what}[{k}]")
            if item["first"] != pos or item["count"] < 1:
                raise StoreError(f"{mpath}: {what}[{k}] covers bars {item['first']}..+{item['count']} but bar {pos} "
                                 "comes next; the manifest is inconsistent, rebuild the store.")
            pos += item["count"]
        if pos != n:
            raise StoreError(f"{mpath}: {what} cover {pos} bars, n_bars says {n}; rebuild the store.")
    names = {s["name"] for s in manifest["series"]}
    if names != set(manifest["symbols"]):
        raise StoreError(f"{mpath}: symbols {manifest['symbols']} do not match the series names; rebuild the store.")


def check_file(root: Path, record: dict, what: str, checksum: bool) -> None:
    """A file a manifest record names: a plain name inside ``root``, of the recorded size and, with
    ``checksum``, of the recorded SHA-256."""
    p = root / record["file"]
    if Path(record["file"]).name != record["file"] or record["file"] in ("", ".", ".."):
        raise StoreError(f"{what}: file name must not contain a path; the manifest is corrupt.")
    if p.is_symlink() and p.resolve().parent != root.resolve():
        raise StoreError(f"{what} is a symbolic link to {p.resolve()}, outside the store; a store's files must "
                         "live in its folder, so replace the link with the file or rebuild the store.")
    if not p.is_file():
        raise StoreError(f"{what} is missing from {root}; the store is incomplete, rebuild it.")
    size = p.stat().st_size
    if size != record["bytes"]:
        raise StoreError(f"{what} has {size} bytes but the manifest says {record['bytes']} (truncated or "
                         "replaced); rebuild the store.")
    if checksum and sha256_file(p) != record["sha256"]:
        raise StoreError(f"{what} fails its SHA-256 checksum (the bytes changed since it was written); "
                         "rebuild the store.")


def read_json_record(mpath: Path, fmt: str, version: int, kind: str, what: str) -> dict:
    """Read a JSON record (a store's manifest, a dataset's ``dataset.json``), distrusted, and check its
    ``format`` and ``version``.

    Refused in one sentence naming ``mpath``: larger than :data:`MAX_MANIFEST_BYTES`, not UTF-8, not
    JSON, nested deeper than the parser recurses (corrupt or crafted)
    (:func:`~gpu_features.fileio.read_json_file`), not an object of format ``fmt``, or another version;
    ``kind`` (``store``, ``dataset``) names what to rebuild, ``what`` the file (``manifest``...).
    """
    record = read_json_file(mpath, f"a {what}", f"rebuild the {kind}.", StoreError, MAX_MANIFEST_BYTES)
    if not isinstance(record, dict) or record.get("format") != fmt:
        raise StoreError(f"{mpath}: format is {record.get('format') if isinstance(record, dict) else None!r}, "
                         f"not {fmt!r}; this is not a gpu-features {kind}.")
    if record.get("version") != version:
        raise StoreError(f"{mpath}: {kind} version {record.get('version')!r} is unknown; this gpu-features reads "
                         f"version {version}, so rebuild the {kind} or use a matching gpu-features.")
    return record


def read_manifest(path: Path) -> dict:
    """Read and check ``path/manifest.json``: JSON, format, version, schema, config, feature names, layout.

    Returns:
        The manifest dict; every key the readers use is present with its type.
    """

    mpath = path / MANIFEST
    if not path.is_dir():
        raise StoreError(f"{path}: no such store directory; build one with `gpu-features precompute`.")
    if not mpath.is_file():
        names = folder_entries(path)
        if any(not _STORE_NAMES.fullmatch(n) for n in names):  # not a store whose manifest is missing: say what it is
            raise StoreError(f"{path}: no {MANIFEST} (it holds {describe_entries(path, names)}), so this is not a "
                             "gpu-features store; give a store's folder.")
        raise StoreError(f"{path}: no {MANIFEST}, so this is not a complete gpu-features store; rebuild it.")
    manifest = read_json_record(mpath, FORMAT, VERSION, "store", "manifest")
    check_manifest(manifest, mpath)
    return manifest


def check_manifest(manifest: dict, mpath: Path) -> None:
    """Every check :func:`read_manifest` makes of a parsed manifest: schema, config, feature names, sizes,
    layout, state record, sources, splits and statistics. Writers run it on the manifest they are about
    to commit, so a store that would not open is never swapped in."""
    from ..config import FEATURE_NAMES, FeatureConfig
    from ..errors import ConfigError

    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise StoreError(f"{mpath}: not a {FORMAT} version {VERSION} manifest; rebuild the store.")
    check_schema(manifest, _MANIFEST_SCHEMA, f"{mpath}")
    try:
        FeatureConfig.from_dict(manifest["config"])
    except ConfigError as err:
        raise StoreError(f"{mpath}: bad config ({str(err).rstrip('.')}); rebuild the store.") from None
    if list(manifest["feature_names"]) != list(FEATURE_NAMES):
        raise StoreError(f"{mpath}: feature names {manifest['feature_names']} differ from {list(FEATURE_NAMES)}, "
                         "the features this gpu-features computes; rebuild the store.")
    if not 1 <= manifest["n_bars"] <= MAX_BARS:
        raise StoreError(f"{mpath}: n_bars = {manifest['n_bars']} is out of range 1 .. {MAX_BARS}; rebuild the store.")
    window_length = manifest["config"].get("window_length", 2)
    if not (isinstance(window_length, int) and window_length <= MAX_WINDOW_LENGTH):
        raise StoreError(f"{mpath}: config window_length = {window_length!r} is above the limit "
                         f"{MAX_WINDOW_LENGTH}; rebuild the store with a sane --window-length.")
    if not all(isinstance(x, str) for x in manifest["symbols"]) or len(set(manifest["symbols"])) != len(manifest["symbols"]):
        raise StoreError(f"{mpath}: symbols must be distinct strings; rebuild the store.")
    check_layout(manifest, mpath, manifest["n_bars"])
    check_schema(manifest["state"], _STATE_KEYS, f"{mpath} state")
    if manifest["state"]["checkpoint_every"] < 1:
        raise StoreError(f"{mpath} state: checkpoint_every must be >= 1; rebuild the store.")
    check_sources(manifest, mpath)
    check_splits(manifest["splits"], mpath)
    check_stats(manifest["stats"], manifest["symbols"], mpath)


def _number(x, optional: bool = False) -> bool:
    if x is None:
        return optional
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_BARS


def check_sources(manifest: dict, mpath: Path) -> None:
    """``sources``: a non-empty list of records each series entry can point into, with sane sizes."""
    sources = manifest["sources"]
    if not sources:
        raise StoreError(f"{mpath}: sources is empty, so the bars behind the store are unknown; rebuild the store.")
    for k, rec in enumerate(sources):
        where = f"{mpath} sources[{k}]"
        if not isinstance(rec, dict) or rec.get("kind") not in ("file", "files", "synthetic", "memory"):
            raise StoreError(f"{where}: expected an object with kind file, files, synthetic or memory; "
                             "rebuild the store.")
        if rec["kind"] == "file" and not isinstance(rec.get("path"), str):
            raise StoreError(f"{where}: a file source needs its path; rebuild the store.")
        if rec["kind"] == "files" and not (isinstance(rec.get("files"), list) and rec["files"] and all(
                isinstance(f, dict) and isinstance(f.get("path"), str) for f in rec["files"])):
            raise StoreError(f"{where}: a many-file source needs a non-empty list of files with their paths; "
                             "rebuild the store.")
        if rec["kind"] == "synthetic":
            for key in ("n_bars", "n_symbols", "seed"):
                if not _count(rec.get(key)):
                    raise StoreError(f"{where}: {key} = {rec.get(key)!r} is not a count in 0 .. {MAX_BARS}; "
                                     "rebuild the store.")
            if rec["n_bars"] * max(rec["n_symbols"], 1) > MAX_BARS:
                raise StoreError(f"{where}: {rec['n_bars']} x {rec['n_symbols']} bars is above the limit "
                                 f"{MAX_BARS}; rebuild the store.")
        take = rec.get("take")
        if take is not None and not (isinstance(take, list) and len(take) == 3 and all(_count(x) for x in take)
                                     and take[0] < take[1]):
            raise StoreError(f"{where}: take must be [start, stop, series] with start < stop; rebuild the store.")
    for k, g in enumerate(manifest["series"]):
        if not (0 <= g["source"] < len(sources)) or g["source_first"] < 0 or g["start_index"] < 0:
            raise StoreError(f"{mpath} series[{k}]: source {g['source']} (first {g['source_first']}, start index "
                             f"{g['start_index']}) is outside the {len(sources)} source(s); rebuild the store.")


def check_splits(splits: dict, mpath: Path) -> None:
    """``splits``: three tiling ``[start, end)`` boundaries (ns or None) and bar/window counts per split."""
    from ..splits import SPLIT_NAMES

    b = splits.get("boundaries")
    ok = (isinstance(b, list) and len(b) == 3 and all(isinstance(x, list) and len(x) == 2 for x in b)
          and all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for pair in b for x in pair))
    ok = ok and b[0][0] is None and b[2][1] is None and b[0][1] == b[1][0] and b[1][1] == b[2][0] \
        and isinstance(b[1][0], int) and isinstance(b[2][0], int) and b[1][0] <= b[2][0] \
        and all(-(1 << 63) <= x < (1 << 63) for x in (b[1][0], b[2][0]))
    if not ok:
        raise StoreError(f"{mpath} splits: boundaries must be three tiling [start, end) pairs of ns timestamps "
                         "(open at both ends); the manifest is corrupt, rebuild the store.")
    counts = splits.get("counts")
    if not (isinstance(counts, dict) and set(counts) == set(SPLIT_NAMES)
            and all(isinstance(c, dict) and _count(c.get("bars")) and _count(c.get("windows"))
                    for c in counts.values())):
        raise StoreError(f"{mpath} splits: counts must give bars and windows of {', '.join(SPLIT_NAMES)}; "
                         "the manifest is corrupt, rebuild the store.")


_FEATURE_STAT_KEYS = ("min", "max", "mean", "std", "nonzero")


def _check_stat_block(block, where: str, with_fraction: bool) -> None:
    from ..config import FEATURE_NAMES

    if not (isinstance(block, dict) and _count(block.get("bars")) and _count(block.get("valid_bars"))):
        raise StoreError(f"{where}: bars and valid_bars must be counts; the manifest is corrupt, rebuild the store.")
    if with_fraction and not _number(block.get("valid_fraction")):
        raise StoreError(f"{where}: valid_fraction must be a number; the manifest is corrupt, rebuild the store.")
    feats = block.get("features")
    if not (isinstance(feats, dict) and all(isinstance(feats.get(n), dict) and
                                            all(_number(feats[n].get(k), True) for k in _FEATURE_STAT_KEYS)
                                            for n in FEATURE_NAMES)):
        raise StoreError(f"{where}: features must hold min, max, mean, std and nonzero of every feature; the "
                         "manifest is corrupt, rebuild the store.")
    sw = block.get("swings")
    if not (isinstance(sw, dict) and _count(sw.get("highs")) and _count(sw.get("lows"))
            and _number(sw.get("per_1000_bars")) and _number(sw.get("bars_per_swing"), True)):
        raise StoreError(f"{where}: swings must hold highs, lows, per_1000_bars and bars_per_swing; the manifest "
                         "is corrupt, rebuild the store.")


def check_stats(stats: dict, symbols: list, mpath: Path) -> None:
    """``stats``: overall and per-symbol counts, feature moments and swing rates, of the right types."""
    _check_stat_block(stats, f"{mpath} stats", True)
    per = stats.get("per_symbol")
    if not (isinstance(per, dict) and set(per) == set(symbols)):
        raise StoreError(f"{mpath} stats: per_symbol must have an entry for each of the symbols; the manifest is "
                         "corrupt, rebuild the store.")
    for name in symbols:
        _check_stat_block(per[name], f"{mpath} stats per_symbol {name}", False)


def check_states(states: dict, manifest: dict, where: str) -> None:
    """The state file's checkpoint bars: strictly increasing store positions in ``0 .. n_bars - 1``,
    holding every series segment's first bar (verify, plot and append index by them)."""
    cps = states["checkpoint_bar"]
    n = manifest["n_bars"]
    firsts = np.array([g["first"] for g in manifest["series"]], dtype=np.int64)
    if (len(cps) == 0 or cps[0] < 0 or cps[-1] >= n or np.any(np.diff(cps) <= 0)
            or not np.all(np.isin(firsts, cps))):
        raise StoreError(f"{where}: checkpoint bars must increase strictly inside 0 .. {n - 1} and include every "
                         "series start; the state file is corrupt, rebuild the store.")


def check_files(path: Path, manifest: dict, state_dim: int, checksums: bool) -> None:
    """Every shard and the state file: present, inside the store, recorded size, safetensors header and
    tensor shapes, and with ``checksums`` the SHA-256 of each (last, so a forged header is named as such)."""
    for shard in manifest["shards"]:
        where = f"shard {shard['file']}"
        check_file(path, shard, where, False)
        header = read_safetensors_header(path / shard["file"], where)
        for name, (dtype, tail) in SHARD_TENSORS.items():
            check_tensor(header, where, name, dtype, (shard["count"],) + tail)
    st = manifest["state"]
    where = f"state file {st['file']}"
    check_file(path, st, where, False)
    header = read_safetensors_header(path / st["file"], where)
    n_cp = header.get("checkpoint_bar", {}).get("shape", [0])[0]
    check_tensor(header, where, "checkpoint_bar", "I64", (n_cp,))
    check_tensor(header, where, "checkpoint_state", "F64", (n_cp, state_dim))
    check_tensor(header, where, "end_state", "F64", (len(manifest["symbols"]), state_dim))
    if checksums:
        for record, what in [(s, f"shard {s['file']}") for s in manifest["shards"]] + [(st, where)]:
            check_file(path, record, what, True)


# --- only our own files: what an output may replace ------------------------------------------

# Names a store folder holds: the manifest, shards, state files (appends add numbered ones) and the
# manifest's temporary file while it is replaced. Anything else is not the store's.
_STORE_NAMES = re.compile(r"manifest\.json|bars-\d{5,}\.safetensors|state(-append\d{3,})?\.safetensors"
                          r"|\.manifest\.json\.tmp-[0-9a-f]{8}")
# Names a dataset folder holds: dataset.json (and its temporary file), part stores (renamed per append
# generation), their locks and the temporary or old copies a killed part writer leaves.
_DATASET_NAMES = re.compile(r"dataset\.json|\.dataset\.json\.tmp-[0-9a-f]{8}|part-\d{5,}(-g\d{3,})?"
                            r"|\.part-\d{5,}(-g\d{3,})?(\.lock|\.(tmp|old)-[0-9a-f]{8})")
_PART_DIR = re.compile(r"part-\d{5,}(-g\d{3,})?")


def _format_of(path: Path) -> str | None:
    """The ``format`` a JSON record claims, or None when it cannot be read as one."""
    try:
        record = read_json_file(path, "a record", "", StoreError, MAX_MANIFEST_BYTES)
    except StoreError:
        return None
    return record.get("format") if isinstance(record, dict) else None


def _shard_says_ours(path: Path) -> bool:
    """A shard or state file whose safetensors metadata names the store format (a store whose manifest
    was damaged is still recognisably ours by its data files)."""
    try:
        return read_safetensors_header(path, str(path)).get("__metadata__", {}).get("format") == FORMAT
    except (StoreError, OSError, AttributeError):
        return False


def artifact_kind(path) -> str | None:
    """``"store"`` or ``"dataset"`` when the folder ``path`` holds a record of that format, else None."""
    path = Path(path)
    if (path / DATASET_MANIFEST).is_file() and _format_of(path / DATASET_MANIFEST) == DATASET_FORMAT:
        return "dataset"
    if (path / MANIFEST).is_file() and _format_of(path / MANIFEST) == FORMAT:
        return "store"
    return None


def enclosing_artifact(path) -> tuple[Path, str] | None:
    """The store or dataset folder that ``path`` is or lies inside (``(folder, kind)``), or None: a store's
    folder holds only the store's files, so nothing else (a run, a chart) may be written into it."""
    p = absolute(path)
    for folder in [p, *p.parents]:
        kind = artifact_kind(folder)
        if kind:
            return folder, kind
    return None


def check_outside_artifact(path, said: str, instead: str, error: type = StoreError) -> None:
    """Refuse a file to be written at ``path`` when its folder is or lies inside a feature store or dataset (whose
    folder holds only its own files): one sentence beginning with ``said`` (``--out chart.png``) and ending with
    what to do ``instead`` (``write the chart elsewhere``)."""
    holder = enclosing_artifact(absolute(path).parent)
    if holder is not None:
        raise error(f"{said} lies inside the feature {holder[1]} {holder[0]}; its folder holds only the {holder[1]}'s "
                    f"files, so {instead}.")


def store_folder(path: Path) -> tuple[bool, list[str]]:
    """``(ours, foreign)``: whether the folder ``path`` is recognisably a store (its manifest, or failing
    that one of its data files, says so) and which of its entries are not a store's files."""
    names = folder_entries(path)
    foreign = [n for n in names if not (_STORE_NAMES.fullmatch(n) and not (path / n).is_dir())]
    data = [n for n in names if n not in foreign and n.endswith(".safetensors")]
    ours = MANIFEST in names and (_format_of(path / MANIFEST) == FORMAT
                                  or any(_shard_says_ours(path / n) for n in data[:2]))
    return ours, foreign


def dataset_folder(path: Path) -> tuple[bool, list[str]]:
    """``(ours, foreign)`` of a dataset folder: its ``dataset.json`` names the format, and every entry is
    the record, a part store holding only a store's files (``part-00000/notes.txt`` is foreign), or a
    part's lock or leftover."""
    names = folder_entries(path)
    foreign = []
    for n in names:
        if not _DATASET_NAMES.fullmatch(n):
            foreign.append(n)
        elif _PART_DIR.fullmatch(n):
            if not (path / n).is_dir() or (path / n).is_symlink():
                foreign.append(n)
            else:
                foreign += [f"{n}/{m}" for m in store_folder(path / n)[1]]
    ours = DATASET_MANIFEST in names and _format_of(path / DATASET_MANIFEST) == DATASET_FORMAT
    return ours, foreign


def input_paths(source) -> list:
    """The paths among what a writer reads (a path, a list of paths; bars or tables in memory give none),
    for :func:`check_output`."""
    import os

    items = [source] if isinstance(source, (str, os.PathLike)) else source if isinstance(source, (list, tuple)) else []
    return [x for x in items if isinstance(x, (str, os.PathLike))]


def check_inputs_outside(folder: Path, inputs, kind: str = "store") -> None:
    """Refuse inputs that lie inside the store or dataset ``folder`` an append writes (its folder holds
    only its own files; a file left there would block every later ``--overwrite``)."""
    for item in inputs:
        if Path(item).exists() and inside(item, folder):
            raise StoreError(f"the input {item} lies inside the {kind} {folder}; a {kind} folder holds only its own "
                             "files, so move the input out of it and run the command again.")


def check_output(out, overwrite: bool, inputs=(), option: str = "--output") -> Path:
    """The one check of where a store or dataset is to be written (``precompute``, ``--distributed``).

    Accepted: a new path, an empty folder, or, with ``overwrite``, a store or dataset that is
    recognisably ours and whole (it holds nothing but its own files). Refused in one sentence naming
    what is in the way, and never suggesting ``--overwrite`` where it would be refused too: a path
    below a file, the filesystem root, a file, a folder that is not ours or holds anything else, an
    output that is one of the ``inputs``, holds one, or lies inside an input folder.

    Returns:
        ``out`` as an absolute path (``--output .`` has a name from here on).
    """
    given = out
    out = absolute(out)
    check_parents(out, option, StoreError)
    if not out.name:
        raise StoreError(f"{option} {given} is the filesystem root; a store is a folder of its own, so choose a "
                         f"new folder below it.")
    for item in inputs:
        if inside(out, item) and Path(item).is_dir():
            raise StoreError(f"{option} {given} is inside the input folder {item}; a store written there would "
                             f"mix with the bars it is read from, so choose an {option} outside it.")
        if inside(item, out):
            raise StoreError(f"the input {item} lies inside {option} {given}; replacing that folder would delete "
                             f"it, so move the input out or choose another {option}.")
    holder = enclosing_artifact(out.parent)
    if holder is not None and not (holder == (out.parent, "dataset") and _PART_DIR.fullmatch(out.name)):
        raise StoreError(f"{option} {given} lies inside the {holder[1]} {holder[0]}; a {holder[1]}'s folder holds only "
                         f"its own files, so choose an {option} outside it.")
    if not out.exists() and not out.is_symlink():
        return out
    if not out.is_dir() or out.is_symlink():
        raise StoreError(f"{given} is a file; refusing to replace it (even with --overwrite), choose another "
                         f"{option}.")
    names = folder_entries(out)
    if not names:
        return out
    ours, foreign = (dataset_folder if DATASET_MANIFEST in names else store_folder)(out)
    kind = "dataset" if DATASET_MANIFEST in names else "store"
    if not ours:
        raise StoreError(f"{given} is a folder that is not a gpu-features store; refusing to replace it (even with "
                         f"--overwrite): it holds {describe_entries(out, names)}, not a store or a dataset, so choose "
                         f"another {option} (a new or empty folder).")
    if foreign:
        raise StoreError(f"{given} is a gpu-features {kind} but also holds {describe_entries(out, foreign)}, which "
                         f"{'is' if len(foreign) == 1 else 'are'} not the {kind}'s; replacing the folder would "
                         f"delete {'it' if len(foreign) == 1 else 'them'}, so move "
                         f"{'it' if len(foreign) == 1 else 'them'} out or choose another {option}.")
    if not overwrite:
        raise StoreError(f"{given} already exists; pass --overwrite to replace it (the old {kind} stays until the new "
                         f"one is complete) or choose another {option}.")
    return out


def check_before_commit(folder: Path, manifest: dict, target: Path, checkpoint_bar=None) -> None:
    """Run on a new store in ``folder`` every check :func:`~gpu_features.store.reader.open_store` will make
    (the manifest, the files' sizes, headers and shapes; the checkpoint bars when given), before it is
    committed as ``target``: a store that would not open is never swapped in.

    Options that could produce such a store are refused before any work (FeatureConfig, split dates);
    this is the net under them, so its refusal says nothing was replaced and asks for a report.
    """
    from .. import state as S
    from ..config import FeatureConfig
    from ..errors import ConfigError

    try:
        check_manifest(manifest, target / MANIFEST)
        cfg = FeatureConfig.from_dict(manifest["config"])
        check_files(folder, manifest, S.state_dim(cfg.atr_period), False)
        if checkpoint_bar is not None:
            check_states({"checkpoint_bar": np.asarray(checkpoint_bar)}, manifest, f"{target} state file")
    except (StoreError, ConfigError) as err:
        raise StoreError(f"{target}: refusing to commit a store that would not open ({str(err).rstrip('.')}); "
                         "nothing was replaced, the previous contents are as they were; please report this "
                         "with the command that was run.") from None
