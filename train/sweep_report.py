"""``python -m train sweep-report DIR``: a sweep's trials as a table, ``trials.csv``, ``best.json`` and ``sweep.png``.

One row per trial: number, parameters, objective (finished trials only: a pruned
trial stopped before the final evaluation that gives it), epochs run, state,
seconds of work (summed over the parts of a resumed trial), and in the CSV also
how many parts it ran in, its worker, device, CPU threads, run folder and error.
``best.json`` is the best finished trial's run file (a copy of its
``config.json``), so ``python -m train --config DIR/best.json --run-dir R``
trains it again. ``sweep.png`` (matplotlib, extra ``plot``) draws the
objective against each parameter, the optimization history (objective by
trial number with the best so far) and Optuna's parameter importances
(PED-ANOVA, its default) once ten or more trials have finished.
"""
from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path

from gpu_features.errors import GpuFeaturesError
from gpu_features.fileio import write_json_atomic, write_text_atomic

from .config import TrainError
from .config_file import RESOLVED, load_run_file

CSV, BEST, PNG = "trials.csv", "best.json", "sweep.png"
PANEL_IN = (4.2, 3.2)  # inches per panel; the PNG is columns x rows panels at DPI
DPI = 100
MAX_TABLE_ROWS = 60    # beyond this the printed table keeps the best rows (trials.csv keeps all)
MIN_IMPORTANCE_TRIALS = 10  # PED-ANOVA compares the top 10% of trials with the rest: fewer say nothing


def trial_rows(sweep) -> list[dict]:
    """Every trial of the study as a flat dict (the CSV's rows, in trial order)."""
    names = [p.name for p in sweep.spec.search]
    probe = sweep.spec.objective.is_probe
    rows = []
    for t in sweep.study.get_trials(deepcopy=False):
        a = t.user_attrs
        row = {"trial": t.number, "state": t.state.name,
               "objective": t.value if t.state.name == "COMPLETE" else None}
        if probe:
            row["low"], row["high"] = (a.get("interval") or [None, None])
            row["test"] = a.get("test")
        params = t.params or t.system_attrs.get("fixed_params", {})  # a queued grid point: its values
        row.update({n: params.get(n) for n in names})
        row.update({"epochs": a.get("epochs_run", len(t.intermediate_values)), "seconds": a.get("seconds"),
                    "segments": a.get("segments"), "worker": a.get("worker"), "device": a.get("device"),
                    "threads": a.get("threads"), "run_dir": a.get("run_dir"), "error": a.get("error")})
        rows.append(row)
    return rows


def best_row(rows: list[dict], direction: str) -> dict | None:
    done = [r for r in rows if r["objective"] is not None and math.isfinite(r["objective"])]
    if not done:
        return None
    if direction == "minimize":  # ties: the earlier trial, as Optuna's best_trial
        return min(done, key=lambda r: (r["objective"], r["trial"]))
    return max(done, key=lambda r: (r["objective"], -r["trial"]))


def write_csv(rows: list[dict], path: Path) -> None:
    """``rows`` as CSV, written through a temporary sibling and a rename (never half a file)."""
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def table(sweep, rows: list[dict], best: dict | None):
    from rich.table import Table

    from gpu_features.guard import escape

    names = [p.name for p in sweep.spec.search]
    shown = [r for r in rows if r["state"] != "WAITING"]
    queued = len(rows) - len(shown)
    if len(shown) > MAX_TABLE_ROWS:  # keep the best finished ones and say so
        sign = 1 if sweep.spec.objective.direction == "minimize" else -1
        done = sorted((r for r in shown if r["objective"] is not None), key=lambda r: sign * r["objective"])
        done = done[:MAX_TABLE_ROWS]
        shown = sorted(done, key=lambda r: r["trial"])
    obj = sweep.spec.objective
    t = Table(title=escape(f"{sweep.root}: {len(rows) - queued} trial(s) run or running")
                    + (f", {queued} queued" if queued else "")
                    + f"; objective {obj.name} ({obj.direction}), best bold"
                    + (f"; the {len(shown)} best shown, all in {CSV}" if len(shown) < len(rows) - queued else ""))
    t.add_column("trial", justify="right")
    for n in names:
        t.add_column(n, justify="right")
    t.add_column(obj.name if not obj.is_probe else f"{obj.metric} val", justify="right")
    if obj.is_probe:
        t.add_column("interval", justify="right")
        t.add_column(f"{obj.metric} test", justify="right")
    for col in ("epochs", "state", "time"):
        t.add_column(col, justify="right")
    for r in shown:
        cells = [str(r["trial"])] + [_fmt(r[n]) for n in names] + [_fmt(r["objective"])]
        if obj.is_probe:
            cells.append(f"[{_fmt(r['low'])}, {_fmt(r['high'])}]" if r["low"] is not None else "")
            cells.append(_fmt(r["test"]))
        cells += [_fmt(r["epochs"]), r["state"].lower(), f"{r['seconds']:.1f} s" if r["seconds"] is not None else ""]
        t.add_row(*cells, style="bold" if best is not None and r["trial"] == best["trial"] else None)
    return t


