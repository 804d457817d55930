"""What one write of a store did: the engine, the counts and the phases, typed.

Every writer (``precompute``, ``--append``, the dataset build and the dataset
append) times itself with one :class:`PhaseClock`, whose phases add up to the
total by construction, and records the engine (:class:`EngineUse`) and the
clock in the manifest. :func:`read_report` turns those records back into a
:class:`BuildReport` (``Store.report``), which the command line prints: the
manifest's key names stay in this package.
"""
from __future__ import annotations

import dataclasses
import time

from ..splits import SPLIT_NAMES

KINDS = ("build", "append", "dataset build", "dataset append")
TASK_WORK = ("read", "compute", "write")  # a dataset build's per-task phases, summed over tasks that ran in parallel


class PhaseClock:
    """Wall seconds of a writer's phases in the order they ran; they add up to the total by construction.

    ``lap(name)``: the time since the last mark (the start, or the previous lap) was phase ``name``.
    ``lap_parts(parts)``: the time since the last mark was spent in ``{phase: seconds}`` measured inside
    it (by threads, tasks or the parts of a dataset); what they do not cover is phase ``other``.
    """

    def __init__(self, start: float | None = None):
        self.start = time.perf_counter() if start is None else start
        self.mark = self.start
        self.phases: dict[str, float] = {}

    def _add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self._add(name, now - self.mark)
        self.mark = now

    def lap_parts(self, parts: dict[str, float]) -> None:
        now = time.perf_counter()
        for name, seconds in parts.items():
            self._add(name, seconds)
        self._add("other", max(now - self.mark - sum(parts.values()), 0.0))
        self.mark = now

    @property
    def total_s(self) -> float:
        """Seconds from the start to the last mark."""
        return self.mark - self.start

    def record(self, before: dict[str, float] | None = None) -> dict:
        """The manifest ``timings`` record: ``{phase}_s`` in order, then ``total_s``.

        ``before``: seconds recorded ahead of the phases but not part of them (a dataset build's work
        summed over its tasks).
        """
        out = {f"{k}_s": v for k, v in (before or {}).items()}
        out.update({f"{k}_s": v for k, v in self.phases.items()})
        out["total_s"] = self.total_s
        return out


@dataclasses.dataclass(frozen=True)
class EngineUse:
    """The engine of a write: ``name`` (``a+b`` when the parts of a dataset ran several), kernel launches split
    into ``chunks``, serial ``fixups``, ``kernel_seconds``, and the ``note`` saying why ``auto`` fell back."""

    name: str
    chunks: int
    fixups: int
    kernel_seconds: float
    note: str | None = None

    @classmethod
    def of_run(cls, run) -> "EngineUse":
        """The engine of an :class:`~gpu_features.engines.launch.EngineRun`."""
        return cls(run.engine, run.chunks, run.fixups, run.kernel_seconds, run.note or None)

    @classmethod
    def from_record(cls, rec: dict) -> "EngineUse":
        return cls(rec["name"], int(rec["chunks"]), int(rec["fixups"]), float(rec["kernel_seconds"]), rec.get("note"))

    @classmethod
    def summed(cls, uses: list["EngineUse"]) -> "EngineUse":
        """Several writes' engines as one: the distinct names joined by ``+`` (``none`` for no write), counts summed."""
        return cls("+".join(sorted({u.name for u in uses})) or "none", sum(u.chunks for u in uses),
                   sum(u.fixups for u in uses), sum(u.kernel_seconds for u in uses))

    def record(self) -> dict:
        """The manifest ``engine`` record."""
        out = {"name": self.name, "chunks": self.chunks, "fixups": self.fixups, "kernel_seconds": self.kernel_seconds}
        if self.note:
            out["note"] = self.note
        return out


@dataclasses.dataclass(frozen=True)
class SourceReport:
    """What ingest did with one source: rows read, bars kept, what was dropped, repaired, skipped or cut.

    ``dropped``: ``{rule: (count, first rows as named in the input)}``; ``repaired``: ``{rule: count}``.
    ``rows_read`` is None for bars that were not read from files or tables (synthetic, built by hand).
    """

    rows_read: int | None
    bars: int
    dropped: dict
    repaired: dict
    skipped_overlap: int
    roll_segments: int
    warnings: tuple
    reader: str | None
    reader_note: str | None
    format: str | None
    timezone: str | None

    @classmethod
    def from_record(cls, rec: dict) -> "SourceReport":
        ing, read = rec.get("ingest", {}), rec.get("read", {})
        dropped = {rule: (int(r["count"]), [str(x) for x in (r.get("first_rows_named") or r["first_rows"])])
                   for rule, r in ing.get("dropped", {}).items()}
        return cls(ing.get("rows_read"), int(ing.get("bars", 0)), dropped,
                   {rule: int(r["count"]) for rule, r in ing.get("repaired", {}).items()},
                   int(ing.get("skipped_overlap", {}).get("count", 0)), int(ing.get("roll_segments", 0)),
                   tuple(ing.get("warnings", ())), ing.get("reader"), ing.get("reader_note"), read.get("format"),
                   read.get("timezone"))

    @property
    def notable(self) -> bool:
        """Something beyond reading happened: bars dropped, repaired, skipped or cut at rolls, or a warning."""
        return bool(self.dropped or self.repaired or self.skipped_overlap or self.warnings or self.roll_segments)


@dataclasses.dataclass(frozen=True)
class SplitRow:
    """One chronological split: its time range in ns UTC (None: open-ended) and its bar and window counts."""

    name: str
    start: int | None
    end: int | None
    bars: int
    windows: int


