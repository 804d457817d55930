"""Sweep throughput: trials per hour with 1 and 2 worker processes on the CPU, 1, 2 and 4 per GPU.

    python bench/sweep.py --out bench/results/sweep-cpu.json            # CPU: --jobs 1 and --jobs 2
    python bench/sweep.py --gpu --out bench/results/sweep-gpu.json      # GPU 0: --jobs-per-device 1, 2, 4

Each configuration is the user's command, timed from start to end (process
starts and imports included): ``python -m train sweep --study-dir D --grid
lr=... --grid dropout=...`` with short trials on a small synthetic store, in a
fresh study folder. Checked after each: every point of the 8-trial grid finished,
each exactly once. The figure is trials per hour and its ratio to one job. On a
CPU the jobs share the cores (``--threads-per-job`` = cores / jobs), so one job
with one thread is measured too, to tell the thread count's effect from the
jobs'; on a GPU each worker has its own CUDA context on device 0. The
machine's load average is recorded before and after (a shared box skews
absolute rates; the ratios, measured side by side, are what count). Without a
CUDA device, or without Optuna, the GPU part says so and is skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

LRS, DROPOUTS = "5e-4,1e-3,2e-3,3e-3", "0.0,0.2"   # 8 trials
CPU_TRIAL = ["--device", "cpu", "--epochs", "2", "--batch-size", "64", "--hidden-size", "16", "--max-train-windows",
             "1024", "--max-val-windows", "256", "--max-final-windows", "256"]
GPU_TRIAL = ["--device", "cuda", "--epochs", "2", "--batch-size", "256", "--hidden-size", "128",
             "--max-train-windows", "16384", "--max-val-windows", "4096", "--max-final-windows", "4096"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_sweep(study: Path, store: Path, trial: list[str], workers: list[str]) -> dict:
    """Run one sweep command and check it: every grid point finished exactly once."""
    from train.sweep import Sweep

    cmd = [sys.executable, "-m", "train", "sweep", "--study-dir", str(study), "--store", str(store), "--grid",
           f"lr={LRS}", "--grid", f"dropout={DROPOUTS}", "--quiet", *trial, *workers]
    before = load()
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"sweep failed (exit {r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    trials = Sweep.open(study, None, None, create=False).study.get_trials()
    grid = {(float(a), float(b)) for a in LRS.split(",") for b in DROPOUTS.split(",")}
    points = [(t.params["lr"], t.params["dropout"]) for t in trials]
    if sorted(points) != sorted(grid) or any(t.state.name != "COMPLETE" for t in trials):
        raise SystemExit(f"validation failed: {study} has {len(trials)} trials, states "
                         f"{sorted({t.state.name for t in trials})}, not the {len(grid)} grid points once each")
    return {"trials": len(trials), "wall_s": round(wall, 2), "trials_per_hour": round(len(trials) / wall * 3600, 1),
            "load_before": before, "load_after": load()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--gpu", action="store_true", help="the GPU variant (1, 2, 4 workers on device 0)")
    ap.add_argument("--bars", type=int, default=60_000, help="synthetic bars in the store [60000]")
    args = ap.parse_args(argv)
    console = Console()
    try:
        import optuna  # noqa: F401
    except ImportError:
        console.print("✗ Optuna is not installed here: the sweep benchmark is skipped (pip install optuna==5.1.0)")
        return 0
    import torch

    import gpu_features as gf
    from gpu_features import synthetic

    if args.gpu and not torch.cuda.is_available():
        console.print("✗ no CUDA device here: the GPU sweep benchmark is skipped")
        return 0
    rows, detail = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        gf.precompute(synthetic.generate(args.bars, 1, 5), store, engine="auto")
        if args.gpu:
            configs = [(f"{k} per GPU", ["--devices", "0", "--jobs-per-device", str(k)]) for k in (1, 2, 4)]
            trial, device = GPU_TRIAL, torch.cuda.get_device_name(0)
        else:
            # one job in the command's process with torch's default threads (as a standalone run), the same with
            # one thread (what each of two jobs gets), and two jobs: separates the thread count from the jobs
            configs = [("1 job", ["--jobs", "1"]), ("1 job, 1 thread", ["--jobs", "1", "--threads-per-job", "1"]),
                       ("2 jobs", ["--jobs", "2"])]
            trial, device = CPU_TRIAL, f"{cpu_name()}, {os.cpu_count()} cores"
        for name, workers in configs:
            detail[name] = run_sweep(Path(tmp) / name.replace(" ", "-"), store, trial, workers)
            console.print(f"{name}: {detail[name]}")
    base = detail[configs[0][0]]["trials_per_hour"]
    n = len(LRS.split(",")) * len(DROPOUTS.split(","))
    table = Table(title=f"sweep throughput, {n} trials of 2 epochs ({device})")
    for col in ("workers", "wall s", "trials/hour", "vs one", "load (1 min) before/after"):
        table.add_column(col, justify="right", no_wrap=True)
    for name, d in detail.items():
        ratio = d["trials_per_hour"] / base
        rows.append({"what": f"sweep trials/hour, {name}", "value": d["trials_per_hour"], "unit": "trials/h"})
        rows.append({"what": f"sweep speedup, {name} vs one", "value": round(ratio, 2), "unit": "x"})
        table.add_row(name, f"{d['wall_s']:.1f}", f"{d['trials_per_hour']:.0f}", f"{ratio:.2f}x",
                      f"{d['load_before'][0]} / {d['load_after'][0]}")
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "device": device, "host": platform.node(), "detail": detail},
                              indent=1) + "\n")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