def importances(study) -> dict | None:
    """Optuna's parameter importances (its default evaluator), or None where the trials do not allow them."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError, ZeroDivisionError):
            return None


def plot(sweep, rows: list[dict], out: Path) -> tuple[int, int]:
    """Draw ``sweep.png`` (written as the package's charts are: marked as ours, replacing only one of ours,
    through a rename); returns its size in pixels.

    Raises:
        TrainError: matplotlib is missing.
        GpuFeaturesError: ``out`` is a file that is not a chart this package drew.
    """
    try:
        import matplotlib
    except ImportError:
        raise TrainError("the sweep's plot needs matplotlib, which is not installed; install it with pip install "
                         "'gpu-features[plot]' (the table, trials.csv and best.json are written).") from None
    from gpu_features.plot import check_png, save_png

    check_png(out, "sweep-report")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    obj = sweep.spec.objective
    done = [r for r in rows if r["objective"] is not None]
    pruned = sum(r["state"] == "PRUNED" for r in rows)
    imp = importances(sweep.study) if len(done) >= MIN_IMPORTANCE_TRIALS else None
    panels = len(sweep.spec.search) + 1 + (imp is not None)
    cols = min(3, panels)
    nrows = -(-panels // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(PANEL_IN[0] * cols, PANEL_IN[1] * nrows), squeeze=False)
    flat = list(axes.flat)
    ylabel = obj.name if not obj.is_probe else f"{obj.metric} ({obj.arm}, {obj.target})"
    for ax, p in zip(flat, sweep.spec.search):
        xs = [r[p.name] for r in done]
        ys = [r["objective"] for r in done]
        if p.kind in (bool, str):
            labels = [str(v) for v in (p.values or [])]
            xs = [labels.index(str(x)) for x in xs]
            ax.set_xticks(range(len(labels)), labels)
        elif p.log or (xs and min(xs) > 0 and max(xs) / min(xs) >= 100):
            ax.set_xscale("log")
        if obj.is_probe and done and done[0]["low"] is not None:
            err = [[r["objective"] - r["low"] for r in done], [r["high"] - r["objective"] for r in done]]
            ax.errorbar(xs, ys, yerr=err, fmt="o", capsize=3)
        else:
            ax.plot(xs, ys, "o", alpha=0.8)
        ax.set_xlabel(p.name)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{ylabel} against {p.name}", fontsize=9)
    ax = flat[len(sweep.spec.search)]
    nums = [r["trial"] for r in done]
    ys = [r["objective"] for r in done]
    pick = min if obj.direction == "minimize" else max
    ax.plot(nums, ys, "o", label="trial")
    ax.plot(nums, [pick(ys[:i + 1]) for i in range(len(ys))], "-", drawstyle="steps-post", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(ylabel)
    ax.set_title(f"history: {len(done)} finished" + (f", {pruned} pruned (no final value)" if pruned else ""),
                 fontsize=9)
    ax.legend(fontsize=8)
    if imp is not None:
        ax = flat[len(sweep.spec.search) + 1]
        names = list(imp)[::-1]
        ax.barh(names, [imp[n] for n in names])
        ax.set_title("parameter importance (Optuna PED-ANOVA)", fontsize=9)
    for ax in flat[panels:]:
        ax.axis("off")
    fig.tight_layout()
    try:
        save_png(fig, out, DPI)
    finally:
        plt.close(fig)
    return int(round(PANEL_IN[0] * cols * DPI)), int(round(PANEL_IN[1] * nrows * DPI))


def report(sweep, console) -> dict:
    """Print the table; write trials.csv, best.json (when a trial finished) and sweep.png (with matplotlib).

    Returns:
        ``{"rows", "best", "csv", "best_json", "png"}`` (paths None where not written).
    """
    from gpu_features.guard import escape

    rows = trial_rows(sweep)
    best = best_row(rows, sweep.spec.objective.direction)
    console.print(table(sweep, rows, best))
    out = {"rows": rows, "best": best, "csv": sweep.root / CSV, "best_json": None, "png": None}
    write_csv(rows, sweep.root / CSV)
    wrote = [CSV]
    if best is not None:
        write_json_atomic(sweep.root / BEST, load_run_file(sweep.root / best["run_dir"] / RESOLVED))
        out["best_json"] = sweep.root / BEST
        wrote.append(BEST)
    try:
        w, h = plot(sweep, rows, sweep.root / PNG)
        out["png"] = sweep.root / PNG
        wrote.append(f"{PNG} ({w}x{h} px)")
    except GpuFeaturesError as err:  # no matplotlib, or a sweep.png that is not ours: the rest is written
        console.print(f"no {PNG}: {escape(str(err))}", soft_wrap=True)
    if best is not None:
        shown = " ".join(f"{p.name}={_fmt(best[p.name])}" for p in sweep.spec.search)
        console.print(escape(f"best: trial {best['trial']} [{shown}] {sweep.spec.objective.name} "
                             f"{_fmt(best['objective'])}; train it again with python -m train --config "
                             f"{sweep.root / BEST} --run-dir runs/best"), soft_wrap=True, highlight=False)
    if sweep.spec.objective.is_probe:
        console.print("note: trials are ranked by the probe on the validation split; the test column is shown "
                      "beside it and never ranked by, so the best trial's test score is an honest estimate only "
                      "for that one trial: confirm it on later bars.", soft_wrap=True)
    console.print(escape(f"wrote {', '.join(str(sweep.root / w) for w in wrote)}"), soft_wrap=True, highlight=False)
    return out


__all__ = ["BEST", "CSV", "PNG", "best_row", "plot", "report", "trial_rows", "write_csv"]
