"""gpu-features: --help of the program and of every command, never broken inside a word."""
import os
import re
import subprocess
import sys

COMMANDS = ["precompute", "verify", "inspect"]


def test_help_of_the_program_and_every_command():
    out = subprocess.run([sys.executable, "-m", "gpu_features.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in COMMANDS)
    for cmd in COMMANDS:
        r = subprocess.run([sys.executable, "-m", "gpu_features.cli", cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "usage: gpu-features " + cmd in r.stdout


def test_help_never_breaks_words():
    env = dict(os.environ, COLUMNS="70")
    for cmd in ("precompute", "plot", "export", "verify", "inspect"):
        r = subprocess.run([sys.executable, "-m", "gpu_features.cli", cmd, "--help"], capture_output=True, text=True,
                           env=env)
        assert r.returncode == 0
        words = set(re.findall(r"[A-Za-z_]+", " ".join(r.stdout.split())))
        for w in ("dist_to_prev_SH", "bars_since_SH_norm", "reference"):
            if w in r.stdout.replace("\n", " "):
                assert w in words
        assert not re.search(r"[a-z]-\n", r.stdout)
    r = subprocess.run([sys.executable, "-m", "gpu_features.cli", "plot", "--help"], capture_output=True, text=True,
                       env=env)
    assert "[range_z,dist_to_prev_SH,dist_to_prev_SL,bars_since_SH_norm]" in " ".join(r.stdout.split()).replace(", ", ",")


def test_python_dash_m_gpu_features_is_the_command():
    r = subprocess.run([sys.executable, "-m", "gpu_features", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage: gpu-features" in r.stdout and all(c in r.stdout for c in COMMANDS)
