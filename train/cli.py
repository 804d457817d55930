"""``python -m train``: pretrain Jade on feature stores; ``python -m train plot RUN_DIR``: draw its curves.

The same command runs under ``torchrun --nproc_per_node=N -m train ...`` (one
process per GPU, or N gloo processes on a CPU): rank 0 prints and writes.

Exit status: 0 done, 2 bad input or a stopped run (one line saying why), 3 internal error, 130 interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
from pathlib import Path

from gpu_features.guard import escape, guarded, make_console
from gpu_features.options import OneLineParser, count, number
from gpu_features.windows import MASK_KINDS

from .config import DEVICES, GRAPH_MODES, PROFILES, TrainConfig

DEFAULT_STORE, DEFAULT_RUN = "data/features/demo", "runs/demo"

# What the flag of each TrainConfig field says; the flags themselves (name, type, choices, and the default in
# brackets, per profile where the profiles differ) are generated from the dataclass and PROFILES. A help text
# that ends in "]" states its own default.
FLAG_HELP = {
    "epochs": "planned epochs",
    "batch_size": "windows per step",
    "lr": "peak learning rate",
    "weight_decay": "AdamW weight decay on matrices",
    "warmup_fraction": "share of steps in the linear warm-up",
    "grad_clip": "max gradient norm",
    "seed": "seed of weights, shuffling, masks and dropout",
    "device": "where to train",
    "bf16": "bf16 autocast on the GPU (--no-bf16: fp32 there too)",
    "stride": "keep every N-th usable window",
    "min_valid_fraction": "least share of valid bars per window",
    "max_train_windows": "evenly spaced training windows per epoch",
    "max_val_windows": "validation windows per epoch",
    "max_final_windows": "windows of the final val and test evaluation",
    "mask": "masking",
    "mask_ratio": "share of valid bars masked",
    "patch_length": "bars per block of patch masks",
    "patience": "epochs without a better val MAE before stopping",
    "hidden_size": "LSTM units per direction",
    "num_layers": "BiLSTM layers",
    "dropout": "dropout between LSTM layers",
    "position_channel": "add the input channel t/(K-1)",
    "window_length": "bars per training window (the bars-since normalizer stays the store's) [the store's K]",
    "cuda_graphs": "capture the training step once per epoch and replay it (auto: on CUDA in one process) "
                   "[off: not yet run on a GPU]",
}
_CHOICES = {"device": DEVICES, "mask": MASK_KINDS, "cuda_graphs": GRAPH_MODES}
_METAVARS = {"max_train_windows": "N", "max_val_windows": "N", "max_final_windows": "N", "window_length": "K"}
# Each field's type= hook (options.py): a whole number, a finite number; ranges stay in TrainConfig.
_TYPES = {"int": count, "float": number, "str": str, "bool": bool}


def config_fields() -> list:
    """The TrainConfig fields that are flags (``profile`` has its own flag, which also takes ``auto``)."""
    return [f for f in dataclasses.fields(TrainConfig) if f.name != "profile"]


def _shown(value) -> str:
    if value is None:
        return "all"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _default(f) -> str:
    """``[value]``, or ``[small A, full B]`` where the profiles set the field differently."""
    small, full = (PROFILES[p].get(f.name, f.default) for p in ("small", "full"))
    return f"[small {_shown(small)}, full {_shown(full)}]" if small != full else f"[{_shown(f.default)}]"


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (default None: take the profile's value, or keep the saved one on
    --resume); a bool field is a ``--bf16`` / ``--no-bf16`` switch pair."""
    for f in config_fields():
        flag = "--" + f.name.replace("_", "-")
        said = FLAG_HELP[f.name]
        help_ = said if said.endswith("]") else f"{said} {_default(f)}"
        kind = _TYPES[str(f.type).split(" |")[0]]
        if kind is bool:
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            p.add_argument(flag, dest=f.name, type=kind if kind is str else kind(), default=None,
                           choices=_CHOICES.get(f.name), metavar=_METAVARS.get(f.name), help=help_)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m train",
        description="Pretrain the Jade BiLSTM masked autoencoder on a gpu-features store. On a CPU the "
                    "'small' profile trains a reduced model on a subset of windows (minutes); on a GPU the "
                    "'full' profile trains Jade 2x128 at B=256 on every window. Also: `python -m train plot "
                    "RUN_DIR --out curves.png` draws a run's curves; `python -m train embed --help` and `python -m "
                    "train probe --help`: use a trained run; `python -m train sweep --help`: hyperparameter sweeps.",
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
    p.add_argument("--profile", choices=("auto",) + tuple(PROFILES), default="auto",
                   help="defaults to fill in: small (CPU), full (GPU) [auto: by device]")
    add_config_arguments(p)
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also log metrics to RUN_DIR/tensorboard (pip install 'gpu-features[tensorboard]')")
    p.add_argument("--probe", action="append", default=None, metavar="TARGET",
                   help="after training, run the downstream probe on TARGET (return-sign:N, realized-vol:N; repeat "
                        "for more) and record its headline numbers in summary.json (see `python -m train probe`)")
    p.add_argument("--allow-world-size-change", action="store_true",
                   help="--resume with another number of processes than the run had (not exact)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _apply_run_file(args) -> None:
    """Fill what the flags left unset from ``--config`` (flags win), and the plain defaults after that."""
    from .config_file import load_run_file
    from .rundir import read_config_json

    data = load_run_file(args.config) if args.config else {}
    if args.resume and not args.config:
        # A resumed run's own config.json: its stores (the same bars moved elsewhere) and tensorboard are honoured;
        # its settings are checked against the checkpoint when the run is prepared (train.rundir).
        own = read_config_json(args.run_dir or DEFAULT_RUN) or {}
        data = {k: v for k, v in own.items() if k in ("store", "tensorboard", "probe")}
    for key, value in data.items():
        if key == "profile":
            if args.profile == "auto":
                args.profile = value
        elif getattr(args, key, None) is None:
            setattr(args, key, value)
    args.run_dir = args.run_dir or DEFAULT_RUN
    args.tensorboard = bool(args.tensorboard)
    args.probe = list(args.probe or [])


def _stores(args) -> list[str]:
    """``--store`` values; on --resume without any, the stores the checkpoint names."""
    if args.store:
        return list(args.store)
    if args.resume:
        from .checkpoint import read_checkpoint_record

        return [s["path"] for s in read_checkpoint_record(Path(args.run_dir))["stores"]]
    return [DEFAULT_STORE]


def _config(args):
    from .checkpoint import CHECKPOINT_JSON, read_checkpoint_record
    from .config import TrainConfig, TrainError, auto_profile, make_config

    overrides = {f.name: getattr(args, f.name) for f in config_fields()}
    if args.resume:
        saved = read_checkpoint_record(Path(args.run_dir)).get("config")
        if not isinstance(saved, dict):
            raise TrainError(f"{Path(args.run_dir) / CHECKPOINT_JSON}: holds no run config; start a new run.")
        explicit = {k: v for k, v in overrides.items() if v is not None}
        if args.profile != "auto":
            explicit["profile"] = args.profile
        return TrainConfig.from_dict({**saved, **explicit}) if explicit else None
    return make_config(auto_profile(args.device) if args.profile == "auto" else args.profile, **overrides)


def cmd_train(args, console, err_console) -> int:
    from .loop import prepare

    _apply_run_file(args)
    stores = _stores(args)
    cfg = _config(args)
    run = prepare(stores, args.run_dir, cfg, resume=args.resume, overwrite=args.overwrite, console=err_console,
                  quiet=args.quiet, tensorboard=args.tensorboard, allow_world_size_change=args.allow_world_size_change,
                  probe=args.probe)
    with contextlib.closing(run):  # the run directory's lock is held until everything is written
        return _train(run, args, stores, console, err_console)


def _train(run, args, stores, console, err_console) -> int:
    from . import distributed
    from .report import print_report

    c, W = run.cfg, run.dist.world_size
    out = console if run.is_main else None
    verb = "resuming" if args.resume else "training"
    ranks = f", {W} processes x B={c.batch_size} = {W * c.batch_size} windows per step" if W > 1 else f", B={c.batch_size}"
    if out is not None:
        out.print(f"[bold]{verb}[/] Jade on {escape(', '.join(stores))} -> {escape(args.run_dir)}: device {run.device}"
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
                again = f"--config {Path(args.run_dir) / 'config.json'} --run-dir {args.run_dir}"  # the same settings
                err_console.print(f"interrupted in epoch 1, before any checkpoint, so there is nothing to resume; "
                                  f"start again with `python -m train {escape(again)} --overwrite`", soft_wrap=True)
        return 130
    summary = run.finish()
    distributed.shutdown(run.dist)
    if out is not None:
        print_report(summary, out)
        out.print(f"wrote {run.run_dir}/model.safetensors, encoder.safetensors, metrics.jsonl, summary.json, "
                  f"config.json; curves: python -m train plot {run.run_dir} --out {run.run_dir}/curves.png")
    return 0


def plot_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m train plot",
                      description="Draw a run's losses and its per-feature masked MAE against the "
                                  "mean and interpolation baselines (PNG, matplotlib Agg).")
    p.add_argument("run_dir", nargs="?", default=DEFAULT_RUN, help=f"run directory [{DEFAULT_RUN}]")
    p.add_argument("--out", default=None, help="PNG file [RUN_DIR/curves.png]")
    p.add_argument("--dpi", type=count(1, 1000), default=100, help="[100]")
    return p


def cmd_plot(argv, console) -> int:
    from .plot import plot_run

    args = plot_parser().parse_args(argv)
    out = Path(args.out) if args.out else Path(args.run_dir) / "curves.png"
    data = plot_run(args.run_dir, out, dpi=args.dpi)
    console.print(f"wrote {escape(out)} ({data['width']}x{data['height']} px): {len(data['epochs'])} epoch(s), "
                  f"per-feature MAE on {data['split']}")
    return 0


# --- using a trained run (train/load.py, train/embed.py, train/probe.py) -----------------------------------


def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", default=DEFAULT_RUN, metavar="RUN_DIR", help=f"a finished run directory [{DEFAULT_RUN}]")
    p.add_argument("--store", action="append", default=None, metavar="DIR",
                   help="store(s) to apply the run to, with the run's feature config [the run's own]")
    p.add_argument("--device", choices=DEVICES, default="auto", help="where the encoder runs [auto]")
    p.add_argument("--batch-size", type=count(1, 1 << 20), default=512, metavar="B", help="windows per batch [512]")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def embed_parser() -> argparse.ArgumentParser:
    from .embed import SPLIT_CHOICES

    p = OneLineParser(prog="python -m train embed", allow_abbrev=False,
                      description="Write one embedding per usable window of a store (the mean of the trained "
                                  "encoder's last-layer states over the window's valid bars), with the window's "
                                  "last-bar time, symbol and split, as parquet (embedding: fixed-size list of "
                                  "float32) or safetensors, by the extension of --output.")
    _run_arguments(p)
    p.add_argument("--split", choices=SPLIT_CHOICES, default="all", help="which split's windows [all]")
    p.add_argument("--stride", type=count(1), default=1, metavar="N", help="every N-th usable window [1]")
    p.add_argument("--output", required=True, metavar="FILE", help="new .parquet or .safetensors file")
    p.add_argument("--overwrite", action="store_true", help="replace an embeddings file written by this command")
    return p


def cmd_embed(argv, console, err_console) -> int:
    import time

    from .embed import check_embeddings_output, embed_run, write_embeddings
    from .load import load_run

    args = embed_parser().parse_args(argv)
    check_embeddings_output(args.output, args.overwrite)  # refused before any work
    run = load_run(args.run, args.device)
    stores = args.store or run.stores
    t0 = time.perf_counter()
    emb = embed_run(run, stores, args.split, args.stride, args.batch_size)
    out = write_embeddings(emb, args.output, args.overwrite, {"run_dir": str(run.run_dir), "stores": list(stores),
                                                               "split": args.split, "stride": args.stride})
    console.print(f"[bold green]wrote[/] {escape(out)}: {len(emb.start):,} embeddings of {emb.embedding.shape[1]} "
                  f"floats ({args.split} split{'s' if args.split == 'all' else ''}, stride {args.stride}, "
                  f"K={emb.window_length}) from {escape(run.run_dir)} on {emb.embedding.device} in "
                  f"{time.perf_counter() - t0:.1f} s", highlight=False)
    return 0


def probe_parser() -> argparse.ArgumentParser:
    from .probe import ProbeSettings

    d = ProbeSettings()
    p = OneLineParser(prog="python -m train probe", allow_abbrev=False,
                      description="Measure a trained encoder downstream: linear heads on its frozen embeddings "
                                  "against a trivial baseline, the raw window features and a random encoder of the "
                                  "same shape (optionally the encoder fine-tuned), on identical purged and "
                                  "embargoed samples; heads fitted on train, tuned on val, reported on test with "
                                  "block-bootstrap intervals. Writes RUN_DIR/probe.json and probe.png.")
    _run_arguments(p)
    p.add_argument("--target", action="append", required=True, metavar="TARGET",
                   help="return-sign:N (sign of the log return over the next N bars) or realized-vol:N (log "
                        "realized volatility of the next N bars); repeat for more")
    p.add_argument("--source", action="append", metavar="FILE",
                   help="the store's source bar files, in order, when they moved (as verify --source)")
    p.add_argument("--stride", type=count(1, 10_000), default=d.stride, metavar="N",
                   help=f"every N-th usable window [{d.stride}]")
    p.add_argument("--max-windows", type=count(100, 10**9), default=d.max_windows, metavar="N",
                   help=f"windows per split at most, evenly spaced [{d.max_windows:,}]")
    p.add_argument("--embargo", type=count(0, 10**7), default=None, metavar="BARS",
                   help="bars between splits, at least K + N [K + N]")
    p.add_argument("--resamples", type=count(10, 100_000), default=d.resamples, metavar="R",
                   help=f"bootstrap resamples per interval [{d.resamples}]")
    p.add_argument("--seed", type=count(0), default=d.seed, help=f"random arm, bootstrap, fine-tuning [{d.seed}]")
    p.add_argument("--finetune", action="store_true", help="also fine-tune the encoder with the head (slow on a CPU)")
    p.add_argument("--finetune-epochs", type=count(1, 1000), default=d.finetune_epochs, metavar="E",
                   help=f"[{d.finetune_epochs}]")
    p.add_argument("--no-chart", action="store_true", help="do not draw probe.png")
    return p


def cmd_probe(argv, console, err_console) -> int:
    import time

    from . import rundir
    from .load import load_run
    from .probe import ProbeSettings, probe_tables, protocol_lines, run_probe, write_probe
    from .targets import parse_targets

    args = probe_parser().parse_args(argv)
    parse_targets(args.target)  # a bad target is refused before the run is loaded
    settings = ProbeSettings(stride=args.stride, max_windows=args.max_windows, embargo=args.embargo,
                             resamples=args.resamples, seed=args.seed, finetune=args.finetune,
                             finetune_epochs=args.finetune_epochs, batch_size=args.batch_size)
    t0 = time.perf_counter()
    say = (lambda m: None) if args.quiet else (lambda m: err_console.print(f"probe: {escape(m)}", highlight=False))
    run = load_run(args.run, args.device)  # refused before the run directory's lock is taken
    with rundir.lock(args.run):  # probe.json is written into the run directory: not while a trainer writes there
        record = run_probe(run, args.target, args.store, args.source, settings, progress=say)
        written = write_probe(record, run.run_dir, chart=not args.no_chart)
    for table in probe_tables(record):
        console.print(table)
    for line in protocol_lines(record):
        console.print(escape(line), highlight=False)
    console.print("what it means: an arm helps only where its interval clears the baseline's and the raw "
                  "features'; on synthetic bars (the demo store) nothing is predictable, so no arm should.",
                  highlight=False)
    console.print(f"[bold green]wrote[/] {escape(', '.join(str(w) for w in written))} in {time.perf_counter() - t0:.1f} s",
                  highlight=False)
    return 0


# --- sweeps (train/sweep.py: the study; train/sweep_file.py: sweep files; train/sweep_report.py: results) ------

MAX_JOBS = 1024  # worker processes of one command (as many as precompute --workers)


def sweep_parser() -> argparse.ArgumentParser:
    """``python -m train sweep``: its own options; every other flag is a training flag of :func:`build_parser`."""
    from .sweep import JOURNAL, STORAGE_ENV

    p = OneLineParser(
        prog="python -m train sweep", allow_abbrev=False,
        description="Run a hyperparameter sweep: an Optuna study whose trials are ordinary runs in "
                    "DIR/trial-NNNN. Re-running the same command continues it (finished trials kept, a trial "
                    "left by a dead worker resumed from its checkpoint). Any training flag of `python -m train` "
                    "(e.g. --epochs 2 --store S) sets the base run. Ends with the report of "
                    "`python -m train sweep-report DIR`.",
        epilog="Sweep file: [run] (run-file keys), [search] (lists, {low, high, log, step} ranges, {choices}), "
               "[study] (sampler grid|random|tpe, trials, objective, direction, pruner, seed, name); "
               "see examples/sweep.toml and the README's Sweeps section.")
    p.add_argument("--study-dir", required=True, metavar="DIR",
                   help="the study folder: new, empty, or one a sweep made (it holds sweep.json)")
    p.add_argument("--config", metavar="FILE", help="sweep file (.toml, .json, .yaml with PyYAML)")
    p.add_argument("--grid", action="append", metavar="NAME=V1,V2,...",
                   help="a grid axis without a file (repeat for more axes), e.g. --grid lr=1e-3,3e-3")
    p.add_argument("--objective", metavar="NAME",
                   help="val_mae (default); probe:TARGET:ARM:METRIC once the downstream probe exists (overrides the "
                        "file)")
    p.add_argument("--pruner", choices=("none", "median", "hyperband"), help="stop hopeless trials early, "
                   "comparing each epoch's val_mae (overrides the file) [none]")
    p.add_argument("--trials", type=count(1), metavar="N", help="number of trials (overrides the file) [a grid: "
                                                                 "all its points]")
    p.add_argument("--storage", metavar="URL", default=os.environ.get(STORAGE_ENV),
                   help=f"database URL of the study (e.g. postgresql://...) instead of DIR/{JOURNAL} "
                        f"[${STORAGE_ENV}]")
    p.add_argument("--jobs", type=count(1, MAX_JOBS), metavar="N",
                   help="worker processes on this machine [1 on a CPU; devices x jobs-per-device on GPUs]")
    p.add_argument("--devices", metavar="LIST", help="CUDA device indices for the workers, e.g. 0,1 [all]")
    p.add_argument("--jobs-per-device", type=count(1, MAX_JOBS), metavar="K", help="worker processes per GPU [1]")
    p.add_argument("--threads-per-job", type=count(1, MAX_JOBS), metavar="T",
                   help="torch CPU threads per worker [cores / jobs; one worker: torch's default]")
    p.add_argument("--worker", metavar="NAME", help=argparse.SUPPRESS)  # a process started by --jobs
    p.add_argument("--quiet", action="store_true", help="no line per trial")
    return p


def sweep_run_settings(rest: list[str]) -> dict:
    """The base run given as training flags, parsed by the trainer's own parser (:func:`build_parser`: the same
    names, types, ranges and choices); only what was given is kept, and ``--profile auto`` is left to the sweep
    file's rule (the device picks it, as for ``python -m train``)."""
    from .config import TrainError
    from .config_file import allowed_keys

    parser = build_parser()
    parser.prog = "python -m train sweep"
    ns = parser.parse_args(rest)
    for flag, dest in (("--run-dir", "run_dir"), ("--resume", "resume"), ("--overwrite", "overwrite"),
                       ("--allow-world-size-change", "allow_world_size_change"), ("--config", "config")):
        if getattr(ns, dest, None):
            raise TrainError(f"{flag} is not a sweep setting: every trial runs in DIR/trial-NNNN and is resumed by "
                             "running the same sweep command again; drop it.")
    out = {k: v for k, v in vars(ns).items() if v is not None and k in allowed_keys() and k != "profile"}
    if ns.profile != "auto":
        out["profile"] = ns.profile
    return out


def _sweep_spec(args, rest: list[str]):
    """The sweep the flags describe; None: continue the one the study folder holds."""
    from .config import TrainError
    from .sweep_file import load_sweep_file, quick_grid

    overrides = sweep_run_settings(rest)
    study = {k: getattr(args, k) for k in ("objective", "pruner", "trials") if getattr(args, k) is not None}
    if args.worker:
        return None
    if args.config and args.grid:
        raise TrainError("--grid builds a sweep without a file; with --config put the grid in the file's [search] "
                         "table.")
    if args.config:
        return load_sweep_file(args.config, overrides, study)
    if args.grid:
        return quick_grid(args.grid, overrides, study)
    if overrides or study:
        raise TrainError(f"settings without --config or --grid: to continue the sweep in {args.study_dir} give no "
                         "settings (they are in its sweep.json), or repeat the --config/--grid it was started with.")
    return None


def cmd_sweep(args, rest: list[str], console, err_console) -> int:
    from .loop import open_training_store
    from .sweep import JOURNAL, Sweep, check_study_dir, plan_workers, require_optuna, run_workers
    from .sweep_report import report

    spec = _sweep_spec(args, rest)  # a bad sweep file or flag is refused first, Optuna or not
    require_optuna()
    workers = None
    if spec is not None:  # refused before the study folder is made
        check_study_dir(args.study_dir, need_record=False)
        for store in spec.stores:  # the trainer's own refusal, once, not in every trial
            open_training_store(store)
        workers = plan_workers(spec, args.jobs, args.devices, args.jobs_per_device, args.threads_per_job)
    sweep = Sweep.open(args.study_dir, spec, args.storage)
    out = None if args.quiet else console
    if args.worker:
        sweep.work(out, f"[{args.worker}] ", args.threads_per_job)  # each trial line is escaped whole
        return 0
    spec = sweep.spec
    workers = workers or plan_workers(spec, args.jobs, args.devices, args.jobs_per_device, args.threads_per_job)
    p = sweep.progress()
    params = ", ".join(q.name for q in spec.search)
    running = p["states"].get("RUNNING", 0)
    console.print("[bold]sweep[/] " + escape(f"{sweep.root}: {spec.sampler} over {params}, {spec.trials} trial(s), objective "
                         f"{spec.objective.name} ({spec.objective.direction})"
                         + (f", {spec.pruner['kind']} pruner" if spec.pruner else "")
                         + f"; {p['finished']} finished" + (f", {running} left running" if running else "")
                         + f"; {workers.describe()}; study in "
                         + (sweep.storage if args.storage else str(sweep.root / JOURNAL))),
                  soft_wrap=True, highlight=False)
    code = 0
    if workers.in_process:
        sweep.work(out, "", workers.threads)
    else:
        codes = run_workers(sweep.root, workers, args.storage, args.quiet)
        failed = [(i, c) for i, c in enumerate(codes) if c != 0]
        if failed:
            err_console.print("worker(s) " + ", ".join(f"w{i} (exit {c})" for i, c in failed) + " stopped early; "
                              "their trials stay running in the study: run the same command again to resume them.",
                              soft_wrap=True)
            code = max(c for _, c in failed) if all(c in (2, 3, 130) for _, c in failed) else 3
    report(sweep, console)
    return code


def sweep_report_parser() -> argparse.ArgumentParser:
    from .sweep import STORAGE_ENV
    from .sweep_report import BEST, CSV, PNG

    p = OneLineParser(prog="python -m train sweep-report", allow_abbrev=False,
                      description=f"Print a sweep's trials and write DIR/{CSV}, DIR/{BEST} (the best trial's run "
                                  f"file) and DIR/{PNG}.")
    p.add_argument("study_dir", metavar="DIR", help="the study folder of `python -m train sweep` (it holds sweep.json)")
    p.add_argument("--storage", metavar="URL", default=os.environ.get(STORAGE_ENV),
                   help=f"the database URL, when the sweep was started with --storage [${STORAGE_ENV}]")
    return p


def cmd_sweep_report(argv, console) -> int:
    from .sweep import Sweep
    from .sweep_report import report

    args = sweep_report_parser().parse_args(argv)
    report(Sweep.open(args.study_dir, None, args.storage, create=False), console)
    return 0


def main(argv=None) -> int:
    console, err_console = make_console(), make_console(stderr=True)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "plot":
        return guarded(lambda: cmd_plot(argv[1:], console), err_console, "interrupted")
    if argv and argv[0] in ("embed", "probe"):
        command = cmd_embed if argv[0] == "embed" else cmd_probe
        return guarded(lambda: command(argv[1:], console, err_console), err_console, "interrupted")
    if argv and argv[0] == "sweep-report":
        return guarded(lambda: cmd_sweep_report(argv[1:], console), err_console, "interrupted")
    if argv and argv[0] == "sweep":
        from .sweep import INTERRUPTED

        sweep_args, rest = sweep_parser().parse_known_args(argv[1:])
        return guarded(lambda: cmd_sweep(sweep_args, rest, console, err_console), err_console, INTERRUPTED)
    args = build_parser().parse_args(argv)
    return guarded(lambda: cmd_train(args, console, err_console), err_console, "interrupted")
