"""``python -m train sweep``: a hyperparameter sweep as one Optuna study whose trials are ordinary runs.

A study folder ``DIR`` holds::

    sweep.json           the resolved sweep (train.sweep_file), written once; a re-run must resolve to it
    study.journal        Optuna's file journal (no server; several machines on a shared disk), unless
                         --storage names a database
    trial-NNNN/          one ordinary run directory per trial (train.rundir: run.json, config.json, ...)
    .trial-NNNN.lock     the run directory's own lock (train.rundir), held by the trainer while it runs
    .trial-NNNN.claim    held (flock) by the worker that claimed that trial, from the claim until the
                         study is told its end; the kernel drops it when that process dies, however it dies
    .sweep.lock          held while a worker claims a trial
    trials.csv, best.json, sweep.png    the report (train.sweep_report)

A folder is a study only when it holds our ``sweep.json``: a sweep starts only in
a new or empty folder (never in ``/``, below a file, or inside a feature store),
and nothing is written into a folder that holds anything else.

A worker claims, under ``.sweep.lock``: first a RUNNING trial whose claim nobody
holds (its worker died: the trial continues from its own checkpoint through the
trainer's ``--resume`` path, which checks the run's lock, settings and stores, or
starts again in its own folder, replacing only that run's files, when it had no
checkpoint yet), else the next queued grid point (the whole grid is queued once,
in file order, so a point is never drawn twice), else a newly sampled trial while
the study has fewer than ``trials``. It holds the claim until the trial is told
finished, so no trial runs twice at once. A trial is the trainer's own run
(:func:`train.loop.prepare`, ``fit``, ``finish``, ``close``) with the trial's
settings; it takes the run directory's lock inside its claim and releases it
before the claim (one order, so the two never wait on each other). ``--jobs N``
starts N worker processes (each its own CUDA context, on the device
``--devices`` assigns through ``CUDA_VISIBLE_DEVICES``); the same command on
other machines joins the same study.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import unquote, urlsplit

from gpu_features.errors import GpuFeaturesError, LockError
from gpu_features.fileio import (MAX_CONFIG_BYTES, absolute, check_parents, current_umask, describe_entries,
                                 fault_point, folder_entries, read_json_file, write_json_atomic)

from .config import TrainError
from .rundir import has_checkpoint
from .sweep_file import FORMAT, SweepSpec

SWEEP_JSON, JOURNAL, CLAIM_LOCK = "sweep.json", "study.journal", ".sweep.lock"
STORAGE_ENV = "GPU_FEATURES_SWEEP_STORAGE"  # how the launcher hands a database URL to its workers (not argv)
CLAIM_TIMEOUT_S = 600.0
# Files of a study folder (a folder holding anything else is not ours to fill).
OURS = (SWEEP_JSON, JOURNAL, CLAIM_LOCK, "trials.csv", "best.json", "sweep.png")
SQLITE_HEADER = b"SQLite format 3\x00"
INTERRUPTED = ("interrupted; finished trials are kept and a trial that was running continues from its last epoch "
               "checkpoint (or starts again if it had none): run the same command again")


def require_optuna():
    """The optuna module, quiet, or one sentence saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise TrainError("sweeps need Optuna, which is not installed; install it with "
                         "pip install 'gpu-features[optuna]' (CI pins optuna==5.1.0).") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def trial_name(number: int) -> str:
    return f"trial-{number:04d}"


def storage_label(url: str | None) -> str:
    """How ``sweep.json`` names the storage: ``journal``, or the URL with any password replaced by ***."""
    if url is None:
        return "journal"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return parts._replace(netloc=netloc).geturl()


def _lock(path: Path):
    from filelock import FileLock

    return FileLock(str(path), mode=0o666 & ~current_umask())


def claim_path(target: Path) -> Path:
    """The claim lock of a trial folder, ``.trial-NNNN.claim`` beside it (the run directory's own lock,
    ``.trial-NNNN.lock``, is the trainer's: a claim spans more than one run of the trainer)."""
    target = absolute(target)
    return target.with_name(f".{target.name}.claim")


def try_lock(target: Path):
    """The held claim of a trial folder, or None when another process holds it (that trial is alive)."""
    from filelock import Timeout

    lock = _lock(claim_path(target))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock


@contextlib.contextmanager
def claim_lock(root: Path):
    """Hold the study folder's claim lock (workers claim trials one at a time)."""
    from filelock import Timeout

    lock = _lock(root / CLAIM_LOCK)
    try:
        lock.acquire(timeout=CLAIM_TIMEOUT_S)
    except Timeout:
        raise TrainError(f"{root / CLAIM_LOCK} has been held for {CLAIM_TIMEOUT_S:g} s by another worker; check "
                         "that the study folder's disk supports file locks, then run the command again.") from None
    try:
        yield
    finally:
        lock.release()


def _digest(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _differences(old: dict, new: dict) -> list[str]:
    """Dotted names of what differs between two records (one level into run and search)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and key in ("run", "search"):
            out += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        else:
            out.append(key)
    return out


def check_study_dir(root, need_record: bool) -> Path:
    """Refuse a study folder that is not ours; returns it as an absolute path.

    Ours: a folder holding our ``sweep.json``, or (to start a sweep, ``need_record`` False) a new or
    empty folder, or one holding only what a sweep starting at the same moment writes first. Refused
    before anything is written: the filesystem root, a path below a file, a file, a folder inside a
    feature store or dataset, a folder whose ``sweep.json`` is not a sweep's, any other folder.
    """
    from gpu_features.store import enclosing_artifact

    given, root = root, absolute(root)
    if not root.name:
        raise TrainError(f"study folder {given} is the filesystem root; a study is a folder of its own, so choose a "
                         "new folder below it (like sweeps/lr).")
    check_parents(root, "study folder", TrainError)
    if root.exists() and not root.is_dir():
        raise TrainError(f"study folder {given} is a file; choose a folder.")
    holder = enclosing_artifact(root)
    if holder is not None:
        folder, kind = holder
        raise TrainError(f"study folder {given} is {'the' if folder == root else 'inside the'} feature {kind} "
                         f"{folder}; a {kind}'s folder holds only the {kind}'s files, so choose a folder outside it.")
    if read_record(root) is not None:
        return root
    if need_record:
        raise TrainError(f"study folder {given} holds no sweep ({SWEEP_JSON} is missing); start one with --config "
                         "FILE or --grid NAME=V1,V2,...")
    foreign = [n for n in folder_entries(root) if not _ours(n)] if root.is_dir() else []
    if foreign:
        raise TrainError(f"study folder {given} already holds other files ({describe_entries(root, foreign, 5)}) and "
                         f"no {SWEEP_JSON}; choose a new or empty folder.")
    return root


def _ours(name: str) -> bool:
    """A name a sweep writes at the top of its folder before sweep.json exists (two commands starting at once):
    its files, their hidden temporary siblings, the journal's lock files."""
    return (name in OURS or name.startswith(f"{JOURNAL}.")
            or any(name.startswith(f".{ours}.") for ours in OURS))


def read_record(root: Path) -> dict | None:
    """The sweep record in ``root/sweep.json`` (None when there is none). A ``sweep.json`` that is not ours
    (not JSON, another format) is refused: that folder is not a study, and nothing is written into it."""
    path = root / SWEEP_JSON
    if not (path.exists() or path.is_symlink()):
        return None
    record = read_json_file(path, "a sweep record", "this folder is not a study of python -m train sweep; choose "
                            "another folder.", TrainError, MAX_CONFIG_BYTES)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise TrainError(f"{path} is not a sweep record (format {FORMAT}), so {root} is not a study of python -m "
                         "train sweep; choose another folder.")
    return record


def check_sqlite_url(url: str) -> None:
    """Refuse an SQLite ``--storage`` whose file is not ours to write: a folder, a file that is not an SQLite
    database, or a path inside a feature store or dataset (other databases are the user's own servers)."""
    from gpu_features.store import enclosing_artifact

    parts = urlsplit(url)
    if not parts.scheme.startswith("sqlite") or not parts.path.strip("/") or parts.path == "/:memory:":
        return
    path, url = absolute(unquote(parts.path[1:])), storage_label(url)
    holder = enclosing_artifact(path)
    if holder is not None:
        raise TrainError(f"--storage {url}: the database would lie inside the feature {holder[1]} {holder[0]}, whose "
                         "folder holds only its own files; put it elsewhere.")
    if path.is_dir():
        raise TrainError(f"--storage {url}: {path} is a folder, not an SQLite database file; name a file.")
    if path.exists():
        try:
            with open(path, "rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as err:
            raise TrainError(f"--storage {url}: {path} cannot be read ({err.strerror or err}).") from None
        if head and head != SQLITE_HEADER:
            raise TrainError(f"--storage {url}: {path} is not an SQLite database, so it is not ours to write; name a "
                             "new file.")


def _storage(optuna, root: Path, url: str | None):
    if url is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(root / JOURNAL)))
    try:
        # No heartbeat needed: the trial claims tell a dead worker's trial from a live one on any storage.
        return optuna.storages.RDBStorage(url)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy and driver errors have no common base we can name
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainError(f"--storage {storage_label(url)}: cannot open the database ({first}); check the URL "
                         "and that its driver is installed.") from None


