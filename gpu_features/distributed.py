"""``precompute --distributed``: many files, thousands of symbols, one dataset, built on a Dask cluster.

Series are independent, so the build is parallel by symbol; the driver (this
process) only plans, and workers read, compute and write:

1. **inputs**: files, directories or globs (``data/**/*.parquet``) become a list of files.
2. **scan** (a task per file): which symbols each file holds. Parquet: the symbol
   column alone (dictionary-encoded, cheap); other formats are decoded whole.
3. **group**: symbols that share a file are joined, so every symbol's bars stay in
   one task, read together in time order (a symbol spread over daily files is one
   task); a group of more than ``symbols_per_task`` symbols is cut into tasks that
   each read the group's files and keep their own symbols; small groups are packed
   together (in symbol order) into tasks of at most ``bars_per_task`` input rows (and
   at most the rows of all inputs over twice the worker threads, so every worker has
   work), so a universe of many short symbols does not pay a part per symbol. Files without a
   symbol column are read together in one task, each the series named after its file (as
   ``read_bars`` reads them); a mix of files with and without one is refused.
4. **build** (a task per group): read, compute with the worker's engine (``auto``
   picks the GPU on a GPU worker), write one part store into a hidden temporary
   sibling of the output. With ``--split-dates`` the parts are split at those
   dates at once. With fractions (the default), each task also returns its
   distinct timestamps with their counts; they are merged on the workers, the
   driver resolves the boundaries exactly as a single process would from all
   bars (:func:`~gpu_features.splits.resolve_counted`), and a small task per part
   rewrites its splits record (features do not depend on splits).
5. **commit**: ``dataset.json`` lists the parts with their manifests' checksums and
   the directory is renamed into place. A failed task fails the build with its own
   error, the other tasks are cancelled and the temporary directory removed: the
   previous dataset stays as it was. A task whose worker dies is re-run by Dask
   (the part is written to a temporary name and renamed, so a half-written part
   is never used).

Clusters: a ``LocalCluster`` of ``workers`` processes (one thread each) by default;
an existing scheduler by address (``tcp://host:8786``; its workers must see the
input and output paths: a shared file system); a ``LocalCUDACluster`` (one worker
per GPU) when dask-cuda imports and sees GPUs. Only this module imports Dask.
"""
from __future__ import annotations

import contextlib
import logging
import operator
import os
import shutil
import time
from pathlib import Path

import numpy as np

from . import splits as splits_mod
from .config import FeatureConfig
from .errors import BarsError, GpuFeaturesError
from .fileio import replace_dir, temp_sibling, writer_lock
from .ingest import ReadSpec, expand_inputs, read_bars, series_key_of
from .progress import Progress, no_progress
from .store import SHARD_BARS, Dataset, open_store, precompute
from .store.dataset import part_name, select_symbols, set_part_splits, write_dataset
from .store.format import check_output
from .store.report import TASK_WORK, PhaseClock

INSTALL_HINT = "pip install 'gpu-features[distributed]'"
_NO_SYMBOL = "\x00no symbol column"  # the group key of files without a symbol column
_PARQUET = (".parquet", ".pq")
DEFAULT_BARS_PER_TASK = 1_000_000  # small symbols are packed into tasks of about this many rows
_LIVE = ".build-in-progress"  # in the temporary dataset directory while the driver still wants its parts


class DistributedError(GpuFeaturesError):
    """Dask is missing, the scheduler cannot be reached, or the cluster lost a task for good."""


