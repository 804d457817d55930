"""How a command meets its user, for both command lines (``gpu-features`` and ``python -m train``).

:func:`guarded` runs a command: a refusal (:class:`~gpu_features.errors.GpuFeaturesError`, an OS error)
prints one line and gives exit 2 (so does running out of memory), Ctrl-C gives 130, and a bug prints one line naming the file its
traceback was written to and gives exit 3. :func:`make_console` gives consoles that do not break
lines at 80 columns in logs.
"""
from __future__ import annotations

import errno
import os
import tempfile
import traceback

from rich.console import Console
from rich.markup import escape as escape_markup

from .errors import GpuFeaturesError, printable

LOG_WIDTH = 200  # columns of output that is not a terminal (rich would cut it at 80)
EXIT_OK, EXIT_VERIFY_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def make_console(stderr: bool = False) -> Console:
    """A rich console: the terminal's width on a terminal, :data:`LOG_WIDTH` columns elsewhere (unless
    ``COLUMNS`` says otherwise), so summaries in logs and CI are not broken at 80 columns."""
    c = Console(stderr=stderr)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(stderr=stderr, width=LOG_WIDTH)
    return c


def escape(text) -> str:
    """Text from data or a library (paths, symbols, messages) for a rich console: control characters escaped
    (:func:`~gpu_features.errors.printable`), markup brackets kept literal."""
    return escape_markup(printable(text))


def guarded(call, err_console, interrupted: str) -> int:
    """Run a command: a refusal prints its one line and gives exit 2, Ctrl-C gives 130."""
    try:
        return call()
    except GpuFeaturesError as err:
        say(err_console, str(err))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err_console.print(escape(interrupted), soft_wrap=True)
        return EXIT_INTERRUPTED
    except OSError as err:  # the environment: disk full, permissions, a file in the way
        say(err_console, os_error_sentence(err))
        return EXIT_BAD_INPUT
    except MemoryError:  # the environment too: what was asked for does not fit this machine
        say(err_console, OUT_OF_MEMORY)
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - the one place a bug becomes a report instead of a traceback
        if _disk_full(err):
            say(err_console, os_error_sentence(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
            return EXIT_BAD_INPUT
        if _out_of_memory(err):
            say(err_console, OUT_OF_MEMORY)
            return EXIT_BAD_INPUT
        where = _write_traceback()
        say(err_console, f"internal error: {type(err).__name__}: {err}; this is a bug in gpu-features, please "
                         f"report it with the traceback in {where}.", label="internal error")
        return EXIT_INTERNAL


def say(err_console, sentence: str, label: str = "error") -> None:
    """Print one refusal line; markup in the sentence (like ``gpu-features[plot]``) is printed as is, and
    control characters (data quoted in a message: symbol names, a file's bytes) escaped
    (:func:`~gpu_features.errors.printable`)."""
    if sentence.startswith(label + ": "):
        sentence = sentence[len(label) + 2:]
    err_console.print(f"[bold red]{label}:[/] {escape(sentence)}", highlight=False, soft_wrap=True)


def os_error_sentence(err: OSError) -> str:
    """One sentence for an OSError from writing or reading: what, where, how to fix."""
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    if err.errno == errno.ENOSPC or err.errno == getattr(errno, "EDQUOT", -1):
        return (f"the disk is full{where}; nothing was committed and any existing store or export is intact, "
                "so free space (or choose an --output on another disk) and run the command again.")
    if isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"permission denied{where}: this user may not write or read there; choose another --output or "
                "fix the folder's permissions.")
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        return f"a file is in the way{where}: a folder was expected there; choose another --output or move the file."
    return f"{err.strerror or err}{where}; check the path and run the command again."


OUT_OF_MEMORY = ("out of memory: this machine cannot hold what the command was asked to build; ask for less (fewer "
                 "bars or symbols, a smaller batch or model) or use a machine with more memory; nothing was committed.")


def _out_of_memory(err: BaseException) -> bool:
    """torch and CuPy report an allocation that failed as their own error types, with these words inside."""
    text = str(err)
    return "out of memory" in text.lower() or "can't allocate memory" in text or "OutOfMemory" in type(err).__name__


def _disk_full(err: BaseException) -> bool:
    """The safetensors library reports a full disk as its own error type, with the OS text inside."""
    return "No space left on device" in str(err)


def _write_traceback() -> str:
    """Write the current exception's traceback to a file in the temporary folder; returns its path."""
    try:
        fd, path = tempfile.mkstemp(prefix="gpu-features-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        return path
    except OSError:
        traceback.print_exc()
        return "the lines above"