def split_rows(split_record: dict) -> tuple[SplitRow, ...]:
    """The manifest ``splits`` record as one row per split (train, val, test)."""
    return tuple(SplitRow(name, a, b, int(split_record["counts"][name]["bars"]),
                          int(split_record["counts"][name]["windows"]))
                 for name, (a, b) in zip(SPLIT_NAMES, split_record["boundaries"]))


def split_warnings(rows: tuple[SplitRow, ...], valid_bars: int) -> list[str]:
    """Warnings for a store without valid bars or with a split that has no bars or no usable window."""
    out = []
    if valid_bars == 0:
        out.append("the store has no valid bars (warm-up longer than the series?), so no window can be trained on")
    for row in rows:
        if row.windows == 0:
            why = "no bars" if row.bars == 0 else f"{row.bars:,} bars but no window of K all-valid bars"
            out.append(f"split {row.name} has {why}; check --split-fractions / --split-dates, --warmup-bars and "
                       "--window-length against the data")
    return out


@dataclasses.dataclass(frozen=True)
class ClusterRun:
    """Where a dataset build ran: ``inputs`` files in ``tasks`` tasks on ``scheduler`` with ``workers`` workers
    (None: unknown), and the work of the tasks summed (``task_work``: ``{read, compute, write}`` seconds; the
    tasks ran in parallel, so these are not phases of the build's wall time)."""

    inputs: int
    tasks: int
    scheduler: str
    workers: int | None
    task_work: dict


@dataclasses.dataclass(frozen=True)
class BuildReport:
    """What the last write of a store did, and the store it left.

    Attributes:
        kind: one of :data:`KINDS`: a ``build`` (precompute), an ``append``, a ``dataset build``
            (precompute --distributed) or a ``dataset append``.
        engine: the write's :class:`EngineUse` (summed over the parts of a dataset write).
        phases: ``{phase: wall seconds}`` in the order they ran; they add up to ``total_s``.
        total_s: wall seconds of the write.
        new_bars, skipped_overlap: bars the write added, and new bars it skipped as already stored
            (appends; a build adds every bar and skips none).
        sources: :class:`SourceReport` of every source this write read (a dataset append: every source).
        cluster: a dataset build's :class:`ClusterRun` (None otherwise).
        n_bars, n_symbols, n_shards, bytes_on_disk, n_parts: the store after the write (``n_parts``:
            None for a single store).
        splits: the store's :class:`SplitRow` s; valid_bars: its valid bars.
    """

    kind: str
    engine: EngineUse
    phases: dict
    total_s: float
    new_bars: int
    skipped_overlap: int
    sources: tuple
    cluster: ClusterRun | None
    n_bars: int
    n_symbols: int
    n_shards: int
    bytes_on_disk: int
    n_parts: int | None
    splits: tuple
    valid_bars: int

    @property
    def is_append(self) -> bool:
        return self.kind in ("append", "dataset append")

    @property
    def is_dataset(self) -> bool:
        return self.kind in ("dataset build", "dataset append")

    def warnings(self) -> list[str]:
        """The store's split warnings (:func:`split_warnings`)."""
        return split_warnings(self.splits, self.valid_bars)


def _phases(timings: dict, skip=()) -> tuple[dict, float]:
    return ({k[:-2]: float(v) for k, v in timings.items() if k.endswith("_s") and k != "total_s"
             and k[:-2] not in skip}, float(timings["total_s"]))


def read_report(manifest: dict, dataset: dict | None = None, n_parts: int | None = None) -> BuildReport:
    """The :class:`BuildReport` of a store's last write, from its manifest (a dataset's: the parts' manifests
    laid end to end, with the ``dataset.json`` record and its number of parts)."""
    sources = manifest["sources"]
    store = dict(n_bars=int(manifest["n_bars"]), n_symbols=len(manifest["symbols"]), n_shards=len(manifest["shards"]),
                 bytes_on_disk=sum(int(s["bytes"]) for s in manifest["shards"]) + int(manifest["state"]["bytes"]),
                 n_parts=n_parts, splits=split_rows(manifest["splits"]),
                 valid_bars=int(manifest["stats"]["valid_bars"]))
    everything = tuple(SourceReport.from_record(s) for s in sources)
    build = (dataset or {}).get("build", {})
    if dataset is not None and build.get("appends"):
        run = build["appends"][-1]
        phases, total = _phases(run["timings"])
        return BuildReport("dataset append", EngineUse.from_record(run["engine"]), phases, total, int(run["new_bars"]),
                           int(run["skipped_overlap"]), everything, None, **store)
    if dataset is not None:
        cluster = None
        phases, total = _phases(manifest["timings"], skip=TASK_WORK if "cluster" in build else ())
        if "cluster" in build:
            t = manifest["timings"]
            cluster = ClusterRun(len(build["inputs"]), int(build["tasks"]), build["cluster"]["scheduler"],
                                 build["cluster"]["workers"], {k: float(t[f"{k}_s"]) for k in TASK_WORK if f"{k}_s" in t})
        return BuildReport("dataset build", EngineUse.from_record(manifest["engine"]), phases, total, store["n_bars"], 0,
                           everything, cluster, **store)
    if manifest.get("appends"):
        run = manifest["appends"][-1]
        phases, total = _phases(run["timings"])
        return BuildReport("append", EngineUse.from_record(run["engine"]), phases, total, int(run["bars"]),
                           int(run["skipped_overlap"]), (everything[int(run["source"])],), None, **store)
    phases, total = _phases(manifest["timings"])
    return BuildReport("build", EngineUse.from_record(manifest["engine"]), phases, total, store["n_bars"], 0, everything,
                       None, **store)
