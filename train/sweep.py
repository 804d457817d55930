"""``python -m train sweep``: a hyperparameter sweep as one Optuna study whose trials are ordinary runs.

A study folder ``DIR`` holds::

    sweep.json           the resolved sweep (train.sweep_file), written once; a re-run must resolve to it
    study.journal        Optuna's file journal (no server; several machines on a shared disk), unless
                         --storage names a database
    trial-NNNN/          one ordinary run directory per trial; its config.json is a run file
    .trial-NNNN.lock     held (flock) by the worker running that trial; the kernel drops it when that
                         process dies, however it dies
    .sweep.lock          held while a worker claims a trial
    trials.csv, best.json, sweep.png    the report (train.sweep_report)

A worker claims, under ``.sweep.lock``: first a RUNNING trial whose lock nobody
holds (its worker died: the trial continues from its own checkpoint with the
trainer's exact ``--resume``, or starts again in its own folder when it had no
checkpoint yet), else the next queued grid point (the whole grid is queued once,
in file order, so a point is never drawn twice), else a newly sampled trial while
the study has fewer than ``trials``. It holds the trial's lock until the trial is
told finished, so no trial runs twice at once. A trial is the trainer's own run
(:func:`train.loop.prepare`, ``fit``, ``finish``) with the trial's settings;
``--jobs N`` starts N worker processes (each its own CUDA context, on the device
``--devices`` assigns through ``CUDA_VISIBLE_DEVICES``); the same command on
other machines joins the same study.
"""
from __future__ import annotations

import argparse
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
from urllib.parse import urlsplit

from gpu_features.errors import GpuFeaturesError
from gpu_features.fileio import current_umask, fault_point, lock_path, write_json_atomic

from .checkpoint import CHECKPOINT_JSON
from .config import TrainError
from .config_file import allowed_keys
from .sweep_file import SweepSpec, load_sweep_file, quick_grid

SWEEP_JSON, JOURNAL, CLAIM_LOCK = "sweep.json", "study.journal", ".sweep.lock"
STORAGE_ENV = "GPU_FEATURES_SWEEP_STORAGE"  # how the launcher hands a database URL to its workers (not argv)
CLAIM_TIMEOUT_S = 600.0
# Files of a study folder (a folder holding anything else is not ours to fill).
OURS = (SWEEP_JSON, JOURNAL, CLAIM_LOCK, "trials.csv", "best.json", "sweep.png")
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


def try_lock(target: Path):
    """The held lock of a trial folder, or None when another process holds it (that trial is alive)."""
    from filelock import Timeout

    lock = _lock(lock_path(target))
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


def _check_folder(root: Path, need_record: bool) -> None:
    """Refuse a study folder that is a file, or holds files that are not a sweep's."""
    if root.exists() and not root.is_dir():
        raise TrainError(f"--study-dir {root} is a file; choose a folder.")
    if (root / SWEEP_JSON).is_file():
        return
    if need_record:
        raise TrainError(f"{root} holds no sweep ({SWEEP_JSON} is missing); start one with --config FILE or "
                         "--grid NAME=V1,V2,...")
    foreign = sorted(p.name for p in root.iterdir() if not _ours(p.name)) if root.is_dir() else []
    if foreign:
        raise TrainError(f"--study-dir {root} already holds other files ({', '.join(foreign[:5])}"
                         f"{', ...' if len(foreign) > 5 else ''}) and no {SWEEP_JSON}; choose a new or empty folder.")


def _ours(name: str) -> bool:
    """A name a sweep writes at the top of its folder before sweep.json exists (two commands starting at once):
    its files, their hidden temporary siblings, the journal's lock files."""
    return (name in OURS or name.startswith(f"{JOURNAL}.")
            or any(name.startswith(f".{ours}.") for ours in OURS))


def _read_record(root: Path) -> dict | None:
    path = root / SWEEP_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TrainError(f"{path}: not valid JSON ({err}); the study folder is damaged.") from None


