"""The guard both command lines run under: one-line refusals with their exit codes, crash files for bugs."""
import errno
import os
import re
from pathlib import Path

import pytest

from gpu_features.cli.common import err_console
from gpu_features.errors import GpuFeaturesError
from gpu_features.guard import EXIT_INTERNAL, guarded


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
