"""Windows/s of device-resident batches against a seed-style DataLoader, for the loader alone and for training.

    python bench/train.py --out bench/results/train.json

Same model (Jade 2x128 BiLSTM), same data (synthetic bars precomputed into a
temporary store), same masking ratio, side by side in one process:

- ``device``: gpu_features.windows: per-bar features on the device once, each
  batch gathered and masked there (seeded generator).
- ``seed``: the old pipeline's loader: a torch Dataset over materialized windows
  ``[N, K, 10]`` (numpy), per-sample numpy masking, ``DataLoader(num_workers=4,
  pin_memory=True on GPU)``, batches copied to the device.

At B = 256, 1024, 4096 for the loader alone and for training (fp32 and bf16
autocast). Without a GPU the sizes shrink automatically (fewer bars, fewer
steps, training at B = 256 and 1024 in fp32 only: CPU bf16 autocast of an LSTM
is an emulation slower than fp32) so the run takes a few minutes on 2 cores.
Writes JSON with ``rows`` ({what, value, unit}), ``device``, ``targets`` and
``detail``, and prints a table.

World size: with more than one GPU (or ``--world-size N`` on a CPU, N gloo
processes) the DDP training step rate at B = 256 per process is measured beside
one process, in a table with a world-size column. On a 2-core CPU two ranks
share the cores and pay for a gloo all-reduce per step, so they are expected
to be slower than one; the number is reported as measured.

``--quick`` (what ``make test-gpu`` runs, about a minute on a GPU): the loader
against the seed-style DataLoader at B = 256, device-loader training at B = 256
and 4096 in fp32 and bf16, and the training step eager against replayed from a
CUDA graph (``train/step.py``) at B = 256, from the same weights on the same
batches: windows/s of each and whether the weights end bit-equal (the eager step
is also run twice, and once with the graph's capturable AdamW, to tell replay
from optimizer rounding). ``--torchrun``: only ``python -m train`` under
``torchrun --nproc_per_node=1``, its exit status and windows/s from its summary.
On a CPU both shrink and skip what needs CUDA, saying so.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from torch.utils.data import DataLoader, Dataset, RandomSampler  # noqa: E402

import gpu_features as gf  # noqa: E402
from gpu_features import synthetic  # noqa: E402
from gpu_features.windows import WindowSource  # noqa: E402
from train.jade import Jade, JadeConfig  # noqa: E402

MASK_RATIO = 0.15
GPU = dict(bars=1_800_000, batch_sizes=(256, 1024, 4096), train_batch_sizes=(256, 1024, 4096),
           dtypes=("fp32", "bf16"), seed_windows=196_608, loader_seconds=2.0, warm_steps=5, seed_warm_steps=12,
           train_steps=30)
CPU = dict(bars=200_000, batch_sizes=(256, 1024, 4096), train_batch_sizes=(256, 1024), dtypes=("fp32",),
           seed_windows=24_576, loader_seconds=2.0, warm_steps=1, seed_warm_steps=1, train_steps=3)
# --quick: the figures a GPU session records (README: Performance), in about a minute (make test-gpu).
GPU_QUICK = dict(GPU, batch_sizes=(256,), train_batch_sizes=(256, 4096), seed_windows=24_576, loader_seconds=1.0,
                 train_steps=20, seed_training=False, graph_steps=40)
CPU_QUICK = dict(CPU, bars=100_000, batch_sizes=(256,), train_batch_sizes=(256,), seed_windows=4096,
                 loader_seconds=0.5, train_steps=2, seed_training=False, graph_steps=0)
# The seed loader's workers each prefetch 2 batches: this many batches are consumed before timing starts.
SEED_WARM_BATCHES = 12
MIN_TIMED_BATCHES = 16


class SeedWindows(Dataset):
    """The old FastWindowedDataset: materialized windows, a per-sample numpy mask of valid positions."""

    def __init__(self, features: np.ndarray, valid: np.ndarray, mask_ratio: float, seed: int = 0):
        self.features, self.valid, self.mask_ratio = features, valid, mask_ratio
        self.rng = np.random.RandomState(seed)

    def __len__(self):
        return len(self.features)

    def __getitem__(self, idx):
        X, valid = self.features[idx], self.valid[idx]
        mask = np.zeros(len(valid), dtype=bool)
        valid_indices = np.where(valid)[0]
        n_mask = int(self.mask_ratio * len(valid_indices))
        if n_mask > 0:
            mask[self.rng.choice(valid_indices, size=n_mask, replace=False)] = True
        return torch.from_numpy(X).float(), torch.from_numpy(mask), torch.from_numpy(valid)


def seed_loader(ds, B, device, n_batches):
    """The old loader's settings; shuffled draws (with replacement, so a small array serves any number of batches)."""
    sampler = RandomSampler(ds, replacement=True, num_samples=n_batches * B)
    return DataLoader(ds, batch_size=B, sampler=sampler, num_workers=4, pin_memory=device.type == "cuda",
                      drop_last=True)