def _storage(optuna, root: Path, url: str | None):
    if url is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(root / JOURNAL)))
    try:
        # No heartbeat needed: the trial locks tell a dead worker's trial from a live one on any storage.
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
        root = Path(root)
        _check_folder(root, need_record=spec is None)
        label = storage_label(storage_url)
        if create:
            root.mkdir(parents=True, exist_ok=True)
        with claim_lock(root) if create else contextlib.nullcontext():
            recorded = _read_record(root)
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
            else:
                spec = dataclasses.replace(spec, name=spec.name or root.resolve().name)
                write_json_atomic(root / SWEEP_JSON, {**spec.record(), "storage": label})
            storage = _storage(optuna, root, storage_url)
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

        A refusal of the trainer (a NaN loss, a setting it rejects) fails the trial with its message;
        Ctrl-C or a bug leaves the trial RUNNING, so the next sweep command resumes it.
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
        resume = (run_dir / CHECKPOINT_JSON).is_file()
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
                          tensorboard=bool(self.spec.run.get("tensorboard", False)))
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

            pruned = run.fit(on_epoch=on_epoch)
            if pruned:
                value, state = None, State.PRUNED
            else:
                summary = run.finish()
                value, state = self.spec.objective.value(summary, run_dir / "summary.json"), State.COMPLETE
                low, high = self.spec.objective.interval(summary)
                if low is not None or high is not None:
                    trial.set_user_attr("interval", [low, high])
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
    from rich.markup import escape

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


def _spawn(root: Path, plan: WorkerPlan, storage_url: str | None, quiet: bool) -> list[subprocess.Popen]:
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
    return procs


def _wait(procs: list[subprocess.Popen]) -> list[int]:
    try:
        return [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:  # a terminal's Ctrl-C reached them already; `kill -INT` of this process did not
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise


# --- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train sweep", allow_abbrev=False,
        description="Run a hyperparameter sweep: an Optuna study whose trials are ordinary runs in "
                    "DIR/trial-NNNN. Re-running the same command continues it (finished trials kept, a trial "
                    "left by a dead worker resumed from its checkpoint). Any training flag of `python -m train` "
                    "(e.g. --epochs 2 --store S) sets the base run. Ends with the report of "
                    "`python -m train sweep-report DIR`.",
        epilog="Sweep file: [run] (run-file keys), [search] (lists, {low, high, log, step} ranges, {choices}), "
               "[study] (sampler grid|random|tpe, trials, objective, direction, pruner, seed, name); "
               "see examples/sweep.toml and the README's Sweeps section.")
    p.add_argument("--study-dir", required=True, metavar="DIR", help="the study folder (created if missing)")
    p.add_argument("--config", metavar="FILE", help="sweep file (.toml, .json, .yaml with PyYAML)")
    p.add_argument("--grid", action="append", metavar="NAME=V1,V2,...",
                   help="a grid axis without a file (repeat for more axes), e.g. --grid lr=1e-3,3e-3")
    p.add_argument("--objective", metavar="NAME",
                   help="val_mae (default) or probe:TARGET:ARM:METRIC (overrides the file)")
    p.add_argument("--pruner", choices=("none", "median", "hyperband"), help="stop hopeless trials early, "
                   "comparing each epoch's val_mae (overrides the file) [none]")
    p.add_argument("--trials", type=int, metavar="N", help="number of trials (overrides the file)")
    p.add_argument("--storage", metavar="URL", default=os.environ.get(STORAGE_ENV),
                   help=f"database URL of the study (e.g. postgresql://...) instead of DIR/{JOURNAL} "
                        f"[${STORAGE_ENV}]")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="worker processes on this machine [1 on a CPU; devices x jobs-per-device on GPUs]")
    p.add_argument("--devices", metavar="LIST", help="CUDA device indices for the workers, e.g. 0,1 [all]")
    p.add_argument("--jobs-per-device", type=int, metavar="K", help="worker processes per GPU [1]")
    p.add_argument("--threads-per-job", type=int, metavar="T",
                   help="torch CPU threads per worker [cores / jobs; one worker: torch's default]")
    p.add_argument("--worker", metavar="NAME", help=argparse.SUPPRESS)  # a process started by --jobs
    p.add_argument("--quiet", action="store_true", help="no line per trial")
    return p


