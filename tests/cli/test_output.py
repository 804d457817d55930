"""gpu-features export and plot: refusals of bad outputs and arguments, bounded memory."""
import pytest

import gpu_features as gf
from gpu_features import synthetic
from tests.cli.console import run
from tests.harness import STORE_ENGINE


def test_export_below_a_file(small_demo, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, "export", small_demo, "--output", tmp_path / "f" / "e")
    assert code == 2 and "a file is in the way" in err


@pytest.mark.parametrize("argv, words", [
    (["--out", "c.txt"], "the name must end in .png"),
    (["--last", "-5"], "--last -5 is out of range; a chart shows 1 .. 20,000 bars"),
    (["--last", "0"], "--last 0 is out of range"),
    (["--last", "1000000"], "--last 1000000 is out of range"),
    (["--start", "garbage"], "--start 'garbage' is not an ISO 8601 time"),
    (["--end", "31/12/2024"], "--end '31/12/2024' is not an ISO 8601 time"),
])
def test_plot_refuses_bad_arguments(small_demo, tmp_path, capsys, argv, words):
    argv = [a if a != "c.txt" else str(tmp_path / "c.txt") for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "c.png")]
    code, _, err = run(capsys, "plot", small_demo, *argv)
    assert code == 2 and words in err and "split date" not in err, err
    assert not (tmp_path / "c.txt").exists()


def test_plot_bounds_its_memory(tmp_path, capsys):
    path = tmp_path / "big"
    gf.precompute(synthetic.generate(25_000, 1, 0), path, engine=STORE_ENGINE)
    code, _, err = run(capsys, "plot", path, "--start", "2000-01-01", "--out", tmp_path / "c.png")
    assert code == 2 and "more than a chart holds (20,000); narrow the range" in err
