"""The Jade training run: store -> device windows -> AdamW with warm-up + cosine -> checkpoints and a report.

Every epoch: train on a seeded permutation of the training windows, validate
(masked MAE per feature for the model and the two baselines, on fixed val
masks), write a checkpoint and ``metrics.jsonl``; stop early after
``patience`` epochs without a better validation MAE. At the end the best
weights are evaluated on val and test and written as ``model.safetensors``
and ``encoder.safetensors``; ``summary.json`` holds the final report.

Exact resume: data order, masks and dropout are pure functions of ``(seed,
epoch)``, the schedule is a function of the step, and the checkpoint holds
weights, AdamW moments and the best-so-far weights, so ``--resume`` after an
interruption produces the same batches and the same metrics.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from gpu_features.config import FEATURE_NAMES
from gpu_features.errors import StoreError
from gpu_features.fileio import write_json_atomic
from gpu_features.store import MANIFEST, is_dataset, open_store
from gpu_features.windows import WindowSource, derive_seed, resolve_device

from . import baselines
from .checkpoint import (CHECKPOINT_JSON, load_checkpoint, optimizer_from_tensors, optimizer_to_tensors,
                         save_checkpoint, save_tensors_atomic)
from .config import TrainConfig, TrainError
from .jade import Jade

METRICS, SUMMARY, MODEL, ENCODER = "metrics.jsonl", "summary.json", "model.safetensors", "encoder.safetensors"
RUN_FILES = (CHECKPOINT_JSON, METRICS, SUMMARY, MODEL, ENCODER)
# Fields of a metrics line that measure the machine, not the run (differ between identical runs).
TIMING_FIELDS = ("windows_per_s", "data_wait_fraction", "epoch_s", "eval_s")
EVAL_BATCH = 512          # fixed, so validation masks do not depend on the training batch size
CHECK_EVERY = 20          # steps between host syncs (progress, non-finite loss check)
# Independent random streams of one seed.
_S_INIT, _S_DROPOUT, _S_TRAIN, _S_VAL, _S_TEST = 100, 101, 102, 103, 104

OnBatch = Callable[[int, int, tuple, torch.nn.Module], None]


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate of step ``step`` (0-based) of ``total``: linear warm-up to ``cfg.lr``, then cosine to 0."""
    warm = max(1, int(cfg.warmup_fraction * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


def store_identity(store) -> dict:
    return {"path": str(store.path), "created": store.created, "n_bars": store.n_bars,
            "shards_sha256": [s.sha256 for s in store.shards]}


def deterministic_cublas() -> None:
    """Ask cuBLAS for the same reduction order in every run (exact resume on a GPU).

    PyTorch documents ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` for deterministic LSTM
    results; cuBLAS reads it when CUDA first creates a cuBLAS handle, so it is set
    at the start of every run, before the model touches the GPU. A value the user
    already set is kept.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _open_store(path):
    path = Path(path)
    if not ((path / MANIFEST).is_file() or is_dataset(path)):  # a dataset of part stores is one store
        raise TrainError(f"{path}: no feature store there; build the demo store with `make precompute` "
                         f"(or `gpu-features precompute --output {path}`).")
    try:
        return open_store(path)
    except StoreError as err:
        raise TrainError(f"cannot train on {path}: {err}") from None


@torch.no_grad()
def evaluate(model: Jade, loader, mean: torch.Tensor, autocast, progress=None, label: str = "eval") -> dict:
    """Masked MAE per feature of the model and both baselines over one pass of ``loader`` (its epoch-0 masks).

    Returns:
        ``{"windows", "positions", "huber", "model": [D], "mean": [D], "interp": [D]}`` (MAE lists) and
        ``"mae": {"model", "mean", "interp"}``, the averages over features.
    """
    was_training = model.training
    model.eval()
    D = mean.shape[0]
    dev = mean.device
    sums = torch.zeros(3, D, dtype=torch.float64, device=dev)
    count = torch.zeros((), dtype=torch.float64, device=dev)
    huber = torch.zeros((), dtype=torch.float64, device=dev)
    task = progress.add_task(label, total=len(loader), info="") if progress is not None else None
    for X, mask, valid in loader.batches(0):
        with autocast():
            recon = model(X, mask)
        recon, target = recon.float(), X[..., :D].float()
        w = (mask & valid).unsqueeze(-1).float()
        base = baselines.predictions(X, mask, valid, mean)
        for j, pred in enumerate((recon, base["mean"], base["interp"])):
            sums[j] += ((pred - target).abs() * w).sum(dim=(0, 1)).double()
        count += w.sum().double()
        huber += (F.huber_loss(recon, target, reduction="none", delta=model.config.huber_delta) * w).sum().double()
        if task is not None:
            progress.advance(task)
    model.train(was_training)
    s, c = sums.cpu().numpy(), float(count)
    per = s / max(c, 1.0)
    out = {"windows": loader.n_windows, "positions": int(c), "huber": float(huber) / max(c * D, 1.0)}
    for j, name in enumerate(("model", "mean", "interp")):
        out[name] = [float(x) for x in per[j]]
    out["mae"] = {name: float(np.mean(out[name])) for name in ("model", "mean", "interp")}
    return out


class Run:
    """One training run in a run directory; build with :func:`prepare`, then :meth:`fit` and :meth:`finish`."""

    def __init__(self, store, run_dir: Path, cfg: TrainConfig, state: dict | None, tensors: dict | None,
                 console=None, quiet: bool = False):
        self.store, self.run_dir, self.cfg = store, run_dir, cfg
        self.console, self.quiet = console, quiet
        self.device = resolve_device(cfg.device)
        self.use_bf16 = cfg.bf16 and self.device.type == "cuda"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False  # same kernels on resume
        self.src = WindowSource.from_store(store, self.device)
        loader_opts = dict(stride=cfg.stride, min_valid_fraction=cfg.min_valid_fraction, mask=cfg.mask,
                           mask_ratio=cfg.mask_ratio, patch_length=cfg.patch_length, position=cfg.position_channel)
        self.train_loader = self.src.loader("train", cfg.batch_size, max_windows=cfg.max_train_windows, shuffle=True,
                                            seed=derive_seed(cfg.seed, _S_TRAIN), **loader_opts)
        self.val_loader = self.src.loader("val", EVAL_BATCH, max_windows=cfg.max_val_windows, shuffle=False,
                                          seed=derive_seed(cfg.seed, _S_VAL), **loader_opts)
        self.final_loaders = {
            name: self.src.loader(name, EVAL_BATCH, max_windows=cfg.max_final_windows, shuffle=False,
                                  seed=derive_seed(cfg.seed, stream), **loader_opts)
            for name, stream in (("val", _S_VAL), ("test", _S_TEST))}
        for name, loader in (("train", self.train_loader), ("val", self.val_loader),
                             ("test", self.final_loaders["test"])):
            if loader.n_windows == 0:
                raise TrainError(f"{store.path}: the {name} split has no usable {store.config.window_length}-bar "
                                 "windows; rebuild the store with other --split-fractions or more bars.")
        self.mean = torch.as_tensor(baselines.train_mean(store.array("features"), store.array("valid"),
                                                         store.split_ids()), device=self.device)
        torch.manual_seed(derive_seed(cfg.seed, _S_INIT))
        self.model = Jade(cfg.jade_config(len(FEATURE_NAMES))).to(self.device)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        rest = [p for n, p in self.model.named_parameters() if p.ndim < 2 and p.requires_grad]
        # Weight decay on matrices only: decaying biases, the mask vector or log sigma only biases them to 0.
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
        self.total_steps = cfg.epochs * len(self.train_loader)
        if state is None:
            with torch.no_grad():  # step 0 predicts the mean baseline; training starts from there
                self.model.decoder.bias.copy_(self.mean)
            self.state = {"epoch": 0, "step": 0, "best_val_mae": None, "best_epoch": 0, "bad_epochs": 0,
                          "stopped_early": False, "history": [], "config": cfg.to_dict(),
                          "jade_config": self.model.config.to_dict(), "store": store_identity(store),
                          "device": str(self.device)}
            self.best = None
        else:
            self.state = state
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            optimizer_from_tensors(self.opt, tensors, state["optimizer"])
            self.best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None

    # --- helpers ----------------------------------------------------------------------------------

    def autocast(self):
        if self.use_bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _progress(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        return Progress(TextColumn("[bold]{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console,
                        disable=self.quiet, transient=False)

    def _print(self, *args, **kw):
        if self.console is not None and not self.quiet:
            self.console.print(*args, **kw)

    def _checkpoint(self) -> None:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        if self.best is not None:
            tensors.update({f"best.{k}": v for k, v in self.best.items()})
        opt_tensors, opt_meta = optimizer_to_tensors(self.opt)
        tensors.update(opt_tensors)
        self.state["optimizer"] = opt_meta
        save_checkpoint(self.run_dir, self.state, tensors)
        write_json_atomic(self.run_dir / METRICS, self.state["history"], lines=True)

    @property
    def done_training(self) -> bool:
        return self.state["stopped_early"] or self.state["epoch"] >= self.cfg.epochs

    # --- training ---------------------------------------------------------------------------------

    def fit(self, on_batch: OnBatch | None = None) -> None:
        """Train the remaining epochs (none when the checkpoint already finished them)."""
        cfg, model, opt = self.cfg, self.model, self.opt
        D = model.config.n_features
        with self._progress() as progress:
            while not self.done_training:
                epoch = self.state["epoch"]
                torch.manual_seed(derive_seed(cfg.seed, _S_DROPOUT, epoch))  # dropout, reproducible on resume
                model.train()
                n_batches = len(self.train_loader)
                task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=n_batches, info="")
                sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, huber, abs err, positions
                t0 = time.perf_counter()
                wait, lr, first_step = 0.0, cfg.lr, self.state["step"]
                it = self.train_loader.batches(epoch)
                for i in range(n_batches):
                    tw = time.perf_counter()
                    batch = next(it)
                    wait += time.perf_counter() - tw
                    if on_batch is not None:
                        on_batch(epoch, i, batch, model)
                    X, mask, valid = batch
                    lr = lr_at(self.state["step"], self.total_steps, cfg)
                    for g in opt.param_groups:
                        g["lr"] = lr
                    with self.autocast():
                        recon = model(X, mask)
                    loss, huber = model.loss(recon, X, mask, valid)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                    self.state["step"] += 1
                    with torch.no_grad():
                        w = (mask & valid).unsqueeze(-1)
                        err = ((recon.float() - X[..., :D]).abs() * w).sum()
                        sums += torch.stack([loss.detach().double(), huber.detach().double(), err.double(),
                                             w.sum().double() * D])
                    if (i + 1) % CHECK_EVERY == 0 or i + 1 == n_batches:
                        s = sums.tolist()
                        if not all(math.isfinite(x) for x in s):
                            self._non_finite(epoch, first_step, s)
                        rate = (i + 1) * cfg.batch_size / (time.perf_counter() - t0)
                        progress.update(task, completed=i + 1,
                                        info=f"loss {s[0] / (i + 1):.4f}  mae {s[2] / max(s[3], 1):.4f}  "
                                             f"{rate:,.0f} win/s")
                train_s = time.perf_counter() - t0
                te = time.perf_counter()
                val = evaluate(model, self.val_loader, self.mean, self.autocast, progress, "  validate")
                eval_s = time.perf_counter() - te
                s = sums.tolist()
                improved = self.state["best_val_mae"] is None or val["mae"]["model"] < self.state["best_val_mae"]
                if improved:
                    self.state.update(best_val_mae=val["mae"]["model"], best_epoch=epoch + 1, bad_epochs=0)
                    self.best = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    self.state["bad_epochs"] += 1
                line = {"epoch": epoch + 1, "step": self.state["step"], "lr": lr,
                        "train_loss": s[0] / n_batches, "train_huber": s[1] / n_batches,
                        "train_mae": s[2] / max(s[3], 1.0), "sigma": model.sigma,
                        "val_huber": val["huber"], "val_mae": val["mae"]["model"],
                        "val_mae_mean_baseline": val["mae"]["mean"], "val_mae_interp_baseline": val["mae"]["interp"],
                        "val_mae_per_feature": dict(zip(FEATURE_NAMES, val["model"])), "best": improved,
                        "train_windows": self.train_loader.n_windows, "val_windows": val["windows"],
                        "windows_per_s": self.train_loader.n_windows / train_s,
                        "data_wait_fraction": wait / train_s, "epoch_s": train_s, "eval_s": eval_s}
                self.state["history"].append(line)
                self.state["epoch"] = epoch + 1
                self.state["stopped_early"] = self.state["bad_epochs"] >= cfg.patience and epoch + 1 < cfg.epochs
                self._checkpoint()
                progress.update(task, info=f"loss {line['train_loss']:.4f}  val mae {line['val_mae']:.4f}"
                                           f"{' *' if improved else ''}  {line['windows_per_s']:,.0f} win/s")
                if self.state["stopped_early"]:
                    self._print(f"[yellow]early stop[/]: no better validation MAE for {cfg.patience} epochs "
                                f"(best epoch {self.state['best_epoch']})")

    def _non_finite(self, epoch: int, first_step: int, sums: list) -> None:
        kind = "NaN" if any(math.isnan(x) for x in sums) else "infinite"
        last = self.state["epoch"]
        kept = (f"the checkpoint of epoch {last} is kept in {self.run_dir / CHECKPOINT_JSON}" if last
                else "no epoch had completed, so no checkpoint was written")
        raise TrainError(f"training stopped: the loss became {kind} in epoch {epoch + 1} (steps {first_step + 1} to "
                         f"{self.state['step']}); {kept}; start a new run with a lower --lr (now {self.cfg.lr:g}).")

    # --- the end ----------------------------------------------------------------------------------

    def finish(self) -> dict:
        """Evaluate the best weights on val and test, write the model files and ``summary.json``."""
        if self.best is not None:
            self.model.load_state_dict(self.best)
        with self._progress() as progress:
            final = {name: evaluate(self.model, loader, self.mean, self.autocast, progress, f"final {name}")
                     for name, loader in self.final_loaders.items()}
        meta = dict(self.model.metadata(), feature_names=json.dumps(list(FEATURE_NAMES)),
                    train_config=json.dumps(self.cfg.to_dict()), best_epoch=str(self.state["best_epoch"]))
        save_tensors_atomic(self.run_dir / MODEL, self.model.state_dict(), meta)
        save_tensors_atomic(self.run_dir / ENCODER, self.model.encoder_state_dict(), meta)
        hist = self.state["history"]
        summary = {
            "store": self.state["store"]["path"], "run_dir": str(self.run_dir), "device": str(self.device),
            "bf16": self.use_bf16, "config": self.cfg.to_dict(), "feature_names": list(FEATURE_NAMES),
            "epochs_run": self.state["epoch"], "best_epoch": self.state["best_epoch"],
            "stopped_early": self.state["stopped_early"], "train_windows": self.train_loader.n_windows,
            "windows_per_s": float(np.mean([h["windows_per_s"] for h in hist])) if hist else None,
            "data_wait_fraction": float(np.mean([h["data_wait_fraction"] for h in hist])) if hist else None,
            "val": final["val"], "test": final["test"],
        }
        for split in ("val", "test"):
            r = final[split]
            summary[f"beats_mean_on_{split}"] = r["mae"]["model"] < r["mae"]["mean"]
            summary[f"beats_interp_on_{split}"] = r["mae"]["model"] < r["mae"]["interp"]
            summary[f"features_beating_interp_{split}"] = int(sum(m < b for m, b in zip(r["model"], r["interp"])))
        write_json_atomic(self.run_dir / SUMMARY, summary)
        return summary


def prepare(store_path, run_dir, cfg: TrainConfig | None = None, resume: bool = False, overwrite: bool = False,
            console=None, quiet: bool = False) -> Run:
    """Open the store and the run directory (fresh, replaced with ``overwrite``, or resumed)."""
    deterministic_cublas()
    store = _open_store(store_path)
    run_dir = Path(run_dir)
    resolve_device((cfg or TrainConfig()).device)  # refuse a missing GPU before touching the run directory
    if resume:
        state, tensors = load_checkpoint(run_dir)
        saved = TrainConfig.from_dict(state["config"])
        if cfg is not None and cfg != saved:
            diff = [f"{k} {v!r} (saved {saved.to_dict()[k]!r})" for k, v in cfg.to_dict().items()
                    if saved.to_dict()[k] != v]
            raise TrainError(f"--resume continues {run_dir} with its saved settings, but these differ: "
                             f"{', '.join(diff)}; drop them or start a new --run-dir.")
        if state["store"]["shards_sha256"] != store_identity(store)["shards_sha256"]:
            raise TrainError(f"--resume: {run_dir} was trained on the store {state['store']['path']} created "
                             f"{state['store']['created']}, not on {store.path}; pass that --store.")
        return Run(store, run_dir, saved, state, tensors, console, quiet)
    existing = [f for f in RUN_FILES if (run_dir / f).exists()]
    if existing:
        if not overwrite:
            raise TrainError(f"{run_dir} already holds a run ({', '.join(existing)}); continue it with --resume, "
                             "replace it with --overwrite, or choose another --run-dir (make train RUN=runs/other).")
        for f in existing:
            (run_dir / f).unlink()
        for f in run_dir.glob("checkpoint-e*.safetensors"):
            f.unlink()
    elif run_dir.exists() and not run_dir.is_dir():
        raise TrainError(f"--run-dir {run_dir} is a file; choose a directory.")
    run_dir.mkdir(parents=True, exist_ok=True)
    return Run(store, run_dir, cfg or TrainConfig(), None, None, console, quiet)


def train(store_path, run_dir, cfg: TrainConfig | None = None, resume: bool = False, overwrite: bool = False,
          console=None, quiet: bool = True, on_batch: OnBatch | None = None) -> dict:
    """Train (or resume) and evaluate; returns the summary (also in ``run_dir/summary.json``).

    Args:
        store_path: a gpu-features store.
        run_dir: where checkpoints, ``metrics.jsonl``, the model files and ``summary.json`` go.
        cfg: the run's settings (default :class:`TrainConfig`); with ``resume`` it must match the saved one or be None.
        resume: continue the checkpoint in ``run_dir``.
        overwrite: replace a run already in ``run_dir``.
        console: a rich Console for progress and messages (None: silent).
        on_batch: ``callback(epoch, index, batch, model)`` before each training step (tests use it).
    """
    run = prepare(store_path, run_dir, cfg, resume, overwrite, console, quiet)
    run.fit(on_batch)
    return run.finish()


__all__ = ["Run", "TIMING_FIELDS", "evaluate", "lr_at", "prepare", "train"]
