"""Run directories are like stores: only a run's own files are replaced, one trainer at a time, a clear way out.

A run directory is recognised as a run by ``run.json`` (format ``jade-run``), written when the run
starts, before ``config.json`` and before any epoch; a directory of an older version is recognised
by its ``checkpoint.json``. What follows from that:

- a new run goes into a new or empty directory; into a run only with ``--overwrite`` (which
  removes that run's own files, nothing else); a directory that is not a run is refused, naming
  what is in the way, even with ``--overwrite``; so is a directory inside a feature store or dataset
  (a store's folder holds only the store's files), and the filesystem root;
- one trainer at a time: :func:`lock` holds ``.NAME.lock`` beside the directory
  (:func:`gpu_features.fileio.writer_lock`) for the whole run; a second trainer into the same
  directory waits, then is refused in one sentence;
- a run stopped before its first checkpoint (Ctrl-C, SIGKILL, a refused start) is named as such
  both when a new run and when ``--resume`` is asked for, and both point at ``--overwrite``;
- on ``--resume``, ``config.json`` is checked against the checkpoint: settings edited by hand are
  refused (naming them), a store path (the same bars moved) and ``tensorboard`` are honoured, and
  the file is rewritten to describe the resumed run; a store whose bars changed is named as
  appended to or rebuilt, with the choice that is left.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from gpu_features.fileio import (MAX_CONFIG_BYTES, absolute, describe_entries, folder_entries, now_iso,
                                 read_json_file, write_json_atomic, writer_lock)
from gpu_features.store import enclosing_artifact

from .config import TrainConfig, TrainError

RUN_MARKER = "run.json"
RUN_FORMAT, RUN_VERSION = "jade-run", 1
CHECKPOINT_JSON = "checkpoint.json"  # as train.checkpoint names it (that module imports this one)
RESOLVED = "config.json"             # as train.config_file names it


def is_run(run_dir) -> bool:
    """True when ``run_dir`` holds a run: its ``run.json``, or (older runs) a jade ``checkpoint.json``."""
    run_dir = Path(run_dir)
    for name, fmt in ((RUN_MARKER, RUN_FORMAT), (CHECKPOINT_JSON, "jade-checkpoint")):
        if (run_dir / name).is_file():
            try:
                record = read_json_file(run_dir / name, "a run record", "", TrainError, MAX_CONFIG_BYTES)
            except TrainError:
                continue
            if isinstance(record, dict) and record.get("format") == fmt:
                return True
    return False


def has_checkpoint(run_dir) -> bool:
    return (Path(run_dir) / CHECKPOINT_JSON).is_file()


def _where(run_dir) -> Path:
    """The absolute run directory, refused where nothing of a run may go: the root, below a file, inside a
    feature store or dataset."""
    given, path = run_dir, absolute(run_dir)
    if not path.name:
        raise TrainError(f"--run-dir {given} is the filesystem root; a run is a directory of its own, so choose a "
                         "new directory below it (like runs/demo).")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TrainError(f"--run-dir {given}: {parent} is a file, so no directory can be made below it; "
                                 "choose another --run-dir.")
            break
    holder = enclosing_artifact(path)
    if holder is not None:
        folder, kind = holder
        raise TrainError(f"--run-dir {given} is {'the' if folder == path else 'inside the'} feature {kind} {folder}; a "
                         f"{kind}'s folder holds only the {kind}'s files, so choose a --run-dir outside it.")
    return path


def check_new(run_dir, overwrite: bool) -> Path:
    """Refuse a directory a new run may not use (see module doc); returns it as an absolute path."""
    path = _where(run_dir)
    if path.exists() and not path.is_dir():
        raise TrainError(f"--run-dir {run_dir} is a file; choose a directory.")
    names = folder_entries(path) if path.is_dir() else []
    if not names:
        return path
    if not is_run(path):
        raise TrainError(f"--run-dir {run_dir} is not a run directory: it holds {describe_entries(path, names)}, "
                         "which no run wrote; refusing to use it (even with --overwrite), so choose a new or empty "
                         "--run-dir.")
    if overwrite:
        return path
    if not has_checkpoint(path):
        raise TrainError(f"{run_dir} holds a run that stopped before its first checkpoint (nothing to resume); start "
                         "it again with --overwrite, or choose another --run-dir.")
    existing = [n for n in names if not n.startswith(".")]
    raise TrainError(f"{run_dir} already holds a run ({', '.join(existing[:6])}); continue it with --resume, replace "
                     "it with --overwrite, or choose another --run-dir (make train RUN=runs/other).")


def check_resume(run_dir) -> Path:
    """Refuse ``--resume`` where there is nothing to resume, saying what to do instead; returns the path."""
    path = _where(run_dir)
    if has_checkpoint(path):
        return path
    if is_run(path):
        raise TrainError(f"{run_dir} holds a run that stopped before its first checkpoint, so there is nothing to "
                         f"resume; start it again with `python -m train --config {Path(run_dir) / RESOLVED} --run-dir "
                         f"{run_dir} --overwrite`.")
    if not path.exists():
        raise TrainError(f"{run_dir}: no such run directory, so there is no {CHECKPOINT_JSON} to resume from; start a "
                         "new run without --resume.")
    if not path.is_dir():
        raise TrainError(f"--run-dir {run_dir} is a file, not a run directory, so there is nothing to resume; choose "
                         "the run's directory.")
    names = folder_entries(path)
    if names:
        raise TrainError(f"--run-dir {run_dir} is not a run directory (it holds {describe_entries(path, names)}, which "
                         f"no run wrote), so there is no {CHECKPOINT_JSON} to resume from; give the run's directory.")
    raise TrainError(f"{run_dir}: no {CHECKPOINT_JSON} to resume from; start a new run without --resume.")


_HELD: dict[Path, contextlib.ExitStack] = {}  # run directories whose lock this process holds, and how to let go


@contextlib.contextmanager
def lock(run_dir):
    """Hold the run directory's writer lock (the parent folder is made first: the lock lives beside it).

    Another process waits, then is refused. Within this process, a run that was never closed (a
    ``prepare``d run interrupted by an exception, then prepared again to resume) gives the lock over
    to the new one: runs of one process are sequential, and the old one can no longer write.
    """
    path = absolute(run_dir)
    earlier = _HELD.pop(path, None)
    if earlier is not None:
        earlier.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    stack = contextlib.ExitStack()
    stack.enter_context(writer_lock(path, "python -m train"))
    _HELD[path] = stack
    try:
        yield
    finally:
        if _HELD.get(path) is stack:
            del _HELD[path]
        stack.close()


def start(run_dir, run_files, resolved_run: dict, fresh: bool) -> None:
    """Make ``run_dir`` this run's: a fresh run removes the previous run's own files (``run_files`` and its
    checkpoint tensors, nothing else) and writes ``run.json``; every run then writes ``config.json``,
    the resolved settings (a resumed run's, after :func:`check_config_json` passed). Call under :func:`lock`."""
    run_dir = Path(run_dir)
    if fresh:
        for name in list(run_files) + [RUN_MARKER]:
            (run_dir / name).unlink(missing_ok=True)
        for f in run_dir.glob("checkpoint-e*.safetensors"):
            f.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh or not (run_dir / RUN_MARKER).is_file():  # first, so a run killed at once is still recognised
        write_json_atomic(run_dir / RUN_MARKER, {"format": RUN_FORMAT, "version": RUN_VERSION, "created": now_iso()})
    write_json_atomic(run_dir / RESOLVED, resolved_run)


def read_config_json(run_dir) -> dict | None:
    """The run keys of ``RUN_DIR/config.json`` (None when it is absent), checked like a run file; a file that
    cannot be read as one is refused, saying how to get back to the checkpoint's settings."""
    from .config_file import load_run_file

    path = Path(run_dir) / RESOLVED
    if not path.is_file():
        return None
    try:
        return load_run_file(path)
    except TrainError as err:
        raise TrainError(f"--resume: {path} no longer reads as the run's settings ({str(err).rstrip('.')}); the run "
                         f"continues with the settings in its {CHECKPOINT_JSON}, so fix {RESOLVED} or delete it (it is "
                         "written again from the checkpoint).") from None


def check_config_json(run_dir, saved: dict) -> None:
    """Refuse ``--resume`` when ``config.json`` was edited to settings the checkpoint's run does not have.

    A resumed run is the run that started: a changed learning rate, model or window would make it
    another run, so the edit is named and refused, never silently ignored. ``store`` and
    ``tensorboard`` are not settings of the run (the bars are checked by their checksums) and are
    honoured by the command line.
    """
    data = read_config_json(run_dir)
    if data is None:
        return
    fields = {f for f in TrainConfig.__dataclass_fields__}
    differ = [f"{k} {v!r} (the run: {saved.get(k)!r})" for k, v in data.items() if k in fields and saved.get(k) != v]
    if "run_dir" in data and absolute(data["run_dir"]) != absolute(run_dir):
        differ.append(f"run_dir {data['run_dir']!r} (the run: {str(run_dir)!r})")
    if differ:
        path = Path(run_dir) / RESOLVED
        raise TrainError(f"--resume: {path} was edited after the run started: {', '.join(differ)}; a resumed run "
                         "keeps the settings it started with, so undo the edit (or delete the file), or start a new "
                         f"run with them: `python -m train --config {path} --run-dir OTHER_DIR`.")


def check_same_stores(run_dir, was: list[dict], now: list[dict]) -> None:
    """Refuse ``--resume`` on other bars than the run's, saying what changed and what is left to do.

    ``was`` and ``now``: store identities (path, created, n_bars, shards_sha256) of the checkpoint and of
    the stores given. A store at the same path whose old shards are still its first ones was appended
    to; one whose shards differ was rebuilt; another path holding other bars is another store.
    """
    if [s["shards_sha256"] for s in was] == [s["shards_sha256"] for s in now]:
        return
    fresh = "start a new run on the stores as they are now with --overwrite (or another --run-dir)"
    if len(was) != len(now):
        raise TrainError(f"--resume: {run_dir} was trained on {len(was)} store(s) "
                         f"({', '.join(s['path'] for s in was)}) and {len(now)} are given "
                         f"({', '.join(s['path'] for s in now)}); pass the run's stores with "
                         f"--store, in that order, or {fresh}.")
    for a, b in zip(was, now):
        if a["shards_sha256"] == b["shards_sha256"]:
            continue
        same_place = absolute(a["path"]) == absolute(b["path"])
        if same_place and b["shards_sha256"][:len(a["shards_sha256"])] == a["shards_sha256"]:
            change = (f"{b['path']} was appended to after this run started ({a['n_bars']:,} bars then, "
                      f"{b['n_bars']:,} now)")
        elif same_place:
            change = (f"{b['path']} was rebuilt after this run started (created {a['created']} then, {b['created']} "
                      f"now; its bars differ)")
        else:
            raise TrainError(f"--resume: {run_dir} was trained on {a['path']} (created {a['created']}), not on "
                             f"{b['path']} (created {b['created']}, other bars); pass --store {a['path']} to resume, "
                             f"or {fresh}.")
        raise TrainError(f"--resume: {change}; a resumed run must see the windows it started with, so {fresh}.")


__all__ = ["RUN_MARKER", "check_config_json", "check_new", "check_resume", "check_same_stores", "has_checkpoint",
           "is_run", "lock", "read_config_json", "start"]
