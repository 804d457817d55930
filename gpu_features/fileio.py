"""Files written so that a reader never sees a part: one helper per need, used by store, export and trainer.

- :func:`sha256_file`: the one SHA-256 of a file (stores, sources, checkpoints).
- :func:`temp_sibling`: the one naming rule for temporary files and folders, hidden
  siblings of their target (``.NAME.<tag>-<random>``), so a rename into place never
  crosses a file system and leftovers are recognisable.
- :func:`write_json_atomic`, :func:`write_text_atomic`, :func:`replace_dir`: JSON and text
  files and whole directories replaced by a rename, after an fsync; a directory is swapped
  with its replacement in one ``renameat2(RENAME_EXCHANGE)`` on Linux, so there is no moment
  without it.
- :func:`fsync_file`, :func:`fsync_dir`: durability.
- :func:`writer_lock`: the one lock a writer of a store, export or run directory holds (``filelock``).
- :func:`fault_point`: named steps where the fault-injection tests kill a writer.
- :func:`read_json_file`: the one guarded reader of a JSON file a user or a disk hands us
  (manifests, config files): size-limited, UTF-8, nesting depth bounded, one sentence on failure.
- :func:`absolute`, :func:`check_parents`, :func:`inside`, :func:`folder_entries`,
  :func:`describe_entries`, :func:`check_writable`: the path facts every "only our own files" check
  (stores, datasets, exports, run directories) is built from.
"""
from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import errno
import hashlib
import json
import os
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second (the ``created`` field of every artifact)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes, read in 8 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def temp_sibling(path, tag: str) -> Path:
    """A fresh hidden name beside ``path``: ``.NAME.<tag>-<8 hex>`` (same folder, so a rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{uuid.uuid4().hex[:8]}")


def fsync_file(path) -> None:
    """Flush a written file's bytes to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def json_text(obj) -> str:
    """``obj`` as JSON text, a dict's top-level keys one per line.

    The values are written compactly by the C encoder: ``indent`` switches json to its
    pure-Python encoder, which took seconds on the statistics of 2,000 symbols.
    """
    if not isinstance(obj, dict):
        return json.dumps(obj) + "\n"
    items = [f"{json.dumps(str(k))}: {json.dumps(v)}" for k, v in obj.items()]
    return "{\n " + ",\n ".join(items) + "\n}\n" if items else "{}\n"