def make_sampler(optuna, spec: SweepSpec, n: int):
    """The sampler that draws trial ``n``: seeded by (seed, n), so a sequential sweep draws the same trials
    whichever process draws them (grid points are queued, so the grid's sampler is never consulted)."""
    from gpu_features.windows import derive_seed

    seed = derive_seed(spec.seed, n) % 2**32
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=seed)


def _suggest(trial, name: str, dist):
    """``trial.suggest_*`` for one distribution (a stored or queued value is returned as it is)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def make_pruner(optuna, spec: SweepSpec):
    p = spec.pruner
    if p is None:
        return optuna.pruners.NopPruner()
    if p["kind"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p["startup_trials"], n_warmup_steps=p["warmup_epochs"])
    return optuna.pruners.HyperbandPruner(min_resource=p["min_epochs"], max_resource=spec.max_epochs(),
                                          reduction_factor=p["reduction_factor"])


@dataclasses.dataclass
class Claim:
    trial: object      # optuna.Trial
    lock: object       # the held filelock of its folder
    resumed: bool      # left RUNNING by a dead worker


class Sweep:
    """An open sweep: its folder, its resolved :class:`SweepSpec` and its Optuna study."""

    def __init__(self, root: Path, spec: SweepSpec, study, storage: str):
        self.root, self.spec, self.study, self.storage = root, spec, study, storage

    @classmethod
    def open(cls, root, spec: SweepSpec | None = None, storage_url: str | None = None,
             create: bool = True) -> "Sweep":
        """Create or join the sweep in ``root``; ``spec`` None: the one ``root`` holds.

        Raises:
            TrainError: a folder that is not a sweep's, a sweep with other settings or another storage,
                a storage study that is not this sweep's.
        """
        optuna = require_optuna()
        given = root
        root = check_study_dir(root, need_record=spec is None)
        label = storage_label(storage_url)
        if storage_url is not None:
            check_sqlite_url(storage_url)
        if create:
            root.mkdir(parents=True, exist_ok=True)
        with claim_lock(root) if create else contextlib.nullcontext():
            check_study_dir(given, need_record=spec is None)  # again, under the lock: another command may have begun
            recorded = read_record(root)
            if recorded is not None:
                was = SweepSpec.from_record(recorded, root / SWEEP_JSON)
                if recorded.get("storage") != label:
                    raise TrainError(f"{root}'s study lives in {recorded.get('storage')}, not {label}; "
                                     + ("run without --storage." if recorded.get("storage") == "journal" else
                                        f"pass --storage with that URL (or set {STORAGE_ENV})."))
                if spec is not None:
                    new = {**dataclasses.replace(spec, name=spec.name or was.name).record(), "storage": label}
                    diff = _differences(recorded, new)
                    if diff:
                        raise TrainError(f"{root} holds a sweep with other settings (differs in {', '.join(diff)}); "
                                         "run it with the same sweep file and flags, or choose another --study-dir.")
                spec = was
                storage = _storage(optuna, root, storage_url)
            else:
                spec = dataclasses.replace(spec, name=spec.name or root.resolve().name)
                storage = _storage(optuna, root, storage_url)  # a storage that cannot open leaves no record naming it
                write_json_atomic(root / SWEEP_JSON, {**spec.record(), "storage": label})
            study = _study(optuna, storage, spec, root, create)
        study.pruner = make_pruner(optuna, spec)
        return cls(root, spec, study, label)

    # --- claiming ---------------------------------------------------------------------------------

    def claim(self) -> Claim | None:
        """The next trial for this worker, its folder's lock held; None when nothing is left to run."""
        optuna = require_optuna()
        with claim_lock(self.root):
            trials = self.study.get_trials(deepcopy=False)
            for t in trials:
                if t.state == optuna.trial.TrialState.RUNNING:
                    lock = try_lock(self.root / trial_name(t.number))
                    if lock is not None:  # its worker is gone (a live one holds this lock)
                        trial = optuna.trial.Trial(self.study, t._trial_id)  # FrozenTrial names no public id
                        # A worker killed inside ask() leaves a trial without all its parameters: the queued
                        # grid point still holds them, a sampled trial draws them as trial t.number would.
                        self.study.sampler = make_sampler(optuna, self.spec, t.number)
                        for name, dist in self.spec.distributions().items():
                            if name not in t.params:
                                _suggest(trial, name, dist)
                        return Claim(trial, lock, True)
            if self.spec.sampler == "grid":
                if not any(t.state == optuna.trial.TrialState.WAITING for t in trials):
                    return None
            elif len(trials) >= self.spec.trials:
                return None
            self.study.sampler = make_sampler(optuna, self.spec, len(trials))
            trial = self.study.ask(self.spec.distributions())
            lock = try_lock(self.root / trial_name(trial.number))
            if lock is None:
                raise RuntimeError(f"the lock of the new trial {trial.number} is held by another process")
            return Claim(trial, lock, False)

    def frozen(self, number: int):
        return next(t for t in self.study.get_trials(deepcopy=False) if t.number == number)

    # --- running ----------------------------------------------------------------------------------

    def run_claim(self, claim: Claim, out=None, label: str = "") -> str:
        """Run (or resume) one claimed trial to its end and tell the study; returns its final state's name.

        The trial is the trainer's run in ``DIR/trial-NNNN``: a new one (a folder left by a worker that
        died before its first checkpoint is a run, so only that run's files are replaced), or, when the
        folder holds a checkpoint, the trainer's ``--resume`` (its lock, settings and stores checked).
        The run directory's lock is released (``Run.close``) before the study is told.

        A refusal of the trainer (a NaN loss, a setting it rejects, a store changed under a resumed
        trial) fails the trial with its message; Ctrl-C, a bug, or the run directory held by another
        process (a trainer started on it by hand) leaves the trial RUNNING, so the next sweep command
        resumes it.
        """
        optuna = require_optuna()
        import torch

        from .loop import prepare

        State = optuna.trial.TrialState
        trial = claim.trial
        n = trial.number
        run_dir = self.root / trial_name(n)
        params = dict(trial.params)
        before = self.frozen(n)
        resume = has_checkpoint(run_dir)
        note = ""
        segments = int(before.user_attrs.get("segments", 0)) + 1
        spent = float(before.user_attrs.get("seconds", 0.0))
        t0 = time.perf_counter()
        for key, value in (("run_dir", run_dir.name), ("segments", segments), ("worker", _worker_id())):
            trial.set_user_attr(key, value)
        run = None
        try:
            cfg = self.spec.trial_config(params)
            run = prepare(self.spec.stores, run_dir, cfg, resume=resume, overwrite=not resume, quiet=True,
                          tensorboard=bool(self.spec.run.get("tensorboard", False)),
                          probe=self.spec.trial_run(params).get("probe", ()))
            with contextlib.closing(run):  # the run directory's lock, held until the run has written everything
                if resume:
                    note = f", resumed after epoch {run.state['epoch']}"
                elif segments > 1:
                    note = ", started again (an earlier worker died before an epoch ended)"
                trial.set_user_attr("threads", torch.get_num_threads() if run.device.type == "cpu" else None)
                trial.set_user_attr("device", str(run.device) + _visible_devices())
                for line in run.state["history"]:  # epochs a dead worker committed but did not report
                    if line["epoch"] not in before.intermediate_values:
                        trial.report(line["val_mae"], line["epoch"])

                def on_epoch(line: dict) -> bool:
                    trial.report(line["val_mae"], line["epoch"])
                    trial.set_user_attr("seconds", spent + time.perf_counter() - t0)  # kept if this worker dies
                    fault_point("sweep.after_epoch")
                    # after its last epoch a trial is evaluated, not pruned: there is nothing left to save
                    return self.spec.pruner is not None and not run.done_training and trial.should_prune()

                if run.fit(on_epoch=on_epoch):
                    value, state = None, State.PRUNED
                else:
                    summary = run.finish()
                    value, state = self.spec.objective.value(summary, run_dir / "summary.json"), State.COMPLETE
                    low, high = self.spec.objective.interval(summary)
                    if low is not None or high is not None:
                        trial.set_user_attr("interval", [low, high])
                    if self.spec.objective.is_probe:  # shown beside the validation value, never ranked by
                        trial.set_user_attr("test", self.spec.objective.test_value(summary, run_dir / "summary.json"))
        except LockError:  # another process runs this folder: not the trial's fault, so it stays RUNNING
            raise
        except GpuFeaturesError as err:  # the trainer's refusals (settings, a NaN loss): this trial fails
            trial.set_user_attr("error", str(err))
            value, state = None, State.FAIL
        epochs = run.state["epoch"] if run is not None else 0
        seconds = spent + time.perf_counter() - t0
        trial.set_user_attr("epochs_run", epochs)
        trial.set_user_attr("seconds", seconds)
        self.study.tell(trial, value, state=state)
        if out is not None:
            _print_trial(out, label, n, params, state.name, value, epochs, self.spec.objective.name, seconds,
                         trial, note)
        return state.name

    def work(self, out=None, label: str = "", threads: int | None = None) -> dict:
        """Claim and run trials until none is left; returns how many ended in each state."""
        import torch

        counts: dict = {}
        threads_before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            while (claim := self.claim()) is not None:
                try:
                    state = self.run_claim(claim, out, label)
                finally:
                    claim.lock.release()
                counts[state] = counts.get(state, 0) + 1
        finally:
            torch.set_num_threads(threads_before)
        return counts

    def progress(self) -> dict:
        """How many trials are in each state, and how many have finished (complete, pruned or failed)."""
        states: dict = {}
        for t in self.study.get_trials(deepcopy=False):
            states[t.state.name] = states.get(t.state.name, 0) + 1
        return {"states": states, "finished": sum(states.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL"))}


def _study(optuna, storage, spec: SweepSpec, root: Path, create: bool):
    """Load the sweep's study, or create it and queue the grid (under the claim lock, so exactly once)."""
    digest = _digest(spec.record())
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        if not create:
            raise TrainError(f"{root}: the storage holds no study named {spec.name!r} yet; start the sweep "
                             "first.") from None
        if any(root.glob("trial-*")):
            raise TrainError(f"{root} holds trial folders but its storage has no study {spec.name!r} (was "
                             f"{JOURNAL} removed?); move the folder away and start again.") from None
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.objective.direction)
        study.set_user_attr("sweep", digest)
    if "sweep" not in study.user_attrs and not study.get_trials(deepcopy=False):
        study.set_user_attr("sweep", digest)  # a start killed between creating the study and marking it
    if study.user_attrs.get("sweep") != digest:
        raise TrainError(f"the storage already holds a study named {spec.name!r} that is not this sweep; set "
                         "study.name in the sweep file to another name.")
    if create and spec.sampler == "grid" and "queued" not in study.user_attrs:
        points = spec.grid()
        for point in points[len(study.get_trials(deepcopy=False)):]:  # a start killed while queueing
            study.enqueue_trial(point)
        study.set_user_attr("queued", len(points))
    return study


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _visible_devices() -> str:
    v = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f" (CUDA_VISIBLE_DEVICES={v})" if v is not None else ""


def _print_trial(out, label, n, params, state, value, epochs, objective, seconds, trial, note) -> None:
    from gpu_features.guard import escape

    shown = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    what = f"{objective} {value:.6g}" if value is not None else state.lower()
    if state == "FAIL":
        what = f"failed: {trial.user_attrs.get('error', '')}"
    out.print(escape(f"{label}trial {n} [{shown}]: {what}, {epochs} epoch(s), {seconds:.1f} s{note}"),
              soft_wrap=True, highlight=False)


# --- workers ------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In a worker (after fork, before exec): the kernel sends SIGKILL when the launching process dies,
    so a killed sweep leaves no worker training on (its trial is resumed by the next command)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    """Where the workers run: one entry per worker, ``None`` (CPU) or a CUDA device index."""

    devices: tuple
    threads: int | None
    in_process: bool

    def describe(self) -> str:
        n = len(self.devices)
        if self.devices and self.devices[0] is not None:
            per = {d: self.devices.count(d) for d in self.devices}
            return f"{n} worker process(es) on CUDA device(s) " + ", ".join(f"{d} (x{k})" for d, k in per.items())
        if self.in_process:
            return "1 worker (this process)" + (f", {self.threads} thread(s)" if self.threads else "")
        return f"{n} worker processes on the CPU, {self.threads} thread(s) each"


def plan_workers(spec: SweepSpec, jobs: int | None, devices: str | None, jobs_per_device: int | None,
                 threads: int | None) -> WorkerPlan:
    """Assign workers to devices: GPUs (``--devices``, all visible ones by default when the run's device is a
    GPU) get ``--jobs-per-device`` workers each (or ``--jobs`` round-robin); on a CPU ``--jobs`` processes
    share the cores, ``--threads-per-job`` torch threads each (default: cores // jobs)."""
    from gpu_features.devices import resolve_device

    for flag, value in (("--jobs", jobs), ("--jobs-per-device", jobs_per_device), ("--threads-per-job", threads)):
        if value is not None and value < 1:
            raise TrainError(f"{flag} must be >= 1, got {value}.")
    try:
        on_gpu = resolve_device(spec.run.get("device", "auto")).type == "cuda"
    except GpuFeaturesError as err:
        raise TrainError(str(err)) from None
    if devices is not None and not on_gpu:
        raise TrainError("--devices places workers on GPUs, but the sweep's runs use the CPU; drop --devices, or "
                         "set device = \"cuda\" in [run].")
    if not on_gpu:
        if jobs_per_device is not None:
            raise TrainError("--jobs-per-device places several workers on each GPU; on the CPU use --jobs N.")
        n = jobs or 1
        if n == 1:
            return WorkerPlan((None,), threads, True)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return WorkerPlan((None,) * n, threads or max(1, cores // n), False)
    import torch

    count = torch.cuda.device_count()
    if devices is None:
        chosen = list(range(count))
    else:
        try:
            chosen = [int(d) for d in devices.split(",") if d.strip()]
        except ValueError:
            raise TrainError(f"--devices {devices!r}: list CUDA device indices, e.g. --devices 0,1.") from None
        bad = [d for d in chosen if not 0 <= d < count]
        if bad or not chosen:
            raise TrainError(f"--devices {devices!r}: this machine has {count} CUDA device(s) (indices 0 to "
                             f"{count - 1}); list some of those.")
    n = jobs or len(chosen) * (jobs_per_device or 1)
    cores = os.cpu_count() or 1
    return WorkerPlan(tuple(chosen[i % len(chosen)] for i in range(n)), threads or max(1, cores // n), False)


def run_workers(root: Path, plan: WorkerPlan, storage_url: str | None, quiet: bool) -> list[int]:
    """Start the plan's worker processes (``python -m train sweep --study-dir ROOT --worker wI``, a database
    URL handed over in the environment, never in argv) and wait for them; returns their exit codes.
    Ctrl-C here is passed on to every worker, which leaves its trial resumable."""
    procs = []
    for i, device in enumerate(plan.devices):
        env = dict(os.environ)
        env.pop(STORAGE_ENV, None)
        if storage_url is not None:
            env[STORAGE_ENV] = storage_url
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(device)
        env["OMP_NUM_THREADS"] = str(plan.threads)
        cmd = [sys.executable, "-m", "train", "sweep", "--study-dir", str(root), "--worker", f"w{i}",
               "--threads-per-job", str(plan.threads)] + (["--quiet"] if quiet else [])
        procs.append(subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent))
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:  # a terminal's Ctrl-C reached them already; `kill -INT` of this process did not
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise


__all__ = ["CLAIM_LOCK", "INTERRUPTED", "JOURNAL", "STORAGE_ENV", "SWEEP_JSON", "Claim", "Sweep", "WorkerPlan",
           "check_sqlite_url", "check_study_dir", "claim_path", "plan_workers", "read_record", "require_optuna",
           "run_workers", "storage_label", "trial_name", "try_lock"]
