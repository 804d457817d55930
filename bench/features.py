"""Feature engines side by side, on the same synthetic bars, in one run.

Measures (never asserted in tests; reported in the README's Performance section):

- bars/s of the seed-style baseline (the old cost model: a per-bar Python loop
  that writes every bar into each of the K windows holding it, materializing
  ``[n_windows, K, 10]``), the reference engine, the host engine and the GPU
  engine (when present), with ratios to the reference and to the baseline.
  Slow engines get fewer bars and are reported per bar;
- GPU kernel time from CUDA events, and fix-ups at the default warm-up;
- end to end, parquet file to written store, for each fast engine;
- 1 symbol x 1.8M bars against 50 symbols x 36,000 bars for each engine;
- end to end by phase (the manifest's timings: read, compute, statistics, serialize,
  hash, write, other; they add up to the total) for each fast engine, on 1 symbol x 20M
  bars and 2,000 symbols x 10,000 bars, with each case's peak resident memory (a child
  process) against the store's bytes; ``--scale`` shrinks both (0.1: 1 x 2M and 200 x 10k);
- store size against the old layout's ``n_windows x K x 10 x 4`` bytes, and the
  peak resident memory of ``gpu-features precompute`` on the full set (a child process).

With ``--distributed`` it measures the Dask build instead: a generated universe of
``--files`` parquet files (one symbol each, ``--file-bars`` bars and a little more)
built end to end (files in, dataset or store written) by one process
(``precompute`` of every file) and by LocalClusters of each ``--workers`` count,
in files/s and bars/s on warm workers (the cluster's start-up and the workers' first
task, two files, timed apart); every dataset is
first checked equal to the single-process store, per symbol, bit for bit.

Usage: ``python bench/features.py [--bars N] [--scale F] [--out results.json]``, or
``python bench/features.py --distributed [--files 200 --file-bars 100000 --workers 1,2]``.
Prints tables and writes JSON with a ``rows`` list for ``bench/summary.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpu_features as gf  # noqa: E402
from gpu_features import engines, reference, synthetic  # noqa: E402
from gpu_features.config import FeatureConfig, N_FEATURES  # noqa: E402
from gpu_features.engines import gpu as gpu_engine, host as host_engine  # noqa: E402


def seed_style_builder(o, h, l, c, cfg: FeatureConfig) -> np.ndarray:
    """The old pipeline's cost model: per-bar features, then every bar copied into each of
    the K windows that contain it, one Python-level write at a time. Returns ``[n-K+1, K, 10]``."""
    n, K = len(c), cfg.window_length
    feats = np.zeros((n, N_FEATURES), np.float32)
    valid = np.zeros(n, bool)
    swing = np.zeros(n, np.int8)
    reference.run_series(o.tolist(), h.tolist(), l.tolist(), c.tolist(), cfg,
                         np.zeros(16 + cfg.atr_period), feats, valid, swing)
    windows = np.zeros((max(n - K + 1, 0), K, N_FEATURES), np.float32)
    for i in range(n):
        row = feats[i]
        for w in range(max(0, i - K + 1), min(i, n - K) + 1):
            windows[w, i - w] = row
    return windows


def best_of(fn, repeat: int):
    """``(seconds, result)`` of the fastest of ``repeat`` calls."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - t0
        if elapsed < best:
            best, out = elapsed, result
    return best, out


def device_name(engine: str) -> str:
    if engine == "gpu":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {host_engine.threads()} OpenMP threads"


def validate(engine, bars, want, what: str) -> None:
    """Stop the benchmark unless ``engine`` reproduces the reference run ``want`` on ``bars`` bit for bit.

    llm.c's order: reference, kernel, validate, then time. A fast wrong engine is never reported.
    """
    from gpu_features.arrays import to_numpy

    got = engines.run(bars.open, bars.high, bars.low, bars.close, offsets=bars.offsets, engine=engine)
    feats, valid = to_numpy(got.features), to_numpy(got.valid)
    same = (np.array_equal(feats.view(np.uint32), np.asarray(want.features).view(np.uint32))
            and np.array_equal(valid, np.asarray(want.valid)))
    if not same:
        bad = int(np.flatnonzero(np.any(feats.view(np.uint32) != np.asarray(want.features).view(np.uint32), axis=1)
                                 | (valid != np.asarray(want.valid)))[0])
        raise SystemExit(f"validation failed: the {engine} engine differs from the reference on {what}, first at "
                         f"bar {bad}; not timing it.")
    print(f"validated: {engine} engine = reference, bit for bit, on {what} ({bars.n:,} bars)")