def to_device(batch, device):
    return tuple(t.to(device, non_blocking=True) for t in batch)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def device_description(device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, CUDA {torch.version.cuda}"
    model = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def device_batches(src, B):
    """Training batches of the device loader, epoch after epoch."""
    loader = src.loader("train", B, seed=0)
    return itertools.chain.from_iterable(loader.batches(e) for e in itertools.count())


def timed(batches, consume, warm: int, seconds: float, device, min_batches: int = MIN_TIMED_BATCHES) -> float:
    """windows/s of ``consume(batch)`` over at least ``seconds`` and ``min_batches``, after ``warm`` batches."""
    for _ in range(warm):
        consume(next(batches))
    sync(device)
    t0, n, k = time.perf_counter(), 0, 0
    while k < min_batches or time.perf_counter() - t0 < seconds:
        b = next(batches)
        consume(b)
        n, k = n + b[0].shape[0], k + 1
    sync(device)
    return n / (time.perf_counter() - t0)


def validate_loader(src, B) -> None:
    """Stop unless the device loader's first batch holds exactly the store's windows (checked on the host)."""
    loader = src.loader("train", B, seed=0)
    X, mask, valid = loader.batch(0, 0)
    starts = loader.order(0)[:B].cpu().numpy()
    feats, ok = src.features.cpu().numpy(), src.valid.cpu().numpy()
    want_X = np.stack([feats[s:s + src.window_length] for s in starts])
    want_valid = np.stack([ok[s:s + src.window_length] for s in starts])
    if not (np.array_equal(X.cpu().numpy(), want_X) and np.array_equal(valid.cpu().numpy(), want_valid)
            and not (mask.cpu().numpy() & ~want_valid).any()):
        raise SystemExit("validation failed: the device loader's windows differ from the store's; not timing it.")


def bench_device_loader(src, B, seconds, device) -> float:
    return timed(device_batches(src, B), lambda b: None, 2, seconds, device)


def bench_seed_loader(ds, B, seconds, device) -> float:
    # Enough batches for the timing window at up to 2M windows/s; the sampler stops the workers afterwards.
    n = SEED_WARM_BATCHES + max(MIN_TIMED_BATCHES, int(seconds * 2_000_000 / B))
    it = (to_device(b, device) for b in seed_loader(ds, B, device, n))
    return timed(it, lambda b: None, SEED_WARM_BATCHES, seconds, device)


def make_step(model, opt, device, dtype, net=None):
    """One eager training step of ``model``; ``net``: what the forward pass calls (a DDP wrapper), else ``model``."""
    use_bf16 = dtype == "bf16"
    net = model if net is None else net

    def step(X, mask, valid):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            recon = net(X, mask)
        loss, _ = model.loss(recon, X, mask, valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss
    return step


def bench_train(batches, step, warm, steps, device) -> float:
    """windows/s of ``steps`` training steps after ``warm`` (batches: an iterator of device batches)."""
    return timed(batches, lambda b: step(*b), warm, 0.0, device, min_batches=steps)


def _ddp_rank(rank, world, port, store_path, B, warm, steps, device_type, out):
    """One rank of the data-parallel step-rate measurement (spawned); rank 0 writes global windows/s to ``out``.

    ``world == 1`` is the plain single process (no process group, no DDP), timed the same way.
    """
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    if device_type == "cuda":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # the ranks share the cores
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank,
                                             world_size=world)
    src = WindowSource.from_store(store_path, device)
    loader = src.loader("train", B, seed=0, rank=rank, world_size=world)
    batches = itertools.chain.from_iterable(loader.batches(e) for e in itertools.count())
    torch.manual_seed(0)
    model = Jade(JadeConfig()).to(device)
    net = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
           if world > 1 else model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    step = make_step(model, opt, device, "fp32", net)
    rate = bench_train(batches, step, warm, steps, device) * world
    if world > 1:
        torch.distributed.barrier()
    if rank == 0:
        Path(out).write_text(json.dumps({"windows_per_s": rate}))
    if world > 1:
        torch.distributed.destroy_process_group()


def bench_world(store_path, world, B, warm, steps, device_type) -> float:
    """Global windows/s of ``world`` DDP processes training Jade at ``B`` windows per process (fp32)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rate.json"
        mp.spawn(_ddp_rank, args=(world, port, str(store_path), B, warm, steps, device_type, str(out)), nprocs=world,
                 join=True)
        return json.loads(out.read_text())["windows_per_s"]


def bench_graph_steps(src, B: int, dtype: str, steps: int, device) -> dict:
    """The training step of ``train/step.py`` eager and replayed from a CUDA graph, at ``B``, from the same
    weights on the same ``steps + 3`` batches (the first 3 untimed): windows/s of each and how far apart the
    weights end. Four runs: eager (fused AdamW, a float learning rate: what training does without graphs),
    eager again (is eager itself reproducible?), eager with the graph's capturable AdamW and device learning
    rate (replay against optimizer rounding), and the graph. Dropout 0, so no random stream is involved."""
    import contextlib

    from train.step import TrainStep, graph_autocast

    torch.backends.cudnn.benchmark = False  # the same kernels in every run, as training sets it
    it = device_batches(src, B)
    batches = [tuple(t.clone() for t in next(it)) for _ in range(steps + 3)]
    bf16 = dtype == "bf16"
    runs = {}
    for name, graphs, capturable in (("eager", False, False), ("eager again", False, False),
                                     ("eager, capturable AdamW", False, True), ("graph", True, True)):
        torch.manual_seed(0)
        model = Jade(JadeConfig(dropout=0.0)).to(device)
        lr = torch.tensor(1e-3, device=device) if capturable else 1e-3
        opt = torch.optim.AdamW(model.parameters(), lr=lr, fused=True, capturable=capturable)
        if graphs:
            autocast = graph_autocast(bf16)
        else:
            autocast = (lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)) if bf16 else \
                contextlib.nullcontext
        step = TrainStep(model, model, opt, 1.0, autocast, graphs)
        if graphs:
            step.capture(*batches[0])  # leaves weights and AdamW state as they were
        # The eager step with the capturable AdamW keeps its device learning rate, as the graph does (calling
        # the step would set a float one); the others go through the step as training calls it.
        call = (lambda X, mask, valid: step._body(X, mask, valid)) if capturable and not graphs else \
            (lambda X, mask, valid: step(X, mask, valid, 1e-3))
        for b in batches[:3]:
            call(*b)
        sync(device)
        t0 = time.perf_counter()
        for b in batches[3:]:
            stats = call(*b)
        sync(device)
        rate = steps * B / (time.perf_counter() - t0)
        runs[name] = {"rate": rate, "weights": [q.detach().clone() for q in model.parameters()],
                      "last_loss": float(stats[0])}
        step.release()
        del step, opt, model

    def apart(a: str, b: str) -> dict:
        wa, wb = runs[a]["weights"], runs[b]["weights"]
        diff = max(float((x - y).abs().max()) for x, y in zip(wa, wb))
        scale = max(float(x.abs().max()) for x in wa)
        return {"bitwise": all(torch.equal(x, y) for x, y in zip(wa, wb)), "max_abs": diff, "max_rel": diff / scale}

    return {"steps": steps + 3, "windows_per_s": {k: v["rate"] for k, v in runs.items()},
            "last_loss": {k: v["last_loss"] for k, v in runs.items()},
            "graph_vs_eager": apart("eager", "graph"), "eager_vs_eager_again": apart("eager", "eager again"),
            "graph_vs_eager_capturable": apart("eager, capturable AdamW", "graph")}


def bench_torchrun(store_path, device, windows: int, tmp: Path) -> dict:
    """``python -m train`` under ``torchrun --nproc_per_node=1`` (the full profile, B = 256, one epoch of
    ``windows`` windows): its exit status, wall time and the windows/s of its summary."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    run_dir = tmp / "torchrun"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "train",
           "--store", str(store_path), "--run-dir", str(run_dir), "--device", device.type, "--profile", "full",
           "--epochs", "1", "--batch-size", "256", "--max-train-windows", str(windows),
           "--max-val-windows", str(min(windows, 2048)), "--max-final-windows", str(min(windows, 2048)), "--quiet"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"torchrun --nproc_per_node=1 -m train failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    s = json.loads((run_dir / "summary.json").read_text())
    return {"exit": r.returncode, "wall_s": wall, "windows_per_s": s["windows_per_s"], "world_size": s["world_size"],
            "device": s["device"], "bf16": s.get("bf16"), "cuda_graphs": s.get("cuda_graphs"), "windows": windows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--world-size", type=int, default=None, metavar="N",
                    help="also time DDP training with N processes (default: every GPU when there are several; "
                         "none on a CPU, where --world-size 2 runs 2 gloo processes)")
    ap.add_argument("--world-only", action="store_true",
                    help="time only 1 against --world-size processes (skip the loader and seed comparisons)")
    ap.add_argument("--quick", action="store_true",
                    help="make test-gpu's subset: loader at B=256, device-loader training at B=256 and 4096 "
                         "(fp32, bf16), eager against CUDA-graph steps (see the module doc)")
    ap.add_argument("--torchrun", action="store_true",
                    help="only python -m train under torchrun --nproc_per_node=1 (exit status and windows/s)")
    ap.add_argument("--torchrun-windows", type=int, default=None, metavar="N",
                    help="training windows of the --torchrun run [GPU 131072, CPU 1024]")
    args = ap.parse_args(argv)
    # 4 workers on a 2-core box is what the old pipeline did; torch's advice against it is noted, not repeated.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    console = Console()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    P = (GPU_QUICK if cuda else CPU_QUICK) if args.quick else (GPU if cuda else CPU)
    if args.torchrun:
        P = dict(P, bars=200_000)
    desc = device_description(device)
    console.print(f"[bold]bench/train.py[/] on {desc}; sizes: {'quick' if args.quick else 'full'}"
                  f"{'' if cuda else ' (reduced: no GPU)'}{'; torchrun only' if args.torchrun else ''}")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = gf.precompute(synthetic.generate(P["bars"], 1, 0), Path(tmp) / "s")
        src = WindowSource.from_store(store, device)
        console.print(f"store: {store.n_bars:,} bars ({store.engine['name']} engine, "
                      f"{time.perf_counter() - t0:.1f} s)")
        rows, detail = [], {"loader": {}, "train": {}}

        def row(what, value, unit):
            rows.append({"what": what, "value": float(value), "unit": unit})
            console.print(f"  {what}: {value:,.1f} {unit}")

        if args.torchrun:
            windows = args.torchrun_windows or (131_072 if cuda else 1024)
            tr = bench_torchrun(store.path, device, windows, Path(tmp))
            detail["torchrun"] = tr
            row(f"python -m train under torchrun --nproc_per_node=1 (world size {tr['world_size']}, B=256, "
                f"{'bf16' if tr['bf16'] else 'fp32'}, {windows:,} windows): exit 0", tr["windows_per_s"], "windows/s")
            row("torchrun --nproc_per_node=1 run, start to end", tr["wall_s"], "s")
            return _write(args, desc, cuda, P, rows, detail, [], [], console)

        # The seed pipeline's materialized windows: an evenly spaced subset of the training windows.
        starts = src.starts("train", max_windows=P["seed_windows"])
        feats, valid = store.array("features"), store.array("valid")
        win = np.lib.stride_tricks.sliding_window_view(feats, 105, axis=0)
        seed_X = np.ascontiguousarray(win[starts].transpose(0, 2, 1))
        seed_V = np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(valid, 105)[starts])
        ds = SeedWindows(seed_X, seed_V, MASK_RATIO)
        console.print(f"seed-style windows materialized: {seed_X.shape} ({seed_X.nbytes / 1e6:.0f} MB)")

        for B in ([] if args.world_only else P["batch_sizes"]):
            validate_loader(src, B)
            d = bench_device_loader(src, B, P["loader_seconds"], device)
            s = bench_seed_loader(ds, B, P["loader_seconds"], device)
            detail["loader"][B] = {"device": d, "seed": s}
            row(f"loader B={B}: device gather", d, "windows/s")
            row(f"loader B={B}: seed DataLoader", s, "windows/s")
            row(f"loader B={B}: speedup", d / s, "x")

        for dtype in ([] if args.world_only else P["dtypes"]):
            for B in P["train_batch_sizes"]:
                res = {}
                for kind in ("device", "seed") if P.get("seed_training", True) else ("device",):
                    torch.manual_seed(0)
                    model = Jade(JadeConfig()).to(device)
                    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=cuda)  # as the trainer on CUDA
                    step = make_step(model, opt, device, dtype)
                    # The seed loader's first batches were prefetched while nothing was timed: warm up past them.
                    warm = P["warm_steps"] if kind == "device" else P["seed_warm_steps"]
                    if kind == "device":
                        batches = device_batches(src, B)
                    else:
                        # + SEED_WARM_BATCHES: the workers stay busy while steps are timed, as in a real epoch
                        n = warm + P["train_steps"] + SEED_WARM_BATCHES
                        batches = (to_device(b, device) for b in seed_loader(ds, B, device, n))
                    res[kind] = bench_train(batches, step, warm, P["train_steps"], device)
                    del batches
                detail["train"][f"{B}-{dtype}"] = res
                row(f"train B={B} {dtype}: device gather", res["device"], "windows/s")
                if "seed" in res:
                    row(f"train B={B} {dtype}: seed DataLoader", res["seed"], "windows/s")
                    row(f"train B={B} {dtype}: speedup", res["device"] / res["seed"], "x")

        if P.get("graph_steps") and not args.world_only:
            for dtype in P["dtypes"]:
                g = bench_graph_steps(src, 256, dtype, P["graph_steps"], device)
                detail.setdefault("graph_step", {})[dtype] = g
                w = g["windows_per_s"]
                row(f"step B=256 {dtype}: eager", w["eager"], "windows/s")
                row(f"step B=256 {dtype}: CUDA graph", w["graph"], "windows/s")
                row(f"step B=256 {dtype}: CUDA graph / eager", w["graph"] / w["eager"], "x")
                for key, label in (("graph_vs_eager", "graph = eager"), ("eager_vs_eager_again", "eager = eager again"),
                                   ("graph_vs_eager_capturable", "graph = eager with capturable AdamW")):
                    row(f"step B=256 {dtype}: {label}, weights after {g['steps']} steps (1 = bit for bit)",
                        1.0 if g[key]["bitwise"] else 0.0, "")
                    row(f"step B=256 {dtype}: {label}, max |weight difference| / max |weight|", g[key]["max_rel"], "")

        world = args.world_size
        if world is None:
            world = torch.cuda.device_count() if device.type == "cuda" and torch.cuda.device_count() > 1 else 0
        if world > 1:
            # 1 process and N processes timed alternately, twice, the same way: best of each (a shared box is noisy).
            B, rates = 256, {1: [], world: []}
            for _ in range(2):
                for w in rates:
                    rates[w].append(bench_world(store.path, w, B, P["warm_steps"], P["train_steps"], device.type))
            detail["world"] = {w: max(v) for w, v in rates.items()}
            for w, v in detail["world"].items():
                row(f"train B={B}/process fp32, {w} process(es)", v, "windows/s")

    skipped = [] if cuda else [
        "train B=4096 (CPU: one step takes ~10 s; the target is for an H100/H200)",
        "bf16 (CPU autocast bf16 of an LSTM is an emulation, slower than fp32; bf16 is the GPU path)"]
    if not cuda and args.quick:
        skipped.append("eager against CUDA-graph steps (CUDA graphs need a CUDA device)")
    targets = []
    if not args.world_only:
        loader_ratio = detail["loader"][256]["device"] / detail["loader"][256]["seed"]
        targets.append({"what": "loader speedup at B=256 >= 30x", "value": loader_ratio, "target": 30.0,
                        "met": loader_ratio >= 30.0})
        t256 = detail["train"]["256-fp32"]
        if "seed" in t256:
            targets.append({"what": "train speedup at B=256 fp32 >= 1.2x", "value": t256["device"] / t256["seed"],
                            "target": 1.2, "met": t256["device"] / t256["seed"] >= 1.2})
    for B in (256, 4096):
        if f"{B}-bf16" in detail["train"] and f"{B}-fp32" in detail["train"]:
            ratio = detail["train"][f"{B}-bf16"]["device"] / detail["train"][f"{B}-fp32"]["device"]
            targets.append({"what": f"train B={B}: bf16 no slower than fp32", "value": ratio, "target": 1.0,
                            "met": ratio >= 1.0})
    if "4096-bf16" in detail["train"]:
        v = detail["train"]["4096-bf16"]["device"]
        targets.append({"what": "train B=4096 bf16 >= 250,000 windows/s", "value": v, "target": 250_000.0,
                        "met": v >= 250_000.0})
    return _write(args, desc, cuda, P, rows, detail, targets, skipped, console)


