"""``python -m train``: pretrain Jade on feature stores; ``python -m train plot RUN_DIR``: draw its curves.

The same command runs under ``torchrun --nproc_per_node=N -m train ...`` (one
process per GPU, or N gloo processes on a CPU): rank 0 prints and writes.

Exit status: 0 done, 2 bad input or a stopped run (one line saying why), 3 internal error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpu_features.cli import guarded
from gpu_features.errors import GpuFeaturesError
from gpu_features.windows import MASK_KINDS

DEFAULT_STORE, DEFAULT_RUN = "data/features/demo", "runs/demo"

# Flags that set TrainConfig fields (default None = "take the profile's value" / "keep the saved one").
_CONFIG_FLAGS = ("epochs", "batch_size", "lr", "seed", "device", "max_train_windows", "max_val_windows",
                 "max_final_windows", "stride", "min_valid_fraction", "mask", "mask_ratio", "patch_length", "patience",
                 "hidden_size", "num_layers", "dropout", "weight_decay", "warmup_fraction", "grad_clip", "bf16",
                 "position_channel", "window_length", "cuda_graphs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train",
        description="Pretrain the Jade BiLSTM masked autoencoder on a gpu-features store. On a CPU the "
                    "'small' profile trains a reduced model on a subset of windows (minutes); on a GPU the "
                    "'full' profile trains Jade 2x128 at B=256 on every window. Also: `python -m train plot "
                    "RUN_DIR --out curves.png` draws a run's curves; `python -m train sweep --help`: "
                    "hyperparameter sweeps.",
        epilog="Writes RUN_DIR/metrics.jsonl, checkpoint.json + checkpoint-eNNNN.safetensors (every epoch), "
               "model.safetensors, encoder.safetensors and summary.json.")
    p.add_argument("--store", action="append", default=None, metavar="DIR",
                   help=f"feature store; repeat to train on several as one dataset (they need the same feature "
                        f"config and the same --split-dates) [{DEFAULT_STORE}; on --resume the saved ones]")
    p.add_argument("--run-dir", default=None, help=f"run directory [{DEFAULT_RUN}]")
    p.add_argument("--config", metavar="FILE", help="run file (.toml, .json, .yaml with PyYAML) holding any of these "
                                                    "settings; flags override it; RUN_DIR/config.json is one")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --run-dir")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --run-dir")
    p.add_argument("--profile", choices=("auto", "small", "full"), default="auto",
                   help="defaults to fill in: small (CPU), full (GPU) [auto: by device]")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="[auto]")
    p.add_argument("--epochs", type=int, help="planned epochs [small 4, full 10]")
    p.add_argument("--batch-size", type=int, help="windows per step [small 128, full 256]")
    p.add_argument("--lr", type=float, help="peak learning rate [small 2e-3, full 1e-3]")
    p.add_argument("--seed", type=int, help="seed of weights, shuffling, masks and dropout [0]")
    p.add_argument("--max-train-windows", type=int, metavar="N",
                   help="evenly spaced training windows per epoch [small 16384, full all]")
    p.add_argument("--max-val-windows", type=int, metavar="N", help="validation windows per epoch [small 4096, full all]")
    p.add_argument("--max-final-windows", type=int, metavar="N",
                   help="windows of the final val and test evaluation [small 8192, full all]")
    p.add_argument("--stride", type=int, help="keep every N-th usable window [1]")
    p.add_argument("--min-valid-fraction", type=float, help="least share of valid bars per window [1.0]")
    p.add_argument("--mask", choices=MASK_KINDS, help="masking [random]")
    p.add_argument("--mask-ratio", type=float, help="share of valid bars masked [0.15]")
    p.add_argument("--patch-length", type=int, help="bars per block of patch masks [10]")
    p.add_argument("--patience", type=int, help="epochs without a better val MAE before stopping [3]")
    p.add_argument("--hidden-size", type=int, help="LSTM units per direction [small 64, full 128]")
    p.add_argument("--num-layers", type=int, help="BiLSTM layers [2]")
    p.add_argument("--dropout", type=float, help="dropout between LSTM layers [0.1]")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay on matrices [0.01]")
    p.add_argument("--warmup-fraction", type=float, help="share of steps in the linear warm-up [0.05]")
    p.add_argument("--grad-clip", type=float, help="max gradient norm [1.0]")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", default=None, help="fp32 on the GPU too")
    p.add_argument("--position-channel", action="store_true", default=None, help="add the input channel t/(K-1)")
    p.add_argument("--window-length", type=int, metavar="K",
                   help="bars per training window [the store's K]; the bars-since normalizer stays the store's")
    p.add_argument("--cuda-graphs", choices=("auto", "on", "off"), default=None,
                   help="capture the training step once per epoch and replay it (auto: on CUDA in one process) "
                        "[off: not yet run on a GPU]")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log metrics to RUN_DIR/tensorboard (pip install 'gpu-features[tensorboard]')")
    p.add_argument("--allow-world-size-change", action="store_true",
                   help="--resume with another number of processes than the run had (not exact)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _apply_run_file(args) -> None:
    """Fill what the flags left unset from ``--config`` (flags win), and the plain defaults after that."""
    from .config_file import load_run_file

    data = load_run_file(args.config) if args.config else {}
    for key, value in data.items():
        if key == "profile":
            if args.profile == "auto":
                args.profile = value
        elif getattr(args, key, None) is None:
            setattr(args, key, value)
    args.run_dir = args.run_dir or DEFAULT_RUN
    args.tensorboard = bool(args.tensorboard)


def _stores(args) -> list[str]:
    """``--store`` values; on --resume without any, the stores the checkpoint names."""
    if args.store:
        return list(args.store)
    if args.resume:
        from .checkpoint import read_checkpoint_record
        from .loop import saved_stores

        return [s["path"] for s in saved_stores(read_checkpoint_record(Path(args.run_dir)))]
    return [DEFAULT_STORE]


def _config(args):
    from gpu_features.devices import resolve_device

    from .checkpoint import CHECKPOINT_JSON, read_checkpoint_record
    from .config import TrainConfig, TrainError, make_config

    overrides = {k: getattr(args, k) for k in _CONFIG_FLAGS}
    if args.resume:
        saved = read_checkpoint_record(Path(args.run_dir)).get("config")
        if not isinstance(saved, dict):
            raise TrainError(f"{Path(args.run_dir) / CHECKPOINT_JSON}: holds no run config; start a new run.")
        explicit = {k: v for k, v in overrides.items() if v is not None}
        if args.profile != "auto":
            explicit["profile"] = args.profile
        return TrainConfig.from_dict({**saved, **explicit}) if explicit else None
    profile = args.profile
    if profile == "auto":
        try:
            profile = "full" if resolve_device(args.device).type == "cuda" else "small"
        except GpuFeaturesError as err:
            raise TrainError(str(err)) from None
    return make_config(profile, **overrides)


def cmd_train(args, console, err_console) -> int:
    from . import distributed
    from .loop import prepare
    from .report import print_report

    _apply_run_file(args)
    stores = _stores(args)
    cfg = _config(args)
    run = prepare(stores, args.run_dir, cfg, resume=args.resume, overwrite=args.overwrite, console=err_console,
                  quiet=args.quiet, tensorboard=args.tensorboard, allow_world_size_change=args.allow_world_size_change)
    c, W = run.cfg, run.dist.world_size
    out = console if run.is_main else None
    verb = "resuming" if args.resume else "training"
    ranks = f", {W} processes x B={c.batch_size} = {W * c.batch_size} windows per step" if W > 1 else f", B={c.batch_size}"
    if out is not None:
        out.print(f"[bold]{verb}[/] Jade on {', '.join(stores)} -> {args.run_dir}: device {run.device}"
                  f"{' bf16' if run.use_bf16 else ''}{' cuda-graphs' if run.step.graphs else ''}, profile {c.profile}, "
                  f"{c.num_layers}x{c.hidden_size} BiLSTM{ranks}, lr {c.lr:g}, K={run.src.window_length}, "
                  f"{c.epochs} epochs of {run.train_loader.n_windows:,} windows ({len(run.train_loader)} steps), "
                  f"val {run.val_loader.n_windows:,} windows"
                  + (f", from epoch {run.state['epoch'] + 1}" if args.resume else ""))
    try:
        run.fit()
    except KeyboardInterrupt:
        done = run.state["epoch"]
        if run.is_main:
            again = " ".join(f"--store {s}" for s in stores)
            if done:
                err_console.print(f"interrupted; the checkpoint of epoch {done} is kept; continue with "
                                  f"`python -m train --resume {again} --run-dir {args.run_dir}`", soft_wrap=True)
            else:  # no checkpoint yet: --resume would fail, so say how to start again
                err_console.print(f"interrupted in epoch 1, before any checkpoint, so there is nothing to resume; "
                                  f"start again with `python -m train {again} --run-dir {args.run_dir} --overwrite`",
                                  soft_wrap=True)
        return 130
    summary = run.finish()
    distributed.shutdown(run.dist)
    if out is not None:
        print_report(summary, out)
        out.print(f"wrote {run.run_dir}/model.safetensors, encoder.safetensors, metrics.jsonl, summary.json, "
                  f"config.json; curves: python -m train plot {run.run_dir} --out {run.run_dir}/curves.png")
    return 0


def plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train plot",
                                description="Draw a run's losses and its per-feature masked MAE against the "
                                            "mean and interpolation baselines (PNG, matplotlib Agg).")
    p.add_argument("run_dir", nargs="?", default=DEFAULT_RUN, help=f"run directory [{DEFAULT_RUN}]")
    p.add_argument("--out", default=None, help="PNG file [RUN_DIR/curves.png]")
    p.add_argument("--dpi", type=int, default=100, help="[100]")
    return p


def cmd_plot(argv, console) -> int:
    from .plot import plot_run

    args = plot_parser().parse_args(argv)
    out = Path(args.out) if args.out else Path(args.run_dir) / "curves.png"
    data = plot_run(args.run_dir, out, dpi=args.dpi)
    console.print(f"wrote {out} ({data['width']}x{data['height']} px): {len(data['epochs'])} epoch(s), "
                  f"per-feature MAE on {data['split']}")
    return 0


def main(argv=None) -> int:
    from gpu_features.cli import make_console

    console, err_console = make_console(), make_console(stderr=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "plot":
        return guarded(lambda: cmd_plot(argv[1:], console), err_console, "interrupted")
    if argv and argv[0] in ("sweep", "sweep-report"):
        from .sweep import main as sweep_main

        return sweep_main(argv, console, err_console)
    args = build_parser().parse_args(argv)
    return guarded(lambda: cmd_train(args, console, err_console), err_console, "interrupted")
