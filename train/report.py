"""The closing report of a run: per-feature masked MAE of the model beside both baselines, on val and test."""
from __future__ import annotations

from rich.table import Table


def _pct(model: float, base: float) -> str:
    """How much lower the model's error is than the baseline's (positive = model better)."""
    return f"{100.0 * (base - model) / base:+.1f}%" if base > 0 else "n/a"


def summary_table(summary: dict, split: str) -> Table:
    """A rich table for one split: per feature, model / mean / interp masked MAE (best bold) and the model's gain."""
    r = summary[split]
    t = Table(title=f"{split}: masked MAE per feature, {r['windows']:,} windows (lower is better; bold = best)")
    t.add_column("feature", no_wrap=True)
    for col in ("model", "mean", "interp", "vs mean", "vs interp"):
        t.add_column(col, justify="right", no_wrap=True)
    rows = [(name, r["model"][j], r["mean"][j], r["interp"][j]) for j, name in enumerate(summary["feature_names"])]
    rows.append(("all (mean)", r["mae"]["model"], r["mae"]["mean"], r["mae"]["interp"]))
    for k, (name, *trio) in enumerate(rows):
        best = min(trio)
        cells = [f"[bold]{v:.4f}[/]" if v == best else f"{v:.4f}" for v in trio]
        t.add_row(name, *cells, _pct(trio[0], trio[1]), _pct(trio[0], trio[2]), end_section=k == len(rows) - 2)
    return t


def verdict_lines(summary: dict) -> list[str]:
    """Plain statements of where the model stands against each baseline, as measured."""
    out = []
    n = len(summary["feature_names"])
    for split in ("val", "test"):
        r = summary[split]["mae"]
        beat_mean = "[green]beats[/]" if r["model"] < r["mean"] else "[red]does not beat[/]"
        beat_interp = "[green]beats[/]" if r["model"] < r["interp"] else "[red]does not beat[/]"
        out.append(f"{split}: model {r['model']:.4f} {beat_mean} the mean baseline {r['mean']:.4f} "
                   f"({_pct(r['model'], r['mean'])}) and {beat_interp} interpolation {r['interp']:.4f} "
                   f"({_pct(r['model'], r['interp'])}; better on {summary[f'features_beating_interp_{split}']}/{n} "
                   f"features), over {summary[split]['windows']:,} windows / {summary[split]['positions']:,} masked bars")
    return out


def _batch(summary: dict) -> str:
    """``B=256``, or ``4 processes x B=256 = 1024`` for a data-parallel run."""
    B, W = summary["config"]["batch_size"], summary.get("world_size", 1)
    return f"B={B}" if W == 1 else f"{W} processes x B={B} = {W * B} windows per step"


def print_report(summary: dict, console) -> None:
    c = summary["config"]
    wps = summary["windows_per_s"]
    console.print(f"[bold]run[/] {summary['run_dir']}: device {summary['device']}{' (bf16)' if summary['bf16'] else ''}, "
                  f"profile {c['profile']}, Jade {c['num_layers']}x{c['hidden_size']} BiLSTM, "
                  f"{_batch(summary)}, "
                  f"{summary['epochs_run']} epoch(s) of {summary['train_windows']:,} windows"
                  f"{' (stopped early)' if summary['stopped_early'] else ''}, best epoch {summary['best_epoch']}"
                  + (f", {wps:,.0f} windows/s, {100 * summary['data_wait_fraction']:.1f}% waiting for data"
                     if wps else ""))
    for split in ("val", "test"):
        console.print(summary_table(summary, split))
    for line in verdict_lines(summary):
        console.print(line)