def run_engine(engine, bars, repeat):
    """Best-of-``repeat`` wall time of one engine call over ``bars`` (all series in one call)."""
    def call():
        r = engines.run(bars.open, bars.high, bars.low, bars.close, offsets=bars.offsets, engine=engine)
        if engine == "gpu":
            import cupy

            cupy.cuda.Device().synchronize()
        return r
    call()  # warm-up: builds and loads the kernels, touches the allocator
    return best_of(call, repeat)


def peak_rss_of_precompute(n_bars: int, engine: str, symbols: int = 1) -> float:
    """Peak resident MB of ``gpu-features precompute`` on ``symbols x n_bars`` synthetic bars, in a child
    process (Linux)."""
    with tempfile.TemporaryDirectory() as tmp:
        # VmHWM belongs to the child's own address space; ru_maxrss would also count the
        # pages this (large) parent process had when it forked.
        code = ("import sys; from gpu_features.cli import main; "
                f"rc = main(['precompute', '--output', sys.argv[1], '--synthetic-bars', '{n_bars}', "
                f"'--symbols', '{symbols}', '--engine', '{engine}', '--quiet']); "
                "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        out = subprocess.run([sys.executable, "-c", code, str(Path(tmp) / "s")], capture_output=True, text=True,
                             env=env, check=True)
        return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def end_to_end_phases(engines_here, scale: float, repeat: int, rss: bool, result: dict) -> None:
    """In-memory bars -> written store, by phase, on 1 x 20M and 2,000 x 10k bars (times ``scale``).

    Adds ``result["end_to_end"]`` (one record per engine and case) and summary rows; prints the table.
    """
    per = 10_000
    many = max(int(round(2000 * scale)), 1)
    one = many * per
    cases = [(f"1 x {one:,}", one, 1), (f"{many:,} x {per:,}", per, many)]
    records = result.setdefault("end_to_end", [])
    with tempfile.TemporaryDirectory() as tmp:
        for label, n_bars, symbols in cases:
            bars = synthetic.generate(n_bars, symbols, seed=3)
            for eng in engines_here:
                def call():
                    st = gf.precompute(bars, Path(tmp) / f"store-{eng}", engine=eng, overwrite=True)
                    if eng == "gpu":
                        import cupy

                        cupy.get_default_memory_pool().free_all_blocks()
                    return st
                t, st = best_of(call, repeat)
                rec = {"engine": eng, "case": label, "bars": bars.n, "symbols": symbols, "seconds": t,
                       "phases": dict(st.timings), "store_bytes": st.bytes_on_disk}
                if rss and eng == engines_here[-1]:  # one child per case: the fastest engine here
                    rec["peak_rss_mb"] = peak_rss_of_precompute(n_bars, eng, symbols)
                records.append(rec)
            del bars
    rows = result["rows"]
    for eng in engines_here:
        a, b = [r for r in records if r["engine"] == eng]
        rows.append({"what": f"{eng} end to end, {a['case']}", "value": a["seconds"], "unit": "s"})
        rows.append({"what": f"{eng} end to end, {b['case']}", "value": b["seconds"], "unit": "s"})
        rows.append({"what": f"{eng} end to end, {b['case']} / {a['case']}", "value": b["seconds"] / a["seconds"],
                     "unit": "x"})
        for r in (a, b):
            if "peak_rss_mb" in r:
                rows.append({"what": f"{eng} peak RSS / store bytes, {r['case']}",
                             "value": r["peak_rss_mb"] * 2**20 / r["store_bytes"], "unit": "x"})
    print_phase_table(records)