def write_json_atomic(path, obj, lines: bool = False) -> None:
    """Write ``obj`` as JSON (or, with ``lines``, a list as JSON lines) through a temporary sibling,
    an fsync and a rename, then fsync the folder: readers see the old file or the new one, never a
    part, and the new one survives a power cut once this returns. Keys keep their insertion order
    (writers build their dicts in a fixed order), so equal inputs give equal bytes."""
    write_text_atomic(path, "".join(json.dumps(x) + "\n" for x in obj) if lines else json_text(obj))


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` through a temporary sibling, an fsync and a rename, then fsync the folder (as
    :func:`write_json_atomic`: readers see the old file or the new one, never a part)."""
    path = Path(path)
    tmp = temp_sibling(path, "tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the system or file system cannot (then the caller falls back)."""
    if not sys.platform.startswith("linux") or os.environ.get("GPU_FEATURES_NO_EXCHANGE"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(tmp: Path, out: Path) -> None:
    """Move a complete new directory ``tmp`` into place at ``out``, then remove the old one.

    On Linux the two are swapped in one ``renameat2(RENAME_EXCHANGE)``: at every instant ``out`` is
    the complete old or the complete new directory. Elsewhere the old one is first renamed to a
    ``.NAME.old-*`` sibling; a crash between the two renames leaves ``out`` missing with both
    siblings complete, which :func:`gpu_features.store.recovery.recover` puts right on the next
    open. The parent folder is fsynced after the switch (the commit is durable when this returns).
    """
    tmp, out = Path(tmp), Path(out)
    if not out.exists():
        os.replace(tmp, out)
        fsync_dir(out.parent)
        return
    if exchange(tmp, out):
        fsync_dir(out.parent)
        fault_point("replace.after_exchange")
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old directory
        return
    old = temp_sibling(out, "old")
    os.replace(out, old)
    fault_point("replace.between_renames")
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)


# --- durability and the umask ---------------------------------------------------------------


def fsync_dir(path) -> None:
    """Flush a directory's entries (new names, renames) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask, read without changing it where /proc allows (else set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- fault injection (tests) ----------------------------------------------------------------

FAULT_ENV = "GPU_FEATURES_FAULT"


def fault_point(name: str) -> None:
    """A named step of a writer where the fault-injection tests strike.

    ``GPU_FEATURES_FAULT=NAME`` kills the process here with SIGKILL (no cleanup runs, as with
    ``kill -9`` or a power cut); ``GPU_FEATURES_FAULT=enospc:NAME`` raises the ``OSError`` a full
    disk gives; ``GPU_FEATURES_FAULT=pause:NAME`` sleeps a second there (a wide window for a
    concurrent writer to race into). Unset (always, outside tests) this costs one look-up.
    """
    want = os.environ.get(FAULT_ENV)
    if not want:
        return
    if want == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if want == "enospc:" + name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
    if want == "pause:" + name:
        time.sleep(1.0)


# --- writer locks ---------------------------------------------------------------------------

LOCK_TIMEOUT_ENV = "GPU_FEATURES_LOCK_TIMEOUT"
LOCK_TIMEOUT_S = 30.0


def lock_path(target) -> Path:
    """The lock file of a store, export or run directory: ``.NAME.lock`` beside it (the directory itself
    is replaced by writers, so the lock cannot live inside it). The filesystem root has no such place
    and is refused (:func:`absolute` callers refuse it first, naming their option)."""
    from .errors import GpuFeaturesError

    target = absolute(target)
    if not target.name:
        raise GpuFeaturesError(f"{target} is the filesystem root; nothing of gpu-features is written there, so "
                               "choose a folder below it.")
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def writer_lock(target, what: str):
    """Hold the one writer lock of ``target`` (a directory that may not exist yet).

    A second writer waits up to ``$GPU_FEATURES_LOCK_TIMEOUT`` seconds (default 30), then is
    refused with :class:`~gpu_features.errors.LockError`. The lock is an ``flock``: the kernel
    releases it when its holder dies, so a killed writer never leaves a stale lock.
    """
    from filelock import FileLock, Timeout

    from .errors import LockError

    target = Path(target)
    try:
        timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, LOCK_TIMEOUT_S))
    except ValueError:
        timeout = LOCK_TIMEOUT_S
    lock = FileLock(str(lock_path(target)), mode=0o666 & ~current_umask())
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise LockError(f"{target} is being written by another process (lock {lock_path(target)} held for "
                        f"{timeout:g} s); wait for it to finish and run {what} again, or choose another "
                        "output.") from None
    try:
        yield
    finally:
        lock.release()


# --- guarded JSON ---------------------------------------------------------------------------

MAX_JSON_BYTES = 1 << 30  # manifests of very large stores stay far below this
MAX_CONFIG_BYTES = 16 << 20  # a config file is a few hundred bytes


def read_json_file(path, what: str, fix: str, error: type | None = None, max_bytes: int = MAX_JSON_BYTES,
                   label: str | None = None):
    """Parse the JSON file ``path``, trusting nothing: returns the parsed value.

    Refused in one sentence starting with ``label`` (default: the path; ``--config FILE`` names the
    option) and saying ``what`` the file should be, ending with ``fix`` (how to put it right), as
    ``error`` (default :class:`~gpu_features.errors.GpuFeaturesError`): missing or unreadable,
    larger than ``max_bytes``, not UTF-8, not JSON, or nested deeper than the parser recurses (a
    crafted file would otherwise end in a RecursionError).
    """
    from .errors import GpuFeaturesError

    error = error or GpuFeaturesError
    path = Path(path)
    label = label or str(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise error(f"{label}: not a regular file, so it cannot be {what}; {fix}")
        if size > max_bytes:
            raise error(f"{label}: {size:,} bytes is far too large for {what} (at most {max_bytes:,}); {fix}")
        raw = path.read_bytes()
    except OSError as err:
        raise error(f"{label}: cannot be read ({err.strerror or err}); {fix}") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise error(f"{label}: not valid JSON (not UTF-8 text, byte {err.start}), so it is not {what}; {fix}") from None
    except json.JSONDecodeError as err:
        raise error(f"{label}: not valid JSON ({err}), so it is not {what}; {fix}") from None
    except RecursionError:
        raise error(f"{label}: JSON nested too deeply to be {what} (corrupt or crafted); {fix}") from None


# --- path facts for "only our own files" ----------------------------------------------------


def absolute(path) -> Path:
    """``path`` made absolute and normalised (``.`` and ``..`` resolved by name, links kept), so that
    ``--output .`` has a name and a parent like any other path."""
    return Path(os.path.abspath(os.fspath(path)))


def check_parents(path, option: str, error: type | None = None) -> None:
    """Refuse ``path`` when an existing ancestor is a file: nothing can be made below a file."""
    from .errors import GpuFeaturesError

    for parent in absolute(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise (error or GpuFeaturesError)(
                    f"{option} {path}: {parent} is a file, not a folder, so nothing can be made below it; "
                    f"choose another {option}.")
            return


def check_replaceable(out: Path, given, ours, what: str, overwrite: bool, error: type | None = None,
                      option: str = "--output") -> None:
    """Refuse an existing ``out`` that ``ours(out)`` says this command did not write (never replaced, even with
    ``overwrite``), and one of ours without ``overwrite``; ``what`` names our kind of file (``a gpu-features
    parquet export``), ``given`` is the path as the user typed it."""
    from .errors import GpuFeaturesError

    error = error or GpuFeaturesError
    if out.exists() or out.is_symlink():
        if not ours(out):
            raise error(f"{given} already exists and is not {what}; refusing to replace it (even with --overwrite), "
                        f"choose another {option}.")
        if not overwrite:
            raise error(f"{given} already exists ({what}); pass --overwrite to replace it or choose another {option}.")


def inside(path, folder) -> bool:
    """True when ``path`` is ``folder`` or lies below it (links resolved, so a second name is caught)."""
    try:
        p, f = Path(path).resolve(), Path(folder).resolve()
    except (OSError, RuntimeError):
        return False
    return p == f or f in p.parents


def folder_entries(folder) -> list[str]:
    """Names in ``folder`` (sorted; an unreadable folder gives ``[]``: callers then refuse by kind)."""
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


def describe_entries(folder, names, limit: int = 3) -> str:
    """``notes.txt, runs/ and 4 more``: the first ``limit`` of ``names`` in ``folder`` (``/`` marks a folder)."""
    names = sorted(names, key=lambda n: (n.startswith("."), n))  # what a user sees in `ls` first
    shown = [n + ("/" if (Path(folder) / n).is_dir() else "") for n in names[:limit]]
    rest = len(names) - len(shown)
    return ", ".join(shown) + (f" and {rest} more" if rest > 0 else "")


def check_writable(folder, option: str, error: type | None = None) -> None:
    """Refuse a ``folder`` that exists but cannot be written: on a read-only file system, or not writable
    by this user (said as such, never as a full disk)."""
    from .errors import GpuFeaturesError

    error = error or GpuFeaturesError
    folder = Path(folder)
    if not folder.is_dir():
        return
    try:
        readonly = bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1))
    except (OSError, AttributeError):
        readonly = False
    if readonly:
        raise error(f"{folder} is on a read-only file system, so {option} cannot be written there; choose "
                    f"another {option}.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise error(f"permission denied ({folder}): this user may not write there; choose another {option} or "
                    "fix the folder's permissions.")
