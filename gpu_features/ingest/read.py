"""The entry point of ingest: :func:`read_bars` reads and validates bars; :func:`reread` reads a store's
source again the way its manifest record says."""
from __future__ import annotations

from pathlib import Path

from ..errors import BarsError
from .assemble import assemble
from .bars import Bars
from .cudf_reader import cudf_module, read_bars_cudf
from .decode import Decoded, decode_inputs
from .inputs import expand_inputs, is_table
from .spec import POLICIES, READERS, ReadSpec


def read_bars(source, on_bad_bars: str = "error", reader: str = "pyarrow", *, spec: ReadSpec | None = None,
              **settings) -> Bars:
    """Read and validate bars from files or a table.

    Args:
        source: a file (parquet, CSV, compressed CSV, DBN, SCID, Polygon JSON), a list of files, a
            directory, a glob, or a pyarrow/pandas/polars table (the Arrow interface).
        on_bad_bars: ``"error"`` (default), ``"drop"`` or ``"repair"`` (:mod:`.assemble`).
        reader: ``"pyarrow"`` (default: numpy arrays), ``"cudf"`` (parquet decoded on the GPU,
            CuPy arrays; needs cudf) or ``"auto"`` (cudf for one generic parquet file when it imports,
            else pyarrow). ``precompute`` and the CLI, which only hand the prices to an engine,
            default to auto.
        spec: the read settings (:class:`ReadSpec`; default: all defaults).
        **settings: :class:`ReadSpec` fields that replace the spec's (``format``, ``timezone``,
            ``time_column``, ``symbol_column``, ``roll_column``, ``allow_nonpositive``, ``on_overlap``...).

    Returns:
        :class:`Bars` with float64 prices and int64 ns timestamps.

    Raises:
        BarsError: one sentence naming the file, the rule, the count, the first rows and the fix.
    """
    if on_bad_bars not in POLICIES:
        raise BarsError(f"on_bad_bars must be one of {', '.join(POLICIES)}, got {on_bad_bars!r}.")
    if reader not in READERS:
        raise BarsError(f"reader must be one of {', '.join(READERS)}, got {reader!r}.")
    spec = (spec or ReadSpec()).replace(**settings)
    note = None
    if not is_table(source):
        paths = expand_inputs(source)
        one_parquet = len(paths) == 1 and paths[0].name.lower().endswith((".parquet", ".pq"))
        plain = spec.layout_is_default() and not spec.allow_nonpositive
        if reader == "cudf" and not (one_parquet and plain):
            raise BarsError(f"{paths[0]}: the cudf reader decodes parquet only (one generic file, default read options); "
                            "use --reader pyarrow for other inputs.")
        if reader == "cudf" or (reader == "auto" and one_parquet and plain and cudf_module() is not None):
            got = read_bars_cudf(paths[0], on_bad_bars)
            if isinstance(got, Bars):
                return got
            note = got
        source = paths
    elif reader == "cudf":
        raise BarsError("the cudf reader decodes parquet files; use reader='pyarrow' for a table in memory.")
    dec = decode_inputs(source, spec)
    where = ("the table" if is_table(source) else str(source[0]) if len(source) == 1
             else f"{len(source)} input files")
    bars = assemble(where, dec.prices, dec.timestamp, None, on_bad_bars, read_record(dec, spec),
                    codes=dec.symbol_codes, names=dec.symbol_names if dec.symbol_codes is not None else None,
                    one_name=dec.symbol_names[0] if dec.symbol_codes is None else None, roll=dec.roll_codes,
                    file_of_row=dec.file_of_row if len(dec.files) > 1 else None, label=dec.row_label,
                    file_names=[Path(f.get("path", "table")).name for f in dec.files],
                    allow_nonpositive=spec.allow_nonpositive, max_drop_fraction=spec.max_drop_fraction,
                    on_overlap=spec.on_overlap, series_column=dec.keyed)
    bars.ingest["reader"] = "pyarrow"
    if dec.warnings:
        bars.ingest["warnings"] = list(dec.warnings)
    if note:
        bars.ingest["reader_note"] = note
    return bars


def read_record(dec: Decoded, spec: ReadSpec) -> dict:
    """The bars' ``source`` record: the file digest(s), plus how they were read where that differs from the defaults."""
    read = spec.record(dec.format, dec.bar_time)
    files = [{k: v for k, v in f.items() if k != "rows"} for f in dec.files]
    rec = dict(files[0]) if len(files) == 1 else {"kind": "files", "files": files}
    if read:
        rec["read"] = read
    return rec


def reread(record: dict, paths) -> Bars:
    """The bars of a manifest source record read again from ``paths`` (its files, or replacements given in
    their place), with the read settings and the ingest policy the record holds, so that bars dropped then
    are dropped again, identically."""
    return read_bars(paths, on_bad_bars=record.get("ingest", {}).get("policy", "error"),
                     spec=ReadSpec.from_record(record.get("read")))