def training_overrides(rest: list[str]) -> dict:
    """The base-run settings given as training flags, parsed by the trainer's own parser."""
    from .cli import build_parser as train_parser

    parser = train_parser()
    parser.prog = "python -m train sweep"
    ns = parser.parse_args(rest)
    for flag, dest in (("--run-dir", "run_dir"), ("--resume", "resume"), ("--overwrite", "overwrite"),
                       ("--allow-world-size-change", "allow_world_size_change")):
        if getattr(ns, dest, None):
            raise TrainError(f"{flag} is not a sweep setting: every trial runs in DIR/trial-NNNN and is resumed by "
                             "running the same sweep command again; drop it.")
    out = {k: v for k, v in vars(ns).items() if v is not None and k in allowed_keys() and k != "profile"}
    if getattr(ns, "profile", "auto") != "auto":
        out["profile"] = ns.profile
    return out


def _spec(args, rest: list[str]) -> SweepSpec | None:
    """The sweep the flags describe; None: continue the one the study folder holds."""
    overrides = training_overrides(rest)
    study = {k: getattr(args, k) for k in ("objective", "pruner", "trials") if getattr(args, k) is not None}
    if args.worker:
        return None
    if args.config and args.grid:
        raise TrainError("--grid builds a sweep without a file; with --config put the grid in the file's [search] "
                         "table.")
    if args.config:
        return load_sweep_file(args.config, overrides, study)
    if args.grid:
        return quick_grid(args.grid, overrides, study)
    if overrides or study:
        raise TrainError(f"settings without --config or --grid: to continue the sweep in {args.study_dir} give no "
                         "settings (they are in its sweep.json), or repeat the --config/--grid it was started with.")
    return None


def cmd_sweep(args, rest: list[str], console, err_console) -> int:
    require_optuna()
    spec = _spec(args, rest)
    if spec is not None:
        from .loop import _open_store

        for store in spec.stores:  # the trainer's own refusal, once, not in every trial
            _open_store(store)
    workers = None
    if spec is not None and not args.worker:  # refused before the study folder is made
        workers = plan_workers(spec, args.jobs, args.devices, args.jobs_per_device, args.threads_per_job)
    sweep = Sweep.open(args.study_dir, spec, args.storage)
    out = None if args.quiet else console
    if args.worker:
        sweep.work(out, f"[{args.worker}] ", args.threads_per_job)
        return 0
    spec = sweep.spec
    workers = workers or plan_workers(spec, args.jobs, args.devices, args.jobs_per_device, args.threads_per_job)
    p = sweep.progress()
    params = ", ".join(q.name for q in spec.search)
    running = p["states"].get("RUNNING", 0)
    console.print(f"[bold]sweep[/] {sweep.root}: {spec.sampler} over {params}, {spec.trials} trial(s), objective "
                  f"{spec.objective.name} ({spec.objective.direction})"
                  + (f", {spec.pruner['kind']} pruner" if spec.pruner else "")
                  + f"; {p['finished']} finished" + (f", {running} left running" if running else "")
                  + f"; {workers.describe()}; study in {sweep.storage if args.storage else sweep.root / JOURNAL}",
                  soft_wrap=True, highlight=False)
    code = 0
    if workers.in_process:
        sweep.work(out, "", workers.threads)
    else:
        codes = _wait(_spawn(sweep.root, workers, args.storage, args.quiet))
        failed = [(i, c) for i, c in enumerate(codes) if c != 0]
        if failed:
            err_console.print("worker(s) " + ", ".join(f"w{i} (exit {c})" for i, c in failed) + " stopped early; "
                              "their trials stay running in the study: run the same command again to resume them.",
                              soft_wrap=True)
            code = max(c for _, c in failed) if all(c in (2, 3, 130) for _, c in failed) else 3
    from .sweep_report import report

    report(sweep, console)
    return code


def main(argv: list[str], console, err_console) -> int:
    """``python -m train sweep ...`` and ``python -m train sweep-report DIR`` (argv[0] names which)."""
    from gpu_features.cli import guarded

    if argv[0] == "sweep-report":
        from .sweep_report import cmd_report

        return guarded(lambda: cmd_report(argv[1:], console), err_console, "interrupted")
    args, rest = build_parser().parse_known_args(argv[1:])
    return guarded(lambda: cmd_sweep(args, rest, console, err_console), err_console, INTERRUPTED)


__all__ = ["Sweep", "build_parser", "main", "plan_workers", "require_optuna", "storage_label", "trial_name"]
