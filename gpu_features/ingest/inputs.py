"""What a read is given: files, directories, globs or a table in memory; the files' digests and series names."""
from __future__ import annotations

import glob as globmod
import os
from pathlib import Path

from ..errors import BarsError

FILE_SUFFIXES = (".parquet", ".pq", ".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".txt", ".txt.gz", ".txt.zst",
                 ".dbn", ".dbn.zst", ".scid", ".json")


def is_table(obj) -> bool:
    """True for a pyarrow Table or anything exporting the Arrow C stream (polars) or a pandas DataFrame."""
    return hasattr(obj, "__arrow_c_stream__") or type(obj).__name__ in ("Table", "DataFrame", "RecordBatch")


def table_from_object(obj):
    """A pyarrow Table from a pyarrow/pandas/polars table (the Arrow C stream interface)."""
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    try:
        return pa.table(obj)
    except Exception as err:  # pyarrow says what it could not convert
        raise BarsError(f"the table could not be converted to Arrow ({str(err).splitlines()[0]}); pass a pyarrow, "
                        "pandas or polars table of bars.") from None


def expand_inputs(inputs) -> list[Path]:
    """Files of one or several inputs: a file, a directory (its bar files, by name), a glob.

    Raises:
        BarsError: an input that names nothing readable, or no files at all.
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise BarsError("no input given; pass a bar file, several files, a directory or a glob.")
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.name.lower().endswith(FILE_SUFFIXES)
                           and not q.name.startswith("."))
            if not found:
                raise BarsError(f"{p}: the directory holds no bar files ({', '.join(FILE_SUFFIXES)}); "
                                "give a directory of bar files or the files themselves.")
            files += found
        elif p.is_file():
            files.append(p)
        elif any(ch in str(item) for ch in "*?["):
            found = sorted(Path(q) for q in globmod.glob(str(item), recursive=True) if Path(q).is_file())  # ** recurses
            if not found:
                raise BarsError(f"{item}: the pattern matches no file; check the path and the quoting.")
            files += found
        elif p.exists():
            raise BarsError(f"{p}: not a regular file or directory; give a bar file, a directory or a glob.")
        else:
            raise BarsError(f"{p}: no such file or directory; give a bar file, several files, a directory or a glob.")
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key in seen:
            raise BarsError(f"{f}: given twice; each input file may be named once.")
        seen.add(key)
        unique.append(f)
    return unique


def file_digest(path: str | os.PathLike) -> dict:
    """``{"kind": "file", "path", "bytes", "sha256"}`` of a file (its source record)."""
    from ..fileio import sha256_file

    return {"kind": "file", "path": str(Path(path).resolve()), "bytes": Path(path).stat().st_size,
            "sha256": sha256_file(path)}


def series_name(where) -> str:
    """Name of the one series of a file without a symbol column: the file name without suffixes."""
    name = Path(str(where)).name
    for _ in range(2):
        for suffix in (".gz", ".zst", ".bz2", ".csv", ".txt", ".parquet", ".pq", ".dbn", ".scid", ".json"):
            name = name[: -len(suffix)] if name.lower().endswith(suffix) else name
    return name or "series"