def require_dask():
    """The ``distributed`` module, or one sentence saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise DistributedError(f"--distributed needs Dask (dask.distributed), which is not installed here; run "
                               f"`{INSTALL_HINT}` or drop --distributed.") from None
    return distributed


# --- inputs, scan and plan ------------------------------------------------------------------


def list_inputs(inputs) -> list[Path]:
    """Absolute paths of the bar files named by ``inputs`` (:func:`~gpu_features.ingest.expand_inputs`:
    files, directories, globs where ``**`` recurses), so that workers elsewhere find them on a shared disk."""
    return [p.resolve() for p in expand_inputs(inputs)]


def scan_file(path: str, spec: ReadSpec | None = None) -> dict:
    """Which symbols a file holds: ``{"path", "symbols": sorted names or None (no symbol column), "rows"}``.

    A parquet file is scanned by reading alone the column that keys its series (the reader's rule,
    :func:`~gpu_features.ingest.series_key_of`); anything else (no such column, other formats) is
    decoded whole by :func:`read_bars`, so the answer is the reader's.
    """
    spec = spec or ReadSpec()
    if path.lower().endswith(_PARQUET):
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
            rows = pf.metadata.num_rows
            names = list(pf.schema_arrow.names)
        except Exception as err:  # pyarrow's errors say what is wrong with the file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BarsError(f"{path}: the file could not be parsed ({first}); check that it is a valid parquet "
                            "file.") from None
        try:
            col = series_key_of(path, names, spec)
        except BarsError:  # the columns break a rule: the reader refuses them below, in its own order
            col = None
        if col is not None:
            values = pc.unique(pf.read(columns=[col]).column(col)).to_pylist()
            return {"path": path, "symbols": sorted({str(v) for v in values if v is not None}), "rows": rows}
    bars = read_bars(path, spec=spec)
    symbols = sorted(set(bars.segment_names)) if bars.ingest.get("symbol_column", True) else None
    return {"path": path, "symbols": symbols, "rows": int(bars.ingest.get("rows_read", bars.n))}


def plan_tasks(scans: list[dict], symbols_per_task: int | None = None,
               bars_per_task: int | None = DEFAULT_BARS_PER_TASK) -> list[dict]:
    """Group files so that every symbol's bars are in one task (see module doc).

    Args:
        scans: :func:`scan_file` results, in input order (``rows``: the file's rows, to pack by).
        symbols_per_task: cut larger groups into tasks of this many symbols (None: never cut).
        bars_per_task: pack consecutive groups (in symbol order) into one task while it holds
            at most this many input rows, so that small symbols do not each pay for a part of
            their own (a part's files, checksums and fsyncs); 0 or None: one group per task.

    Returns:
        ``[{"files": [path, ...] (input order), "symbols": [name, ...] or None (all of them)}]``,
        ordered by first symbol (file name for files without a symbol column).
    """
    without = [scan["path"] for scan in scans if scan["symbols"] is None]
    if without and len(without) < len(scans):
        having = next(scan["path"] for scan in scans if scan["symbols"] is not None)
        raise GpuFeaturesError(f"{without[0]} has no symbol column but {having} has one, so the first would be a "
                               "series of its own named after the file beside the others' symbols; give every file "
                               "the series column (or --symbol-column), or build the two kinds of file separately.")
    parent = list(range(len(scans)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_file: dict[str, int] = {}
    for k, scan in enumerate(scans):
        for key in scan["symbols"] if scan["symbols"] is not None else [_NO_SYMBOL]:
            if key in first_file:
                parent[find(k)] = find(first_file[key])
            else:
                first_file[key] = k
    groups: dict[int, list[int]] = {}
    for k in range(len(scans)):
        groups.setdefault(find(k), []).append(k)
    units = []  # a group, or a cut of one: (sort key, file indices, symbols or None, rows, whole group)
    for members in groups.values():
        rows = sum(int(scans[k].get("rows", 0)) for k in members)
        if all(scans[k]["symbols"] is None for k in members):
            units.append((Path(scans[members[0]]["path"]).name, members, None, rows, False))
            continue
        names = sorted(set().union(*[scans[k]["symbols"] for k in members]))
        step = symbols_per_task or len(names)
        for a in range(0, len(names), step):
            units.append((names[a], members, names[a:a + step], rows, step >= len(names)))
    units.sort(key=lambda u: u[0])
    tasks: list[dict] = []
    for _, members, symbols, rows, whole in units:  # only whole groups are packed; a cut group stays cut
        last = tasks[-1] if tasks else None
        if last is not None and bars_per_task and whole and last["whole"] and last["rows"] + rows <= bars_per_task:
            last["members"].update(members)
            last["symbols"] += symbols
            last["rows"] += rows
        else:
            tasks.append({"members": set(members), "symbols": None if symbols is None else list(symbols),
                          "rows": rows, "whole": whole})
    return [{"files": [scans[k]["path"] for k in sorted(t["members"])],
             "symbols": None if t["symbols"] is None else sorted(t["symbols"])} for t in tasks]


# --- tasks (run on the workers) -------------------------------------------------------------


def build_part(files: list[str], symbols: list[str] | None, part_dir: str, config: dict, engine: str,
               shard_bars: int, split_dates: list | None, on_bad_bars: str, reader: str,
               spec: ReadSpec | None, want_times: bool) -> tuple[dict, tuple | None]:
    """Read one group, keep its symbols, compute and write the part store at ``part_dir``.

    Returns:
        ``(summary {"dir", "symbols", "n_bars", "engine", "work"}, (times [u] i64, counts [u] i64) or None)``;
        ``work``: the task's seconds in :data:`~gpu_features.store.report.TASK_WORK` (its reading included).
    """
    live = Path(part_dir).parent / _LIVE
    if not live.exists():
        raise DistributedError("the build was cancelled before this task ran.")
    t0 = time.perf_counter()
    source = files[0] if len(files) == 1 else list(files)
    bars = read_bars(source, on_bad_bars=on_bad_bars, reader=reader, spec=spec)
    if symbols is not None:
        bars = select_symbols(bars, symbols)
    t_read = time.perf_counter()
    st = precompute(bars, part_dir, config=FeatureConfig.from_dict(config), engine=engine, shard_bars=shard_bars,
                    splits={"dates": split_dates} if split_dates else None, overwrite=True)
    if not live.exists():  # the driver gave up meanwhile and removed the directory, which precompute re-made
        shutil.rmtree(Path(part_dir).parent, ignore_errors=True)
        raise DistributedError("the build was cancelled while this task ran.")
    report = st.report
    work = {k: report.phases.get(k, 0.0) for k in TASK_WORK}
    work["read"] += t_read - t0
    summary = {"dir": Path(part_dir).name, "symbols": st.symbols, "n_bars": st.n_bars, "engine": report.engine.name,
               "work": work}
    times = np.unique(st.timestamps(), return_counts=True) if want_times else None
    return summary, times


def merge_times(a: tuple, b: tuple) -> tuple:
    """Two tasks' ``(distinct times, counts)`` merged (runs on a worker)."""
    return splits_mod.merge_counted(a, b)


# --- the cluster ----------------------------------------------------------------------------


def _cuda_workers() -> int:
    """GPUs a LocalCUDACluster would use: 0 unless dask-cuda imports and sees a device."""
    try:
        from dask_cuda.utils import get_n_gpus

        return int(get_n_gpus())
    except Exception:  # not installed, or no driver / device
        return 0


@contextlib.contextmanager
def connect(workers: int | None = None, scheduler: str | None = None):
    """A Dask client: to ``scheduler``, else a LocalCUDACluster on every GPU, else a LocalCluster of ``workers``
    processes (default: one per core). Yields ``(client, description)``."""
    distributed = require_dask()
    if workers is not None and workers < 1:
        raise GpuFeaturesError(f"--workers must be >= 1, got {workers}.")
    if scheduler:
        if workers is not None:
            raise GpuFeaturesError("--workers starts a local cluster and --scheduler joins one; give one of them.")
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as err:
            raise DistributedError(f"cannot reach the Dask scheduler at {scheduler} ({err}); start one with "
                                   "`dask scheduler` (and `dask worker ADDRESS` on each machine) or drop "
                                   "--scheduler to use a local cluster.") from None
        with client:
            yield client, {"scheduler": scheduler, "workers": len(client.scheduler_info().get("workers", {}))}
        return
    # Workers log a failed task with its traceback; the driver's one sentence says it all, so only CRITICAL.
    gpus = _cuda_workers()
    if gpus:
        from dask_cuda import LocalCUDACluster

        n = min(workers or gpus, gpus)
        cluster = LocalCUDACluster(CUDA_VISIBLE_DEVICES=list(range(n)), dashboard_address=":0",
                                   silence_logs=logging.CRITICAL)
        kind = "LocalCUDACluster"
    else:
        n = workers or os.cpu_count() or 1
        # One OpenMP share per worker process, so N host engines do not fight over the cores.
        threads = str(max(1, (os.cpu_count() or 1) // n))
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                           silence_logs=logging.CRITICAL, env={"OMP_NUM_THREADS": threads})
        kind = "LocalCluster"
    with cluster, distributed.Client(cluster) as client:
        yield client, {"scheduler": kind, "workers": n}


# --- the driver ------------------------------------------------------------------------------


def build_dataset(inputs, out_dir, config: FeatureConfig | None = None, engine: str = "auto", splits=None,
                  overwrite: bool = False, on_bad_bars: str = "error", reader: str = "auto",
                  shard_bars: int = SHARD_BARS, symbols_per_task: int | None = None,
                  bars_per_task: int | None = DEFAULT_BARS_PER_TASK, workers: int | None = None,
                  scheduler: str | None = None, client=None, spec: ReadSpec | None = None,
                  progress: Progress | None = None) -> Dataset:
    """Build a dataset from many bar files on a Dask cluster (see module doc).

    Args:
        inputs: files, directories or globs.
        out_dir: the dataset directory (replaced only with ``overwrite``, and only by a complete one).
        config, engine, shard_bars, on_bad_bars, reader: as for :func:`~gpu_features.store.precompute`.
        splits: None (fractions 0.9/0.05/0.05 of all bars), ``{"fractions": [...]}`` or ``{"dates": [...]}``.
        symbols_per_task: most symbols per task (None: a whole group of files per task).
        bars_per_task: pack small groups into tasks of at most this many input rows, and at most
            all rows / (2 x worker threads); 0: one group per task.
        workers / scheduler / client: a LocalCluster of N processes, an existing scheduler's address,
            or a ``distributed.Client`` to use as is.
        spec: how the workers read the files (:class:`~gpu_features.ingest.ReadSpec`).
        progress: optional ``callback(stage, done, total)``; stage ``tasks`` counts finished parts.

    Returns:
        The opened :class:`~gpu_features.store.Dataset`; ``Dataset.report`` says what the build did.
    """
    progress = progress or no_progress
    clock = PhaseClock()
    distributed = require_dask()
    out = check_output(Path(out_dir).resolve(), overwrite, list(inputs) if isinstance(inputs, (list, tuple))
                       else [inputs])
    cfg = config or FeatureConfig()
    if symbols_per_task is not None and symbols_per_task < 1:
        raise GpuFeaturesError(f"--symbols-per-task must be >= 1, got {symbols_per_task}.")
    if bars_per_task is not None and bars_per_task < 0:
        raise GpuFeaturesError(f"--bars-per-task must be >= 0, got {bars_per_task}.")
    split_spec = {"fractions": splits_mod.DEFAULT_FRACTIONS} if splits is None else dict(splits)
    dates = None
    if set(split_spec) == {"dates"}:
        rec = splits_mod.resolve_counted(split_spec, np.zeros(0, np.int64), np.zeros(0, np.int64))
        dates = [rec["boundaries"][1][0], rec["boundaries"][2][0]]
    else:
        splits_mod.resolve_counted(split_spec, np.zeros(1, np.int64), np.ones(1, np.int64))  # refuse a bad one now
    files = list_inputs(inputs)
    ctx = contextlib.nullcontext((client, {"scheduler": "given client", "workers": None})) if client is not None \
        else connect(workers, scheduler)
    with ctx as (cl, where):
        scan_futures = cl.map(scan_file, [str(f) for f in files], spec=spec, pure=False)
        progress("scan", 0, len(files))
        for done, fut in enumerate(distributed.as_completed(scan_futures), 1):
            fut.result()  # a file that cannot be read stops the build here, with its own error
            progress("scan", done, len(files))
        scans = cl.gather(scan_futures)
        # Pack small groups, but never into fewer than about two tasks per worker thread.
        threads = max(1, sum(cl.nthreads().values()))
        total_rows = sum(int(scan.get("rows", 0)) for scan in scans)
        packed = min(bars_per_task, max(1, -(-total_rows // (2 * threads)))) if bars_per_task else 0
        tasks = plan_tasks(scans, symbols_per_task, packed)
        clock.lap("scan")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(out, "tmp")
        tmp.mkdir()
        (tmp / _LIVE).touch()
        futures = []
        try:
            for k, task in enumerate(tasks):
                futures.append(cl.submit(build_part, task["files"], task["symbols"], str(tmp / part_name(k)),
                                         cfg.to_dict(), engine, shard_bars, dates, on_bad_bars, reader, spec,
                                         dates is None, pure=False, key=f"gpu-features-part-{tmp.name}-{k}"))
            summaries = [cl.submit(operator.getitem, f, 0, pure=False) for f in futures]
            progress("tasks", 0, len(tasks))
            for done, fut in enumerate(distributed.as_completed(summaries), 1):
                fut.result()  # the first failed task raises its own error here
                progress("tasks", done, len(tasks))
            parts = cl.gather(summaries)
            clock.lap("tasks")
            if dates is None:
                times = [cl.submit(operator.getitem, f, 1, pure=False) for f in futures]
                while len(times) > 1:  # pairwise on the workers: the driver gets only the merged counts
                    times = [cl.submit(merge_times, *times[i:i + 2], pure=False) if i + 1 < len(times) else times[i]
                             for i in range(0, len(times), 2)]
                split_record = splits_mod.resolve_counted(split_spec, *times[0].result())
                cl.gather(cl.map(set_part_splits, [str(tmp / p["dir"]) for p in parts], split_record=split_record,
                                 pure=False))
            else:
                split_record = splits_mod.resolve_counted(split_spec, np.zeros(0, np.int64), np.zeros(0, np.int64))
            for leftover in tmp.iterdir():  # the parts' writer locks, and temporary parts of attempts that died
                if leftover.name.startswith(".") and leftover.name != _LIVE:
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            clock.lap("splits")
            # The tasks ran in parallel: their work is summed beside the build's phases, not among them.
            task_work = {k: sum(p["work"][k] for p in parts) for k in TASK_WORK}
            build = {"inputs": [str(f) for f in files], "tasks": len(tasks), "symbols_per_task": symbols_per_task,
                     "bars_per_task": bars_per_task, "bars_per_task_used": packed,
                     "cluster": where, "engines": sorted({p["engine"] for p in parts}),
                     "timings": clock.record(before=task_work)}
            write_dataset(tmp, [{k: p[k] for k in ("dir", "symbols", "n_bars")} for p in parts], split_record, cfg,
                          build)
            (tmp / _LIVE).unlink()
            with writer_lock(out, "precompute --distributed"):
                check_output(out, overwrite, files)  # again, under the lock: another writer may have been first
                replace_dir(tmp, out)
        except distributed.KilledWorker as err:
            _cancel(cl, futures, tmp)
            raise DistributedError(f"a worker died each time it ran {err.args[0] if err.args else 'a task'} (out of "
                                   "memory?); give the workers more memory or use --symbols-per-task to make "
                                   "tasks smaller.") from None
        except BaseException:
            _cancel(cl, futures, tmp)
            raise
    return open_store(out)


def _running_parts(prefix: str, dask_worker=None) -> int:
    """Part tasks of one build (keys starting with ``prefix``) executing on this worker (runs on a worker)."""
    return sum(1 for ts in dask_worker.state.executing if str(ts.key).startswith(prefix))


def _cancel(client, futures, tmp: Path, timeout: float = 300.0) -> None:
    """Drop the queued tasks of a failed build, wait for the running ones to end, remove the temporary directory.

    A running task cannot be stopped; waiting for it means nothing writes into the
    directory after it is removed (and a closing local cluster kills no task mid-write).
    """
    with contextlib.suppress(Exception):
        client.cancel(futures)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):
        while time.monotonic() < deadline:
            if not sum(client.run(_running_parts, f"gpu-features-part-{tmp.name}").values()):
                break
            time.sleep(0.1)
    shutil.rmtree(tmp, ignore_errors=True)
