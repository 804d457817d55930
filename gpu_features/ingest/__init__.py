"""Ingest: bar files and tables in, validated :class:`Bars` out.

One entry point, :func:`read_bars` (and :func:`reread`, which reads a store's
source again the way its manifest records it), with the read settings as one
frozen :class:`ReadSpec`. Inside, each module owns one step and imports only
the ones listed below it (pyproject's import-linter contract):

- :mod:`.read`         ``read_bars``, the source record, ``reread``;
- :mod:`.cudf_reader`  parquet decoded on the GPU (cudf), bars kept in device memory;
- :mod:`.assemble`     raw columns to :class:`Bars`: series order, roll segments, the policies;
- :mod:`.rules`        the ingest rules: bad bars, out-of-order bars, overlaps, identical bars;
- :mod:`.bars`         the :class:`Bars` type;
- :mod:`.decode`       files and tables to plain columns (prices, UTC times, series codes);
- :mod:`.files`        one file to a raw table: parquet, CSV, DBN, SCID, Polygon JSON;
- :mod:`.times`        time columns to int64 ns UTC (zones, vendor time layouts, epochs);
- :mod:`.dates`        civil dates to day numbers; the int64-ns range of a time (refused by row beyond it);
- :mod:`.presets`      vendor layouts (``--format``), their detection, the series-key rule;
- :mod:`.inputs`       files, directories, globs and tables given; file digests;
- :mod:`.spec`         :class:`ReadSpec` and the policy names.
"""
from .assemble import assemble
from .bars import Bars
from .inputs import expand_inputs, file_digest
from .presets import FORMATS, PRICE_COLUMNS, series_key_of
from .read import read_bars, reread
from .rules import check_bars, identical_bars, longest_increasing
from .spec import DEFAULT_MAX_DROP_FRACTION, OVERLAP_POLICIES, POLICIES, READERS, ReadSpec

__all__ = ["Bars", "DEFAULT_MAX_DROP_FRACTION", "FORMATS", "OVERLAP_POLICIES", "POLICIES", "PRICE_COLUMNS", "READERS",
           "ReadSpec", "assemble", "check_bars", "expand_inputs", "file_digest", "identical_bars",
           "longest_increasing", "read_bars", "reread", "series_key_of"]
