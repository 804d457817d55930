"""The guard both command lines run under: one-line refusals with their exit codes, crash files for bugs, text
from data escaped, an allocation that fails refused as bad input."""
import errno
import os
import re
from pathlib import Path

import pytest

from gpu_features.cli.common import err_console
from gpu_features.errors import GpuFeaturesError
from gpu_features.guard import EXIT_BAD_INPUT, EXIT_INTERNAL, guarded
from tests.cli.console import run
from tests.harness import one_sentence


def test_install_hints_keep_their_extras(capsys):
    code = guarded(lambda: (_ for _ in ()).throw(GpuFeaturesError("install it with `pip install 'gpu-features[plot]'`.")),
                   err_console, "interrupted")
    assert code == 2 and "gpu-features[plot]" in capsys.readouterr().err


def test_internal_error_has_its_own_code_and_a_traceback_file(capsys):
    def bug():
        return {}["missing"]

    code = guarded(bug, err_console, "interrupted")
    err = capsys.readouterr().err
    assert code == EXIT_INTERNAL == 3 and err.count("\n") == 1 and "internal error: KeyError" in err
    path = re.search(r"traceback in (\S+)\.", err).group(1)
    assert "Traceback" in Path(path).read_text() and "bug" in Path(path).read_text()
    os.unlink(path)


@pytest.mark.parametrize("exc, words", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/out"), "permission denied (/data/out)"),
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro"), "permission denied (/mnt/ro)"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/file/x"), "a file is in the way"),
])
def test_os_errors_are_one_sentence_exit_2(capsys, exc, words):
    def fail():
        raise exc

    code = guarded(fail, err_console, "interrupted")
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1


# --- data text escaped; an allocation that fails is the environment, not a bug ---


ESC = "\x1b[2J"  # clears the screen when printed raw


def test_the_one_error_printer_escapes_what_the_message_quotes(capsys):
    code = guarded(lambda: (_ for _ in ()).throw(GpuFeaturesError(f"no symbol 'ES{ESC}' [bold]here[/bold]")),
                   err_console, "interrupted")
    err = capsys.readouterr().err
    assert code == 2 and "\x1b" not in err and "ES\\x1b[2J" in err and "[bold]here[/bold]" in err


@pytest.mark.parametrize("content", [
    f"timestamp,open,high,low,close\n2024-01-01T00:00:00,{ESC},1,1,1\n".encode(),  # quoted by pyarrow
    b"\x1b[2J\x00\xff\xfe garbage \x1b]0;title\x07\n" * 20,                          # bytes of a binary file
])
def test_data_quoted_in_a_refusal_is_escaped(tmp_path, capsys, content):
    (tmp_path / "bars.csv").write_bytes(content)
    code, _, err = run(capsys, "precompute", "--input", tmp_path / "bars.csv", "--output", tmp_path / "s", "--quiet")
    assert code == 2 and one_sentence(err), err
    assert "\x1b" not in err and "\x07" not in err


@pytest.mark.parametrize("error", [MemoryError(), RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 9 GB")])
def test_an_allocation_that_fails_is_bad_input_not_a_bug(capsys, error):
    def fail():
        raise error

    code = guarded(fail, err_console, "interrupted")
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and one_sentence(err) and "out of memory" in err
