"""Precompute against its floor, side by side in one run: the ratios of the README's performance table.

For each source tree (this checkout, and any ``--compare`` checkout, e.g. an older commit's),
measured in interleaved rounds so that every tree sees the same load:

- **in process**: ``gpu_features.precompute(bars, fresh_dir)`` of bars already in memory, against one
  engine call on the same bars (``engines.run``, as ``bench/features.py`` times it); the ratio of the
  best times, and the median of the per-round ratios. The bars are this tree's synthetic set, written
  once and loaded by every tree the same way (also as the parquet file of the CLI runs);
- **CLI end to end**: ``python -m gpu_features precompute --input bars.parquet`` in a fresh
  process (interpreter start, imports, reading, compute, statistics, writing, the summary);
- **peak RSS / store bytes**: the CLI's peak resident memory (``VmHWM``) against the bytes of the
  store it wrote, for the synthetic set of ``--rss-bars`` x 1 symbol and 10,000 x
  ``--rss-bars / 10,000`` symbols (one long series and many short ones), and for the parquet run.

Before any timing, each tree's host engine is checked bit for bit against the reference engine
on the first 200,000 bars, and its store's features, validity and timestamps against its own
engine call (the store opened with checksums). A wrong result is never timed.

The box is shared: every figure is the best of ``--repeat`` (wall seconds, and process CPU seconds
beside it), and the JSON records the load average and how busy the CPUs were with other work
during the run (from ``/proc/stat``), so a reader can tell which figures to trust.

Usage: ``python bench/precompute.py [--bars 1800000] [--repeat 7] [--rss-bars 20000000]
[--compare DIR] [--out bench/results/precompute.json]``. ``--rss-bars 0`` skips the synthetic RSS
cases. Prints a table and writes JSON with a ``rows`` list for ``bench/summary.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from summary import rows_table, write_result  # noqa: E402  bench/summary.py (the script's folder is on the path)
# Runs the CLI of the tree on PYTHONPATH, then records in argv[1] the process's peak resident memory (kB) and
# where gpu_features came from.
CLI = ("import json, sys\n"
       "import gpu_features\n"
       "from gpu_features.cli import main\n"
       "code = main(sys.argv[2:])\n"
       "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
       "open(sys.argv[1], 'w').write(json.dumps([int(hwm[0]) if hwm else 0, gpu_features.__file__]))\n"
       "sys.exit(code)\n")


# --- the worker: one per tree, gpu_features from its PYTHONPATH --------------------------------

def write_bars(n_bars: int, folder: Path) -> None:
    """The synthetic bars of this tree as ``bars.npz`` (what every worker loads) and ``bars.parquet`` (the
    CLI's input), so that every tree times the same bars, loaded the same way."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpu_features import synthetic

    bars = synthetic.generate(n_bars)
    np.savez(folder / "bars.npz", open=bars.open, high=bars.high, low=bars.low, close=bars.close,
             timestamp=bars.timestamp)
    pq.write_table(pa.table({"timestamp": pa.array(bars.timestamp, pa.timestamp("ns", tz="UTC")), "open": bars.open,
                             "high": bars.high, "low": bars.low, "close": bars.close}), folder / "bars.parquet")


def worker(bars_file: Path, engine: str, tmp: Path) -> int:
    """Serve timing commands (JSON lines on stdin) for the gpu_features on PYTHONPATH."""
    import resource

    import numpy as np

    import gpu_features as gf
    from gpu_features import engines, synthetic
    from gpu_features.arrays import to_numpy  # CuPy arrays of the gpu engine to numpy
    try:
        from gpu_features.ingest import Bars
    except ImportError:  # a --compare tree from before the ingest package
        from gpu_features.bars import Bars

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def answer(obj) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    here = Path(gf.__file__).resolve().parents[1]
    if str(here) != os.environ.get("PYTHONPATH"):
        answer({"error": f"gpu_features came from {here}, not from PYTHONPATH={os.environ.get('PYTHONPATH')}"})
        return 1
    # Loaded, not generated here: a generator leaves the allocator in a state of its own (glibc keeps or returns
    # freed memory depending on the largest block freed so far), which would favour one tree's later phases.
    with np.load(bars_file) as d:
        bars = Bars(d["open"], d["high"], d["low"], d["close"], d["timestamp"], np.zeros(1, dtype=np.int64), ("NQ",),
                    synthetic.synthetic_source(len(d["close"]), 1, 0))

    def call():
        return engines.run(bars.open, bars.high, bars.low, bars.close, offsets=bars.offsets, engine=engine)

    # Validate before timing: the engine against the reference, the store against the engine.
    head = bars.take(0, min(200_000, bars.n))
    want = engines.run(head.open, head.high, head.low, head.close, engine="reference")
    got = engines.run(head.open, head.high, head.low, head.close, engine=engine)
    if not (np.array_equal(to_numpy(got.features).view(np.uint32), np.asarray(want.features).view(np.uint32))
            and np.array_equal(to_numpy(got.valid), np.asarray(want.valid))):
        answer({"error": f"the {engine} engine differs from the reference on the first {head.n:,} bars; not timing"})
        return 1
    run = call()
    store = gf.precompute(bars, tmp / "validate", engine=engine)
    store = gf.open_store(tmp / "validate", checksums=True)
    same = (np.array_equal(store.array("features").view(np.uint32), to_numpy(run.features).view(np.uint32))
            and np.array_equal(store.array("valid"), to_numpy(run.valid))
            and np.array_equal(store.array("timestamp"), bars.timestamp))
    if not same:
        answer({"error": "the store's arrays differ from the engine's; not timing"})
        return 1
    store_bytes = sum(p.stat().st_size for p in (tmp / "validate").iterdir())
    del store, run
    shutil.rmtree(tmp / "validate")
    answer({"ready": True, "bars": bars.n, "store_bytes": store_bytes,
            "validated": f"{engine} = reference on {head.n:,} bars; store = engine on {bars.n:,} bars"})
    count = 0
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "engine":
            c0, t0 = cpu(), time.perf_counter()
            r = call()
            answer({"wall": time.perf_counter() - t0, "cpu": cpu() - c0, "kernel": r.kernel_seconds})
            del r
        elif cmd["cmd"] == "precompute":
            count += 1
            out = tmp / f"store-{count}"
            c0, t0 = cpu(), time.perf_counter()
            st = gf.precompute(bars, out, engine=engine)
            wall, used = time.perf_counter() - t0, cpu() - c0
            answer({"wall": wall, "cpu": used, "timings": st.timings, "kernel": st.engine["kernel_seconds"]})
            del st
            shutil.rmtree(out)  # outside the timed region: the next round writes a fresh store too
    return 0


class Tree:
    """A worker process serving one source tree."""

    def __init__(self, label: str, src: Path, args, tmp: Path):
        self.label, self.src = label, src
        self.tmp = tmp / label
        self.tmp.mkdir()
        self.env = dict(os.environ, PYTHONPATH=str(src))
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker",
                                      str(tmp / "bars.npz"), "--engine", args.engine, "--tmp", str(self.tmp)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=self.env)
        self.hello = self.read()
        if "error" in self.hello:
            raise SystemExit(f"{label}: {self.hello['error']}")
        print(f"validated ({label}): {self.hello['validated']}")

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.label}: the worker stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def ask(self, cmd: str, **kw) -> dict:
        self.proc.stdin.write(json.dumps(dict(kw, cmd=cmd)) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.proc.stdin.close()
            self.proc.wait()

    def cli(self, argv: list, out: Path) -> dict:
        """One CLI run in a fresh process writing the store ``out``: wall s, CPU s, peak RSS, store bytes."""
        hwm = self.tmp / "hwm"
        t0 = time.perf_counter()
        # cwd: not a checkout, since `python -c` puts the working folder before PYTHONPATH on sys.path.
        proc = subprocess.Popen([sys.executable, "-c", CLI, str(hwm), "precompute", *argv, "--output", str(out),
                                 "--quiet"], env=self.env, cwd=self.tmp, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        err = proc.stderr.read()
        proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{self.label}: precompute {' '.join(argv)} failed ({proc.returncode}): {err}")
        size = sum(p.stat().st_size for p in out.iterdir())
        kb, origin = json.loads(hwm.read_text())
        if not Path(origin).resolve().is_relative_to(self.src):
            raise SystemExit(f"{self.label}: the CLI ran gpu_features from {origin}, not from {self.src}")
        rss = kb * 1024
        shutil.rmtree(out)
        return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_rss": rss, "store_bytes": size}


# --- the parent: interleaved rounds, the load, the table -----------------------------------------

def cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat (0, 0 where there is none)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields[:8]) - idle, sum(fields[:8])


def summary(values: list) -> dict:
    values = sorted(values)
    return {"best": values[0], "median": values[len(values) // 2], "all": values}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bars", type=int, default=1_800_000, help="synthetic bars, one symbol [1.8M]")
    p.add_argument("--repeat", type=int, default=7, help="interleaved rounds; figures are best-of [7]")
    p.add_argument("--engine", default="host", help="engine of every run [host]")
    p.add_argument("--rss-bars", type=int, default=20_000_000,
                   help="bars of the synthetic RSS cases (1 x N and 10,000 x N/10,000; 0 skips them) [20M]")
    p.add_argument("--compare", action="append", default=[], metavar="DIR",
                   help="another source tree to measure side by side (repeatable), e.g. a `git worktree` of main")
    p.add_argument("--out", help="JSON file to write")
    p.add_argument("--worker", metavar="BARS_NPZ", help=argparse.SUPPRESS)
    p.add_argument("--write-bars", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(Path(args.worker), args.engine, Path(args.tmp))
    if args.write_bars:
        write_bars(args.bars, Path(args.write_bars))
        return 0

    labels = ["this"] + [f"compare{k}" if len(args.compare) > 1 else "compare" for k in range(1, len(args.compare) + 1)]
    sources = [ROOT] + [Path(d).resolve() for d in args.compare]
    load_start, (busy0, total0), ours0 = os.getloadavg(), cpu_ticks(), os.times()
    t_start = time.time()
    result = {"bench": "precompute", "bars": args.bars, "engine": args.engine, "repeat": args.repeat,
              "device": {"cpu": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"},
              "python": platform.python_version(), "trees": {}, "rows": []}
    with tempfile.TemporaryDirectory(prefix="gf-bench-pre-") as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--write-bars", str(tmp), "--bars",
                        str(args.bars)], env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
        trees = [Tree(label, src, args, tmp) for label, src in zip(labels, sources)]
        try:
            parquet = tmp / "bars.parquet"
            rec = {t.label: {"src": str(t.src), "engine": [], "precompute": [], "cli": [], "phases": []}
                   for t in trees}
            for t in trees:  # warm-up: kernels loaded, page cache holding the parquet file and the imports
                t.ask("engine")
                t.cli(["--input", str(parquet), "--engine", args.engine], tmp / "warm")
            for r in range(args.repeat):
                order = trees if r % 2 == 0 else trees[::-1]
                for t in order:
                    rec[t.label]["engine"].append(t.ask("engine"))
                    pre = t.ask("precompute")
                    rec[t.label]["precompute"].append(pre)
                    rec[t.label]["cli"].append(t.cli(["--input", str(parquet), "--engine", args.engine],
                                                     tmp / "cli"))
                print(f"round {r + 1}/{args.repeat} done")
            rss_cases = []
            if args.rss_bars:
                symbols = max(args.rss_bars // 10_000, 1)
                rss_cases = [(f"1 x {args.rss_bars:,}", [str(args.rss_bars), "1"]),
                             (f"{symbols:,} x 10,000", ["10000", str(symbols)])]
            for t in trees:
                rec[t.label]["rss"] = {}
                for label, (n, s) in rss_cases:
                    rec[t.label]["rss"][label] = t.cli(["--synthetic-bars", n, "--symbols", s, "--engine",
                                                        args.engine], tmp / "rss")
        finally:
            for t in trees:
                t.close()
    busy1, total1 = cpu_ticks()
    ours1 = os.times()
    ours = sum(ours1[:4]) - sum(ours0[:4])  # this process and its waited-for children (workers, CLI runs)
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    elapsed = time.time() - t_start
    others = max((busy1 - busy0) / ticks - ours, 0.0) if total1 > total0 else None
    result["load"] = {"loadavg_start": load_start, "loadavg_end": os.getloadavg(), "seconds": elapsed,
                      "cpus": os.cpu_count(),
                      "others_cpu_share": others / (elapsed * (os.cpu_count() or 1)) if others is not None else None}
    rows = result["rows"]
    for t in trees:
        d = rec[t.label]
        eng = summary([x["wall"] for x in d["engine"]])
        pre = summary([x["wall"] for x in d["precompute"]])
        cli = summary([x["wall"] for x in d["cli"]])
        paired = summary([p["wall"] / e["wall"] for p, e in zip(d["precompute"], d["engine"])])
        eng_cpu = summary([x["cpu"] for x in d["engine"]])
        pre_cpu = summary([x["cpu"] for x in d["precompute"]])
        best = min(d["precompute"], key=lambda x: x["wall"])
        cli_best = min(d["cli"], key=lambda x: x["wall"])
        d["figures"] = {
            "engine_s": eng, "precompute_s": pre, "cli_s": cli, "engine_cpu_s": eng_cpu, "precompute_cpu_s": pre_cpu,
            "precompute_over_engine_best": pre["best"] / eng["best"],
            "precompute_over_engine_paired_median": paired["median"],
            "precompute_over_engine_cpu_best": pre_cpu["best"] / eng_cpu["best"],
            "phases_of_best": best["timings"], "kernel_s_of_best": best["kernel"],
            "cli_peak_rss_over_store": cli_best["peak_rss"] / cli_best["store_bytes"],
            "rss": {k: dict(v, ratio=v["peak_rss"] / v["store_bytes"]) for k, v in d.get("rss", {}).items()},
        }
        f = d["figures"]
        tag = f" [{t.label}]" if len(trees) > 1 else ""
        d["figures"]["kernel_s_best"] = min(x["kernel"] for x in d["engine"])
        rows += [
            {"what": f"{args.engine} kernel time, {args.bars:,} bars (best){tag}",
             "value": d["figures"]["kernel_s_best"] * 1e3, "unit": "ms"},
            {"what": f"engine call, {args.bars:,} bars{tag}", "value": eng["best"] * 1e3, "unit": "ms"},
            {"what": f"in-process precompute{tag}", "value": pre["best"] * 1e3, "unit": "ms"},
            {"what": f"in-process precompute / engine call (best){tag}", "value": f["precompute_over_engine_best"],
             "unit": "x"},
            {"what": f"in-process precompute / engine call (median of rounds){tag}",
             "value": f["precompute_over_engine_paired_median"], "unit": "x"},
            {"what": f"in-process precompute / engine call (CPU s){tag}", "value": f["precompute_over_engine_cpu_best"],
             "unit": "x"},
            {"what": f"CLI end to end, parquet -> store{tag}", "value": cli["best"], "unit": "s"},
            {"what": f"CLI peak RSS / store bytes, parquet{tag}", "value": f["cli_peak_rss_over_store"], "unit": "x"},
        ]
        for k, v in f["rss"].items():
            rows.append({"what": f"peak RSS / store bytes, {k}{tag}", "value": v["ratio"], "unit": "x"})
        result["trees"][t.label] = d
    share = result["load"]["others_cpu_share"]
    rows.append({"what": "CPU share used by other work during the run", "value": 100 * (share or 0), "unit": "%"})
    print_table(result)
    write_result(args.out, result)
    return 0


def print_table(result: dict) -> None:
    from rich.console import Console

    load = result["load"]
    console = Console()
    console.print(rows_table(f"bench/precompute.py ({result['device']['cpu']}; load average "
                             f"{load['loadavg_start'][0]:.1f} -> {load['loadavg_end'][0]:.1f})", result["rows"]))
    for label, d in result["trees"].items():
        ph = d["figures"]["phases_of_best"]
        console.print(f"{label}: phases of the best in-process run (ms): "
                      + ", ".join(f"{k[:-2]} {v * 1e3:.0f}" for k, v in ph.items())
                      + f"; kernels {d['figures']['kernel_s_of_best'] * 1e3:.0f}", soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
