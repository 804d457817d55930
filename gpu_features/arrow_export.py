"""A store as one Arrow table, and ``export --layout parquet``.

``store_to_arrow(store)`` (also ``Store.to_arrow()``) gives one row per bar, in
store order: ``timestamp`` (timestamp[ns, UTC]), ``symbol`` (dictionary of the
store's symbols; integer codes, no per-row strings), ``valid`` (bool) and the
ten features (float32, FEATURES.md names). pandas and polars take it as is
(``table.to_pandas()``, ``polars.from_arrow(table)``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import FEATURE_NAMES
from .errors import GpuFeaturesError
from .fileio import absolute, check_replaceable, check_writable, fsync_file, inside, temp_sibling


def store_to_arrow(store):
    """``pyarrow.Table`` of a store's bars: timestamp, symbol, valid, then the ten features."""
    import pyarrow as pa

    feats = store.array("features")
    symbols = pa.array(store.symbols, type=pa.string())
    codes = pa.array(store.symbol_of_bar().astype(np.int32), type=pa.int32())
    cols = {"timestamp": pa.array(store.timestamps(), type=pa.timestamp("ns", tz="UTC")),
            "symbol": pa.DictionaryArray.from_arrays(codes, symbols),
            "valid": pa.array(store.array("valid"), type=pa.bool_())}
    for k, name in enumerate(FEATURE_NAMES):
        cols[name] = pa.array(np.ascontiguousarray(feats[:, k]), type=pa.float32())
    return pa.table(cols)


PARQUET_KEY = b"gpu_features"  # schema metadata key of our parquet exports: how one is recognised
PARQUET_FORMAT = "gpu-features parquet export"


def is_parquet_export(path) -> bool:
    """True when ``path`` is a parquet file this package wrote (its schema metadata says so)."""
    import json

    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta.get(PARQUET_KEY, b"{}")).get("format") == PARQUET_FORMAT
    except Exception:  # not parquet, unreadable, not our JSON: not ours
        return False


def write_parquet(store, out, overwrite: bool = False) -> Path:
    """Write :func:`store_to_arrow` to the parquet file ``out`` (a temporary sibling, flushed, renamed into place).

    The file's schema metadata marks it as ours (``gpu_features``: format, source store), and only such a
    file is ever replaced (with ``overwrite``); an ``out`` inside the store being read is refused.
    """
    import json
    import os

    import pyarrow.parquet as pq

    given, out = out, absolute(out)
    if not out.name:
        raise GpuFeaturesError(f"--output {given} is the filesystem root; --layout parquet writes one file, e.g. "
                               "--output features.parquet.")
    if out.is_dir():
        raise GpuFeaturesError(f"{given} is a directory; --layout parquet writes one file, e.g. --output "
                               "features.parquet.")
    if inside(out, store.path):
        raise GpuFeaturesError(f"--output {given} lies inside the store {store.path} it exports; an export is written "
                               "outside the store, so choose another --output.")
    check_replaceable(out, given, is_parquet_export, "a gpu-features parquet export", overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_writable(out.parent, "--output")  # a read-only target is not a full disk
    table = store_to_arrow(store)
    mark = json.dumps({"format": PARQUET_FORMAT, "store": str(store.path), "store_created": store.created})
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), PARQUET_KEY: mark.encode()})
    tmp = temp_sibling(out, "tmp")
    try:
        pq.write_table(table, tmp)
        fsync_file(tmp)  # the bytes are on disk before the name points at them, as for every other artifact
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
