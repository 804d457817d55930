"""python -m train plot: a run's curves as a PNG."""
import sys

import pytest

torch = pytest.importorskip("torch")

from tests.train.runs import metrics_of, tiny  # noqa: E402
from train import cli  # noqa: E402
from train.loop import train  # noqa: E402


def test_plot_writes_a_png_of_the_expected_size_from_the_runs_numbers(store, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image as mpimg

    from train.plot import FIGSIZE, plot_run

    s = train(store.path, tmp_path / "r", tiny(epochs=2))
    data = plot_run(tmp_path / "r", tmp_path / "c.png", dpi=50)
    img = mpimg.imread(tmp_path / "c.png")
    assert img.shape[:2] == (round(FIGSIZE[1] * 50), round(FIGSIZE[0] * 50)) == (data["height"], data["width"])
    assert img[..., :3].std() > 0.05  # something was drawn
    lines = metrics_of(tmp_path / "r")
    assert data["epochs"] == [1, 2] and data["train_huber"] == [x["train_huber"] for x in lines]
    assert data["val_huber"] == [x["val_huber"] for x in lines]
    assert data["val_mae"] == [x["val_mae"] for x in lines]
    assert data["val_mae_interp_baseline"] == lines[-1]["val_mae_interp_baseline"]
    assert data["split"] == "test" and data["model"] == s["test"]["model"] and data["interp"] == s["test"]["interp"]
    assert cli.main(["plot", str(tmp_path / "r"), "--out", str(tmp_path / "d.png"), "--dpi", "40"]) == 0
    assert mpimg.imread(tmp_path / "d.png").shape[:2] == (round(FIGSIZE[1] * 40), round(FIGSIZE[0] * 40))


def test_plot_without_matplotlib_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    (tmp_path / "metrics.jsonl").write_text("")
    assert cli.main(["plot", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "plotting needs matplotlib, which is not installed; install it with `pip install matplotlib`" in \
        " ".join(err.split()) and len(err.splitlines()) <= 2
