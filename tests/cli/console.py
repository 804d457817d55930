"""The command line run in-process, as the tests of its commands call it."""
from gpu_features.cli import main

T0 = 1_704_067_200 * 10**9  # 2024-01-01T00:00Z, the first bar of files the command tests write


def run(capsys, *argv):
    """``(exit code, stdout, stderr)`` of ``gpu-features ARGV`` (arguments converted to text)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
