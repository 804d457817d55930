"""Parquet decoded on the GPU by cudf: the bars stay in device memory (CuPy arrays) for the GPU engine.

Only a generic parquet file read with the default settings takes this path
(``read_bars(reader="cudf" | "auto")``); a file whose columns or bars need
the host's decoders or policies is handed back to the pyarrow path with a
sentence saying why (recorded as ``ingest.reader_note``). The bars equal
those of the pyarrow path bit for bit.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..errors import BarsError
from .assemble import assemble_clean
from .bars import Bars
from .inputs import file_digest, series_name
from .presets import PRICE_COLUMNS, TIME_COLUMNS, column_map, detect_from_columns, preset, series_key_column
from .times import NS_PER, epoch_scale


@functools.lru_cache(maxsize=1)
def cudf_module():
    """The cudf module, or None where it does not import (not installed, or no usable GPU)."""
    try:
        import cudf

        return cudf
    except Exception:  # ImportError, or cudf's own error when no CUDA driver or device is present
        return None


def read_bars_cudf(path: Path, on_bad_bars: str) -> Bars | str:
    """Bars of a parquet file decoded by cudf, kept on the GPU (see module doc); ``on_bad_bars`` is recorded.

    Returns:
        :class:`Bars` with CuPy arrays, or a sentence saying why the pyarrow path must read the file.
    """
    cudf = cudf_module()
    if cudf is None:
        raise BarsError(f"{path}: the cudf reader needs cudf and a CUDA GPU, and cudf does not import here; "
                        "install gpu-features[cudf] on a GPU machine or use --reader pyarrow.")
    try:
        df = cudf.read_parquet(str(path))
    except Exception as err:  # the pyarrow path reports unreadable files with its own message
        return f"cudf could not decode the file ({type(err).__name__})"
    if len(df) == 0:
        return "the file holds no rows"
    cols = column_map(path, df.columns)
    layout = detect_from_columns(list(cols))
    if layout != "generic":
        return f"the {layout} layout is decoded on the CPU"
    if any(name not in cols for name in PRICE_COLUMNS):
        return "price columns are missing"
    time_name = next((cols[t] for t in TIME_COLUMNS if t in cols), None)
    if time_name is None:
        return "no time column (the time may be the parquet index)"
    for name in PRICE_COLUMNS:
        if df[cols[name]].dtype.kind not in "fiu":
            return f"column '{cols[name]}' has type {df[cols[name]].dtype}, not a float or integer"
    prices = {name: df[cols[name]].astype("float64").to_cupy(na_value=np.nan) for name in PRICE_COLUMNS}
    t = df[time_name]
    if t.null_count:
        return f"time column '{time_name}' has missing values"
    if t.dtype.kind == "M":  # datetime64, naive or with a time zone: int64 counts of its unit since the epoch, UTC
        unit = getattr(t.dtype, "unit", None) or np.datetime_data(t.dtype)[0]
        if unit not in NS_PER:
            return f"time column '{time_name}' has unit {unit}"
        ts = t.astype("int64").to_cupy() * NS_PER[unit]
    elif t.dtype.kind in "iu":
        ts = t.astype("int64").to_cupy()
        ts = ts * epoch_scale(ts)
    else:
        return f"time column '{time_name}' has type {t.dtype}, decoded on the CPU"
    codes, names = None, (series_name(path),)
    key = series_key_column(cols, preset(layout))  # the generic layout with the default settings: ``symbol``
    if key is not None:
        sym = df[key]
        if sym.null_count or str(sym.dtype) not in ("object", "str", "string"):
            return f"symbol column '{key}' has missing values or type {sym.dtype}, not text"
        codes, uniques = cudf.factorize(sym, sort=True)
        names = tuple(str(x) for x in uniques.to_arrow().to_pylist())
    bars = assemble_clean(path, prices, ts, codes, names, on_bad_bars, file_digest(path), "cudf")
    return bars if bars is not None else "some bars break an ingest rule"