def print_phase_table(records: list) -> None:
    """A column per engine and case: each recorded phase in seconds, the total, bars/s, peak RSS, store size."""
    from rich.console import Console
    from rich.table import Table

    if not records:
        return
    phases = [k for k in records[0]["phases"] if k != "total_s"]
    t = Table(title="end to end by phase: in-memory bars -> written store (s; the phases add up to the total)")
    t.add_column("phase")
    for r in records:
        t.add_column(f"{r['engine']}\n{r['case']}", justify="right")
    for k in phases + ["total_s"]:
        t.add_row(k[:-2], *[f"{r['phases'].get(k, 0.0):.3f}" for r in records])
    t.add_row("bars/s", *[f"{r['bars'] / r['phases']['total_s']:,.0f}" for r in records])
    t.add_row("peak RSS MB", *[f"{r['peak_rss_mb']:,.0f}" if "peak_rss_mb" in r else "-" for r in records])
    t.add_row("store MB", *[f"{r['store_bytes'] / 1e6:,.0f}" for r in records])
    Console().print(t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bars", type=int, default=synthetic.DEFAULT_BARS, help="bars for the fast engines [1.8M]")
    p.add_argument("--ref-bars", type=int, default=200_000, help="bars for the reference engine [200k]")
    p.add_argument("--seed-bars", type=int, default=10_000, help="bars for the seed-style baseline [10k]")
    p.add_argument("--repeat", type=int, default=5, help="best of this many runs for fast engines [5]")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-memory child processes")
    p.add_argument("--scale", type=float, default=1.0,
                   help="size of the end-to-end phase cases: 1 = 1 x 20M and 2,000 x 10k bars [1]")
    p.add_argument("--e2e-repeat", type=int, default=1, help="best of this many end-to-end phase runs [1]")
    p.add_argument("--out", help="JSON file to write")
    g = p.add_argument_group("--distributed: the Dask build of many files")
    g.add_argument("--distributed", action="store_true", help="benchmark the distributed build instead")
    g.add_argument("--files", type=int, default=200, help="files (one symbol each) of the universe [200]")
    g.add_argument("--file-bars", type=int, default=100_000, help="bars per file, about [100000]")
    g.add_argument("--workers", default="1,2", help="worker counts of the LocalClusters [1,2]")
    g.add_argument("--engine", default="auto", help="engine of every build [auto]")
    args = p.parse_args(argv)
    if args.distributed:
        return bench_distributed(args)

    cfg = FeatureConfig()
    fast = (["host"] if host_engine.available() else []) + (["gpu"] if gpu_engine.available() else [])
    if not fast:
        print("no fast engine here (no C++ compiler, no GPU): only the reference and the baseline can run")
    bars = synthetic.generate(args.bars)
    result = {"bench": "features", "bars": args.bars, "engines": {}, "rows": [],
              "device": {e: device_name(e) for e in fast}, "python": platform.python_version()}
    rows = result["rows"]

    # 1. the seed-style baseline and the reference, on fewer bars, per bar
    small = bars.take(0, args.seed_bars)
    t_seed, windows = best_of(lambda: seed_style_builder(small.open, small.high, small.low, small.close, cfg), 1)
    seed_rate = args.seed_bars / t_seed
    result["engines"]["seed-style"] = {"bars": args.seed_bars, "seconds": t_seed, "bars_per_s": seed_rate}
    ref_bars = bars.take(0, args.ref_bars)
    t_ref, ref_run = best_of(lambda: engines.run(ref_bars.open, ref_bars.high, ref_bars.low, ref_bars.close,
                                                 engine="reference"), 1)
    ref_rate = args.ref_bars / t_ref
    result["engines"]["reference"] = {"bars": args.ref_bars, "seconds": t_ref, "bars_per_s": ref_rate}
    rows.append({"what": "seed-style builder", "value": seed_rate, "unit": "bars/s"})
    rows.append({"what": "reference engine", "value": ref_rate, "unit": "bars/s"})
    rows.append({"what": "reference / seed-style", "value": ref_rate / seed_rate, "unit": "x"})

    # 2. fast engines on the full set, each validated against the reference first
    multi_check = synthetic.generate(max(args.ref_bars // 50, 1), 50, seed=1)
    multi_ref = engines.run(multi_check.open, multi_check.high, multi_check.low, multi_check.close,
                            offsets=multi_check.offsets, engine="reference")
    for eng in fast:
        validate(eng, ref_bars, ref_run, f"the first {args.ref_bars:,} bars")
        validate(eng, multi_check, multi_ref, "50 symbols")
        t, run = run_engine(eng, bars, args.repeat)  # kernel time below is that of the best run
        rate = args.bars / t
        result["engines"][eng] = {"bars": args.bars, "seconds": t, "bars_per_s": rate,
                                  "kernel_seconds": run.kernel_seconds, "chunks": run.chunks, "fixups": run.fixups,
                                  "vs_reference": rate / ref_rate, "vs_seed_style": rate / seed_rate}
        rows.append({"what": f"{eng} engine, {args.bars:,} bars", "value": rate, "unit": "bars/s"})
        rows.append({"what": f"{eng} / reference", "value": rate / ref_rate, "unit": "x"})
        rows.append({"what": f"{eng} / seed-style", "value": rate / seed_rate, "unit": "x"})
        rows.append({"what": f"{eng} kernel time", "value": run.kernel_seconds * 1e3, "unit": "ms"})
        rows.append({"what": f"{eng} fix-ups (default W)", "value": run.fixups, "unit": "chunks"})

    # 2b. GPU chunk-size sweep at the default warm-up: kernel time per C, to tune gpu.CHUNK_BARS
    if "gpu" in fast:
        for chunk in (64, 128, 256, 512, 1024):
            def call(chunk=chunk):
                return engines.run(bars.open, bars.high, bars.low, bars.close, engine="gpu", chunk_bars=chunk)
            call()
            runs = [call() for _ in range(args.repeat)]
            best = min(r.kernel_seconds for r in runs)
            result["engines"]["gpu"].setdefault("chunk_sweep_ms", {})[chunk] = best * 1e3
            rows.append({"what": f"gpu kernel time, C={chunk}, W={gpu_engine.WARM_BARS}", "value": best * 1e3,
                         "unit": "ms"})

    # 3. many symbols: 50 x 36,000 against 1 x 1.8M (same total), one engine call each
    per = max(args.bars // 50, 1)
    multi = synthetic.generate(per, 50, seed=1)
    for eng in fast + ["reference"]:
        if eng == "reference":
            sub = synthetic.generate(max(args.ref_bars // 50, 1), 50, seed=1)
            t, _ = best_of(lambda: engines.run(sub.open, sub.high, sub.low, sub.close, offsets=sub.offsets,
                                               engine="reference"), 1)
            rate = sub.n / t
            single = ref_rate
        else:
            t, _ = run_engine(eng, multi, args.repeat)
            rate = multi.n / t
            single = result["engines"][eng]["bars_per_s"]
        result["engines"].setdefault(f"{eng} 50 symbols", {"bars": multi.n, "bars_per_s": rate, "vs_one_symbol": rate / single})
        rows.append({"what": f"{eng}, 50 symbols x {per:,} / 1 symbol", "value": rate / single, "unit": "x"})

    # 4. end to end: parquet file -> written store
    with tempfile.TemporaryDirectory() as tmp:
        import pyarrow as pa
        import pyarrow.parquet as pq

        src = Path(tmp) / "bars.parquet"
        pq.write_table(pa.table({"timestamp": pa.array(bars.timestamp, pa.timestamp("ns", tz="UTC")),
                                 "open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close}), src)
        for eng in fast:
            def e2e():
                # reader "auto": cudf where it imports (GPU machines with cudf), else pyarrow
                return gf.precompute(src, Path(tmp) / f"store-{eng}", engine=eng, overwrite=True, reader="auto")
            e2e()
            t, st = best_of(e2e, args.repeat)
            reader = st.sources[0]["ingest"]["reader"]
            result["engines"][eng].update(end_to_end_seconds=t, end_to_end_reader=reader)
            rows.append({"what": f"{eng} end to end, parquet ({reader}) -> store", "value": t, "unit": "s"})
        # read time of a parquet file with a symbol column (read dictionary-encoded, no per-row strings)
        sym_src = Path(tmp) / "bars-symbol.parquet"
        pq.write_table(pq.read_table(src).append_column(
            "symbol", pa.DictionaryArray.from_arrays(np.zeros(bars.n, np.int32), pa.array(["NQ"]))),
                       sym_src)
        t, _ = best_of(lambda: gf.read_bars(sym_src), args.repeat)
        rows.append({"what": f"read_bars, parquet with symbol, {bars.n:,} bars", "value": t, "unit": "s"})
        if not fast:
            st = gf.precompute(src, Path(tmp) / "store-reference", engine="reference", overwrite=True)
        store_bytes = st.bytes_on_disk
    K = cfg.window_length
    old_bytes = (args.bars - K + 1) * K * N_FEATURES * 4
    result["store_bytes"], result["old_layout_bytes"] = store_bytes, old_bytes
    rows.append({"what": "store size", "value": store_bytes / 1e6, "unit": "MB"})
    rows.append({"what": "old layout, windows x K x 10 float32", "value": old_bytes / 1e6, "unit": "MB"})
    rows.append({"what": "old layout / store", "value": old_bytes / store_bytes, "unit": "x"})
    if not args.no_rss and fast:
        rss = peak_rss_of_precompute(args.bars, fast[-1])
        result["precompute_peak_rss_mb"] = rss
        rows.append({"what": f"precompute peak RSS, {args.bars:,} bars ({fast[-1]})", "value": rss, "unit": "MB"})

    if fast:
        end_to_end_phases(fast, args.scale, args.e2e_repeat, not args.no_rss, result)
    print_table(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def bench_distributed(args) -> int:
    """Files/s and bars/s of the distributed build against one process (see module doc)."""
    import distributed

    from gpu_features.distributed import build_dataset, connect

    workers = [int(x) for x in args.workers.split(",")]
    result = {"bench": "features-distributed", "files": args.files, "rows": [], "cpus": os.cpu_count(),
              "device": {"cpu": f"{os.cpu_count()} CPU cores"}, "python": platform.python_version(),
              "dask": distributed.__version__}
    rows = result["rows"]
    with tempfile.TemporaryDirectory(prefix="gf-bench-dist-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        paths, bars = synthetic.write_universe(tmp / "in", args.files, args.file_bars)
        print(f"universe: {len(paths)} files, {bars.n:,} bars, written in {time.perf_counter() - t:.1f} s")
        result["bars"] = bars.n
        t = time.perf_counter()
        single = gf.precompute(paths, tmp / "single", engine=args.engine)
        t_single = time.perf_counter() - t
        rows.append({"what": "one process: files/s", "value": len(paths) / t_single, "unit": "files/s"})
        rows.append({"what": "one process: bars/s", "value": bars.n / t_single, "unit": "bars/s"})
        result["single"] = {"seconds": t_single, "engine": single.engine["name"]}
        want = {name: single.array("features")[g.first:g.stop] for g in single.segments for name in [g.name]}
        del single
        for n in workers:
            out = tmp / f"ds-{n}"
            t0 = time.perf_counter()
            with connect(workers=n) as (client, _):
                # Warm the workers (their imports and the engine's first load) on two files, timed with the start-up.
                build_dataset(paths[:2], tmp / f"warm-{n}", engine=args.engine, client=client)
                t1 = time.perf_counter()
                ds = build_dataset(paths, out, engine=args.engine, client=client)
                t2 = time.perf_counter()
            for g in ds.segments:  # validate before reporting: bit for bit, per symbol
                got = ds.array("features")[g.first:g.stop]
                if not np.array_equal(got.view(np.uint32), want[g.name].view(np.uint32)):
                    raise SystemExit(f"dataset of {n} worker(s) differs from the single-process store at {g.name}")
            result[f"workers_{n}"] = {"seconds": t2 - t1, "startup_seconds": t1 - t0,
                                      "timings": ds.record["build"]["timings"], "engines": ds.record["build"]["engines"]}
            rows.append({"what": f"{n} worker(s): files/s", "value": len(paths) / (t2 - t1), "unit": "files/s"})
            rows.append({"what": f"{n} worker(s): bars/s", "value": bars.n / (t2 - t1), "unit": "bars/s"})
            rows.append({"what": f"{n} worker(s): cluster start-up and warm-up", "value": t1 - t0, "unit": "s"})
            rows.append({"what": f"{n} worker(s) / one process", "value": t_single / (t2 - t1), "unit": "x"})
            shutil.rmtree(out, ignore_errors=True)
    print_table(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"bench/features.py ({', '.join(f'{k}: {v}' for k, v in result['device'].items())})")
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_column("unit")
    for r in result["rows"]:
        v = r["value"]
        t.add_row(escape(r["what"]), f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}", r["unit"])
    Console().print(t)


if __name__ == "__main__":
    sys.exit(main())
