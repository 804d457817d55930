"""``python -m train plot RUN_DIR --out curves.png``: a run's losses and per-feature MAE against the baselines.

Left: the Huber loss (train and val) and the masked MAE (train and val) per
epoch, with the two baselines' validation MAE as horizontal lines (the
uncertainty-weighted objective adds log sigma and goes negative, so the plain
Huber part is what is drawn). Right: masked MAE per feature
of the model, the mean baseline and interpolation, from ``summary.json``
(test split) when the run finished, else from the last epoch's validation.
Uses matplotlib's Agg backend (no display needed); matplotlib is optional.
"""
from __future__ import annotations

import json
from pathlib import Path

from gpu_features.config import FEATURE_NAMES

from .config import TrainError

FIGSIZE = (13.0, 4.8)  # inches; the PNG is FIGSIZE * dpi pixels


def load_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise TrainError(f"{run_dir}: no metrics.jsonl, so there is nothing to plot; train with `python -m train "
                         f"--run-dir {run_dir}` first.")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise TrainError(f"{path}: a line is not valid JSON ({err}); the file is damaged.") from None


def plot_data(run_dir) -> dict:
    """The numbers the figure shows: per-epoch curves and the per-feature bars (model, mean, interp)."""
    run_dir = Path(run_dir)
    lines = load_metrics(run_dir)
    if not lines:
        raise TrainError(f"{run_dir}/metrics.jsonl is empty; no epoch has finished yet.")
    data = {"epochs": [m["epoch"] for m in lines], "train_loss": [m["train_loss"] for m in lines],
            "train_huber": [m["train_huber"] for m in lines], "val_huber": [m["val_huber"] for m in lines],
            "train_mae": [m["train_mae"] for m in lines], "val_mae": [m["val_mae"] for m in lines],
            "val_mae_mean_baseline": lines[-1]["val_mae_mean_baseline"],
            "val_mae_interp_baseline": lines[-1]["val_mae_interp_baseline"], "features": list(FEATURE_NAMES)}
    summary = run_dir / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        data.update(split="test", model=s["test"]["model"], mean=s["test"]["mean"], interp=s["test"]["interp"])
    else:  # unfinished run: the last validation has the model per feature but no per-feature baselines
        data.update(split=f"val (epoch {lines[-1]['epoch']})",
                    model=[lines[-1]["val_mae_per_feature"][f] for f in FEATURE_NAMES], mean=None, interp=None)
    return data


def plot_run(run_dir, out, dpi: int = 100) -> dict:
    """Draw ``run_dir``'s curves into the PNG ``out``.

    Returns:
        :func:`plot_data`'s dict plus ``width`` and ``height`` of the PNG in pixels.
    """
    try:
        import matplotlib
    except ImportError:
        raise TrainError("plotting needs matplotlib, which is not installed; install it with "
                         "`pip install matplotlib` (or `pip install 'gpu-features[plot]'`).") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from gpu_features.plot import check_png, save_png

    check_png(out)  # only our own charts are replaced
    data = plot_data(run_dir)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=FIGSIZE, gridspec_kw={"width_ratios": [1, 1.6]})
    ep = data["epochs"]
    ax1.plot(ep, data["train_huber"], "o-", label="train Huber loss")
    ax1.plot(ep, data["val_huber"], "o-", label="val Huber loss")
    ax1.plot(ep, data["train_mae"], "s-", label="train MAE")
    ax1.plot(ep, data["val_mae"], "s-", label="val MAE")
    ax1.axhline(data["val_mae_mean_baseline"], color="grey", ls="--", label="val MAE, mean baseline")
    ax1.axhline(data["val_mae_interp_baseline"], color="black", ls=":", label="val MAE, interpolation")
    ax1.set_xlabel("epoch")
    ax1.set_xticks(ep)
    ax1.set_title("losses and masked MAE")
    ax1.legend(fontsize=8, loc="center right")
    x = np.arange(len(data["features"]))
    bars = [("model", data["model"])] + [(k, data[k]) for k in ("mean", "interp") if data[k] is not None]
    width = 0.8 / len(bars)
    for k, (label, values) in enumerate(bars):
        ax2.bar(x + (k - (len(bars) - 1) / 2) * width, values, width, label=label)
    ax2.set_xticks(x, data["features"], rotation=30, ha="right", fontsize=8)
    ax2.set_title(f"masked MAE per feature ({data['split']})")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, out, dpi)  # no bbox_inches="tight": the PNG keeps exactly FIGSIZE * dpi pixels
    plt.close(fig)
    data.update(width=int(round(FIGSIZE[0] * dpi)), height=int(round(FIGSIZE[1] * dpi)))
    return data