def _write(args, desc: str, cuda: bool, P: dict, rows: list, detail: dict, targets: list, skipped: list,
           console) -> int:
    """Write the JSON and print the tables, targets and skipped parts."""
    result = {"bench": "train", "device": desc, "gpu": cuda,
              "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in P.items()},
              "model": JadeConfig().to_dict(), "mask_ratio": MASK_RATIO, "rows": rows,
              "targets": targets, "targets_apply": cuda, "skipped": skipped, "detail": detail}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")

    if detail["loader"] or detail["train"]:
        table = Table(title=f"Jade windows/s: device gather vs seed-style DataLoader ({desc})")
        for col in ("what", "B", "device gather", "seed DataLoader", "ratio"):
            table.add_column(col, justify="left" if col == "what" else "right")
        for B, r in detail["loader"].items():
            table.add_row("loader", str(B), f"{r['device']:,.0f}", f"{r['seed']:,.0f}",
                          f"{r['device'] / r['seed']:.1f}x")
        for key, r in detail["train"].items():
            B, dtype = key.split("-")
            seed = f"{r['seed']:,.0f}" if "seed" in r else "-"
            ratio = f"{r['device'] / r['seed']:.2f}x" if "seed" in r else "-"
            table.add_row(f"train {dtype}", B, f"{r['device']:,.0f}", seed, ratio)
        console.print(table)
    if "world" in detail:
        wt = Table(title=f"Jade DDP training, B=256 per process, fp32 ({desc})")
        for col in ("world size", "backend", "threads/process", "global batch", "windows/s", "vs 1 process"):
            wt.add_column(col, justify="right")
        one = detail["world"][1]
        for w, v in detail["world"].items():
            backend = "-" if w == 1 else ("nccl" if cuda else "gloo")
            threads = "-" if cuda else str(max(1, (os.cpu_count() or 1) // w))
            wt.add_row(str(w), backend, threads, str(256 * w), f"{v:,.0f}", f"{v / one:.2f}x")
        console.print(wt)
    for t in targets:
        mark = ("[green]met[/]" if t["met"] else "[red]not met[/]") if cuda else "[dim]GPU target[/]"
        console.print(f"target {t['what']}: {t['value']:,.2f} {mark}")
    for s in skipped:
        console.print(f"[yellow]skipped[/] {s}")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
