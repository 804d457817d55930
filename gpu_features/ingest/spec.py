"""ReadSpec: how bar files are read, as one frozen value that crosses every layer (and Dask tasks).

It holds the layout of the files (a ``--format`` preset or ``auto``, column
names, time format and zone, CSV options, price scale) and the limits of the
ingest rules that belong to the read (prices <= 0 allowed, the drop limit,
overlaps between files). The bad-bar policy (``on_bad_bars``) is not part of
it: the manifest records it as the source's ``ingest.policy``, and an append
takes it from its own command line, not from the store.

The manifest's ``read`` record of a source is :meth:`ReadSpec.record` (the
fields that differ from the defaults, plus the layout that was detected), and
:meth:`ReadSpec.from_record` turns it back into the spec that re-reads the
source identically.
"""
from __future__ import annotations

import dataclasses
import math

from ..errors import BarsError

POLICIES = ("error", "drop", "repair")       # on_bad_bars
OVERLAP_POLICIES = ("error", "skip")         # bars repeated across files (and, for --append, of the store)
READERS = ("auto", "pyarrow", "cudf")
DEFAULT_MAX_DROP_FRACTION = 0.01
_RULE_FIELDS = ("allow_nonpositive", "max_drop_fraction", "on_overlap")
_TEXT_FIELDS = ("format", "time_column", "date_column", "time_format", "timezone", "symbol_column", "roll_column")


@dataclasses.dataclass(frozen=True)
class ReadSpec:
    """How to read bar files; every field is optional and JSON-able.

    Layout (:mod:`.presets` for the vendor layouts):
        format: a preset name (``databento``, ``ninjatrader``...) or ``auto`` (detected).
        time_column: the column holding the time (default: the first of ``presets.TIME_COLUMNS``).
        date_column: a date column combined with ``time_column`` (time of day).
        time_format: strptime format of the time column (``%Y%m%d %H%M%S``...).
        timezone: IANA zone of naive times (default UTC).
        symbol_column: the column naming each bar's series (default ``symbol``).
        roll_column: a contract/instrument column; a series is cut into segments where it changes.
        rename: ``{file column: our column}`` (``open``, ``high``, ``low``, ``close``, ``time``, ``symbol``).
        delimiter: CSV delimiter (default: sniffed from the first line among ``, ; tab |``).
        header: False for a CSV without a header line (columns: ``columns``).
        columns: column names of a headerless CSV [time, open, high, low, close, volume].
        price_scale: multiply prices by this (``1e-9`` for fixed-point prices).

    Rules that belong to the read:
        allow_nonpositive: accept prices <= 0 (back-adjusted continuous futures); non-finite
            prices are still bad.
        max_drop_fraction: ``on_bad_bars="drop"`` refuses to remove more than this share of the rows.
        on_overlap: ``error`` or ``skip``: bars of a series repeated across input files.
    """

    format: str = "auto"
    time_column: str | None = None
    date_column: str | None = None
    time_format: str | None = None
    timezone: str | None = None
    symbol_column: str | None = None
    roll_column: str | None = None
    rename: dict | None = None
    delimiter: str | None = None
    header: bool = True
    columns: tuple | None = None
    price_scale: float | None = None
    allow_nonpositive: bool = False
    max_drop_fraction: float = DEFAULT_MAX_DROP_FRACTION
    on_overlap: str = "error"

    def __post_init__(self) -> None:
        """Refuse settings no file can be read with, naming the setting (the command line checks its options
        where it parses them; this is the same for a spec built in Python)."""
        if self.on_overlap not in OVERLAP_POLICIES:
            raise BarsError(f"on_overlap must be one of {', '.join(OVERLAP_POLICIES)}, got {self.on_overlap!r}.")
        if not 0.0 <= float(self.max_drop_fraction) <= 1.0:
            raise BarsError(f"max_drop_fraction must lie in [0, 1], got {self.max_drop_fraction}.")
        if self.price_scale is not None and not (math.isfinite(self.price_scale) and self.price_scale > 0):
            raise BarsError(f"price_scale must be a finite number > 0 (1e-9 for fixed-point prices), got "
                            f"{self.price_scale!r}.")
        if self.delimiter is not None and (not isinstance(self.delimiter, str) or len(self.delimiter) != 1):
            raise BarsError(f"delimiter must be one character (';', '|', a tab), got {self.delimiter!r}.")
        named = [("rename", n) for pair in (self.rename or {}).items() for n in pair] + \
            [("columns", n) for n in (self.columns or ())] + \
            [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
             if f.name in _TEXT_FIELDS and getattr(self, f.name) is not None]
        for field, name in named:
            if not isinstance(name, str) or not name.strip():
                raise BarsError(f"{field} holds {name!r}, not a column name or value; give a non-empty name.")

    def replace(self, **changes) -> "ReadSpec":
        """This spec with some fields changed; an unknown field name is refused in one sentence."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise BarsError(f"read_bars: unknown read setting(s) {', '.join(map(repr, unknown))}; see "
                            "gpu_features.ingest.ReadSpec for the read settings.")
        return dataclasses.replace(self, **changes) if changes else self

    def layout_is_default(self) -> bool:
        """True when no layout field differs from the defaults (the rules may)."""
        return not any(getattr(self, f.name) != f.default for f in dataclasses.fields(self)
                       if f.name not in _RULE_FIELDS)

    def record(self, fmt: str, bar_time: str) -> dict:
        """The manifest ``read`` record of a source read with this spec.

        Args:
            fmt: the layout that decoded the files (recorded unless ``generic``), so a re-read
                forces the same layout.
            bar_time: ``start`` or ``end``, which edge of the bar the times stamp (recorded unless ``start``).

        Returns:
            The layout fields that differ from the defaults, then ``format``, ``bar_time`` and the
            rule fields that differ (in that order: the manifest's bytes depend on it).
        """
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name not in _RULE_FIELDS and v != f.default:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        if fmt != "generic":
            out["format"] = fmt
        if bar_time != "start":
            out["bar_time"] = bar_time
        for name in _RULE_FIELDS:
            default = next(f.default for f in dataclasses.fields(self) if f.name == name)
            if getattr(self, name) != default:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_record(cls, read: dict | None) -> "ReadSpec":
        """The spec that re-reads a source the way its manifest ``read`` record says (unknown keys such as
        ``bar_time``, which is decided by the layout, are left out)."""
        read = dict(read or {})
        if read.get("columns") is not None:
            read["columns"] = tuple(read["columns"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in read.items() if k in names})
