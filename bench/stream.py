"""Per-update latency of the live stream: one closed bar for each of S symbols per update.

Measures (never asserted in tests; reported in the README), for S = 1, 64, 512, 2,048 and each engine
present here (reference, host, gpu):

- ``features``: ``stream.update(bars)`` of one bar per symbol, the input a ready :class:`Bars`
  (arrays, the lean path) and a pyarrow table (time, symbol, OHLC: decoded by ingest, ``ingest/decode.py``);
- ``features + encoder``: the update (``Bars`` input), then Jade (2 x 128 BiLSTM, the ``full``
  profile's model) on ``stream.window()`` of every symbol in one batch (``train.live.LiveEncoder``:
  a CUDA graph on a GPU).

Each case primes the stream with ``--prime`` bars per symbol (so windows are full and swings set),
warms up, then times ``--updates`` updates (fewer with the encoder on a CPU: ``--encoder-updates``, and
at most ``max(3, 2048 / S)``)
and reports p50, p99 and the maximum in microseconds of wall-clock time, the p50 and p99 of the
calling thread's CPU time (features cases: the update runs on that thread below 4,096 symbols; what it
costs when no other process takes the core), and the machine's load average before and after (a
shared box: repeat the run and compare; ratios inside one run are what count).

Usage: ``python bench/stream.py [--symbols 1,64,512,2048] [--engines reference,host,gpu] [--out results.json]``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpu_features as gf  # noqa: E402
from gpu_features import synthetic  # noqa: E402
from gpu_features.ingest import Bars  # noqa: E402
from gpu_features.engines import gpu as gpu_engine, host as host_engine  # noqa: E402


def machine() -> dict:
    model = ""
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {"cpu": model or platform.processor(), "cores": os.cpu_count(), "python": platform.python_version(),
           "omp_threads": os.environ.get("OMP_NUM_THREADS", "default")}
    if gpu_engine.available():
        import cupy

        out["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return out


def updates_of(bars: Bars, start: int, count: int):
    """``count`` updates from local bar ``start`` on, one bar of every symbol each: ``[(Bars, table)]``."""
    b = bars.segment_bounds()
    S = bars.n_segments
    out = []
    for i in range(start, start + count):
        rows = b[:-1] + i
        one = Bars(bars.open[rows], bars.high[rows], bars.low[rows], bars.close[rows], bars.timestamp[rows],
                   np.arange(S, dtype=np.int64), bars.segment_names)
        table = pa.table({"time": pa.array(bars.timestamp[rows], pa.timestamp("ns", tz="UTC")),
                          "symbol": list(bars.segment_names), "open": bars.open[rows], "high": bars.high[rows],
                          "low": bars.low[rows], "close": bars.close[rows]})
        out.append((one, table))
    return out


def primed(bars: Bars, prime: int, engine: str) -> gf.FeatureStream:
    """A stream of ``engine`` holding the first ``prime`` bars of every symbol (fed by the fastest engine)."""
    b = bars.segment_bounds()
    rows = np.concatenate([np.arange(b[s], b[s] + prime) for s in range(bars.n_segments)])
    first = Bars(bars.open[rows], bars.high[rows], bars.low[rows], bars.close[rows], bars.timestamp[rows],
                 np.arange(bars.n_segments, dtype=np.int64) * prime, bars.segment_names)
    feeder = gf.FeatureStream(engine="host" if host_engine.available() else "reference")
    feeder.update(first)
    return gf.FeatureStream.from_state(feeder.state(), engine=engine)


def percentiles(times: tuple) -> dict:
    """Wall-clock p50/p99/max of the updates, and the p50/p99 of the calling thread's CPU time (what an update
    costs when it never waits for a core: on a loaded box the wall-clock p99 is mostly time slices of others)."""
    wall, cpu = (np.asarray(t) * 1e6 for t in times)
    return {"p50_us": float(np.percentile(wall, 50)), "p99_us": float(np.percentile(wall, 99)),
            "max_us": float(wall.max()), "cpu_p50_us": float(np.percentile(cpu, 50)),
            "cpu_p99_us": float(np.percentile(cpu, 99)), "n": len(wall)}


def time_updates(stream, inputs, warm: int, encoder=None, sync=None) -> tuple:
    """``(wall seconds, thread CPU seconds)`` of each update after the first ``warm``."""
    wall, cpu = [], []
    for k, inp in enumerate(inputs):
        c0, t0 = time.thread_time(), time.perf_counter()
        stream.update(inp)
        if encoder is not None:
            out = encoder(*stream.window())
            if sync:
                sync()
            del out
        t1, c1 = time.perf_counter(), time.thread_time()
        if k >= warm:
            wall.append(t1 - t0)
            cpu.append(c1 - c0)
    return wall, cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--symbols", default="1,64,512,2048")
    p.add_argument("--engines", default="reference,host,gpu")
    p.add_argument("--updates", type=int, default=300, help="timed updates per features case")
    p.add_argument("--encoder-updates", type=int, default=10, help="timed updates per features + encoder case (CPU)")
    p.add_argument("--warm", type=int, default=20, help="untimed updates first")
    p.add_argument("--prime", type=int, default=150, help="bars per symbol before timing")
    p.add_argument("--no-encoder", action="store_true")
    p.add_argument("--reference-max-symbols", type=int, default=2048,
                   help="skip the reference engine above this many symbols")
    p.add_argument("--out", help="write JSON here")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.symbols.split(",")]
    result = {"device": machine(), "load_before": os.getloadavg(), "cases": [], "rows": [], "skipped": []}
    encoder_model = None
    if not args.no_encoder:
        try:
            import torch

            from train.jade import Jade, JadeConfig
            from train.live import LiveEncoder

            torch.manual_seed(0)
            encoder_model = Jade(JadeConfig())
        except ImportError:
            result["skipped"].append("features + encoder: torch is not installed")
    for engine in args.engines.split(","):
        if engine == "gpu" and not gpu_engine.available():
            result["skipped"].append(f"gpu: {gpu_engine.unavailable_reason()}")
            continue
        if engine == "host" and not host_engine.available():
            result["skipped"].append("host: no C++ compiler")
            continue
        for S in sizes:
            if engine == "reference" and S > args.reference_max_symbols:
                continue
            # On a CPU a 2 x 128 BiLSTM over S x 105 bars takes seconds at S = 2,048: fewer updates there.
            n_enc = args.updates if engine == "gpu" else min(args.encoder_updates, max(3, 2048 // S))
            total = args.warm + max(args.updates, n_enc)
            bars = synthetic.generate(args.prime + 2 * total + 1, S, seed=S)
            inputs = updates_of(bars, args.prime, 2 * total)
            stream = primed(bars, args.prime, engine)
            for form, k in (("Bars", 0), ("table", 1)):
                # Each form gets its own stretch of bars (times must increase): Bars first, then the tables.
                part = inputs[:total] if k == 0 else inputs[total:]
                case = {"engine": stream.engine, "symbols": S, "what": f"features ({form} input)",
                        **percentiles(time_updates(stream, [x[k] for x in part][: args.warm + args.updates],
                                                   args.warm))}
                result["cases"].append(case)
                print(json.dumps(case), flush=True)
            if encoder_model is not None:
                import torch

                device = "cuda" if engine == "gpu" else "cpu"
                net = encoder_model.to(device)
                enc = LiveEncoder(net)
                sync = torch.cuda.synchronize if device == "cuda" else None
                s2 = primed(bars, args.prime, engine)
                warm = args.warm if engine == "gpu" else 1
                case = {"engine": s2.engine, "symbols": S, "what": "features + encoder (Bars input)",
                        **percentiles(time_updates(s2, [x[0] for x in inputs[: warm + n_enc]], warm, enc, sync))}
                result["cases"].append(case)
                print(json.dumps(case), flush=True)
    result["load_after"] = os.getloadavg()
    for c in result["cases"]:
        for q in ("p50_us", "p99_us"):
            result["rows"].append({"what": f"{c['engine']} {c['symbols']} symbols: {c['what']} {q[:3]}",
                                   "value": c[q], "unit": "us"})
    print_table(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    dev = ", ".join(f"{k}: {v}" for k, v in result["device"].items())
    load = f"load {result['load_before'][0]:.1f} -> {result['load_after'][0]:.1f}"
    t = Table(title=f"bench/stream.py ({dev}; {load})")
    for col in ("engine", "symbols", "what", "p50 us", "p99 us", "max us", "cpu p50 us", "cpu p99 us", "n"):
        t.add_column(col, justify="right" if col not in ("engine", "what") else "left")
    for c in result["cases"]:
        cpu = ("-", "-") if "encoder" in c["what"] else (f"{c['cpu_p50_us']:,.0f}", f"{c['cpu_p99_us']:,.0f}")
        t.add_row(c["engine"], f"{c['symbols']:,}", c["what"], f"{c['p50_us']:,.0f}", f"{c['p99_us']:,.0f}",
                  f"{c['max_us']:,.0f}", *cpu, str(c["n"]))
    console = Console(width=max(Console().width, 150))
    console.print(t)
    for s in result["skipped"]:
        console.print(escape(f"skipped: {s}"))


if __name__ == "__main__":
    sys.exit(main())
