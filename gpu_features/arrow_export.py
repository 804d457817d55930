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
from .fileio import fsync_file, temp_sibling


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


def write_parquet(store, out, overwrite: bool = False) -> Path:
    """Write :func:`store_to_arrow` to the parquet file ``out`` (a temporary sibling, flushed, renamed into place)."""
    import os

    import pyarrow.parquet as pq

    out = Path(out)
    if out.is_dir():
        raise GpuFeaturesError(f"{out} is a directory; --layout parquet writes one file, e.g. --output features.parquet.")
    if out.exists() and not overwrite:
        raise GpuFeaturesError(f"{out} already exists; pass --overwrite to replace it or choose another --output.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(out, "tmp")
    try:
        pq.write_table(store_to_arrow(store), tmp)
        fsync_file(tmp)  # the bytes are on disk before the name points at them, as for every other artifact
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
