"""The Jade training run: stores -> device windows -> AdamW with warm-up + cosine -> checkpoints and a report.

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

Under torchrun (:mod:`train.distributed`) every rank runs this same loop on
its share of each epoch (:class:`gpu_features.windows.WindowLoader` ``rank``
/ ``world_size``); the model is wrapped in DistributedDataParallel; training
and evaluation sums are all-reduced, so every decision (non-finite stop, best
epoch, early stop) is taken on the same numbers by every rank; rank 0 alone
writes files and shows progress, and a barrier follows each write.

The host never waits for the device inside an epoch: the step's statistics
accumulate on the device and are read one check late (:class:`train.step.LaggedCheck`).
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
from gpu_features.errors import GpuFeaturesError, LockError
from gpu_features.fileio import sha256_file, write_json_atomic
from gpu_features.windows import WindowSource, check_combinable, derive_seed, resolve_device

from . import baselines, distributed, rundir
from .checkpoint import (CHECKPOINT_JSON, load_checkpoint, optimizer_from_tensors, optimizer_to_tensors,
                         read_checkpoint_record, save_checkpoint, save_tensors_atomic)
from .config import TrainConfig, TrainError
from .config_file import RESOLVED, resolved
from .jade import Jade
from .load import ENCODER, FILE_HASHES, MODEL, PROBE_JSON, PROBE_PNG, SUMMARY, LoadedRun, open_training_store
from .step import LaggedCheck, TrainStep, finite, graph_autocast

METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
RUN_FILES = (CHECKPOINT_JSON, METRICS, SUMMARY, MODEL, ENCODER, RESOLVED, PROBE_JSON, PROBE_PNG)
# Fields of a metrics line that measure the machine, not the run (differ between identical runs).
TIMING_FIELDS = ("windows_per_s", "data_wait_fraction", "epoch_s", "eval_s")
EVAL_BATCH = 512          # fixed, so validation masks do not depend on the training batch size
CHECK_EVERY = 20          # steps between (lagged, non-blocking) reads of the loss sums: progress, non-finite check
# Independent random streams of one seed.
_S_INIT, _S_DROPOUT, _S_TRAIN, _S_VAL, _S_TEST = 100, 101, 102, 103, 104

OnBatch = Callable[[int, int, tuple, torch.nn.Module], None]
OnEpoch = Callable[[dict], bool]  # the epoch's metrics line, after its checkpoint; True stops the run there


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


def _store_paths(store_path) -> list:
    return [store_path] if isinstance(store_path, (str, os.PathLike)) else list(store_path)


@torch.no_grad()
def evaluate(model: Jade, loader, mean: torch.Tensor, autocast, progress=None, label: str = "eval",
             dist: distributed.Dist | None = None) -> dict:
    """Masked MAE per feature of the model and both baselines over one pass of ``loader`` (its epoch-0 masks).

    With ``dist``, each rank evaluates its share of the windows and the sums are all-reduced, so
    every rank returns the same numbers.

    Returns:
        ``{"windows", "positions", "huber", "model": [D], "mean": [D], "interp": [D]}`` (MAE lists) and
        ``"mae": {"model", "mean", "interp"}``, the averages over features.
    """
    was_training = model.training
    model.eval()
    D = mean.shape[0]
    dev = mean.device
    sums = torch.zeros(3 * D + 2, dtype=torch.float64, device=dev)  # 3 x [D] abs errors, positions, huber
    task = progress.add_task(label, total=len(loader), info="") if progress is not None else None
    for X, mask, valid in loader.batches(0):
        with autocast():
            recon = model(X, mask)
        recon, target = recon.float(), X[..., :D].float()
        w = (mask & valid).unsqueeze(-1).float()
        base = baselines.predictions(X, mask, valid, mean)
        for j, pred in enumerate((recon, base["mean"], base["interp"])):
            sums[j * D:(j + 1) * D] += ((pred - target).abs() * w).sum(dim=(0, 1)).double()
        sums[3 * D] += w.sum().double()
        sums[3 * D + 1] += (F.huber_loss(recon, target, reduction="none", delta=model.config.huber_delta)
                            * w).sum().double()
        if task is not None:
            progress.advance(task)
    if dist is not None:
        dist.all_reduce_sum(sums)
    model.train(was_training)
    s = sums.cpu().numpy()
    c = float(s[3 * D])
    per = s[:3 * D].reshape(3, D) / max(c, 1.0)
    out = {"windows": loader.n_windows, "positions": int(c), "huber": float(s[3 * D + 1]) / max(c * D, 1.0)}
    for j, name in enumerate(("model", "mean", "interp")):
        out[name] = [float(x) for x in per[j]]
    out["mae"] = {name: float(np.mean(out[name])) for name in ("model", "mean", "interp")}
    return out


def _use_graphs(cfg: TrainConfig, dist: distributed.Dist, recorded: bool | None) -> bool:
    """Whether this run captures its step (see :mod:`train.step`); ``recorded``: what the checkpoint's run did."""
    if cfg.cuda_graphs == "on":
        if dist.device.type != "cuda" or dist.world_size > 1:
            raise TrainError(f"--cuda-graphs on needs one process on a CUDA device (here: {dist.device}, "
                             f"{dist.world_size} process(es)); use --cuda-graphs auto or off.")
        return True
    if cfg.cuda_graphs == "off":
        return False
    if recorded is not None:  # a resumed run takes the path its first part took, so it stays exact
        return recorded and dist.device.type == "cuda" and dist.world_size == 1
    return dist.device.type == "cuda" and dist.world_size == 1


class Run:
    """One training run in a run directory; build with :func:`prepare`, then :meth:`fit` and :meth:`finish`."""

    def __init__(self, src: WindowSource, stores: list[dict], run_dir: Path, cfg: TrainConfig, state: dict | None,
                 tensors: dict | None, console=None, quiet: bool = False, dist: distributed.Dist | None = None,
                 tensorboard: bool = False, feature_config: dict | None = None, probe: tuple[str, ...] = ()):
        self.src, self.stores, self.run_dir, self.cfg = src, stores, run_dir, cfg
        self.feature_config = feature_config or {}  # the stores' FeatureConfig as a dict (model file headers)
        self.probe_targets = tuple(probe)           # downstream probe targets run by finish()
        self.dist = dist or distributed.Dist(device=resolve_device(cfg.device))
        self.is_main = self.dist.is_main
        self.console, self.quiet = (console, quiet) if self.is_main else (None, True)
        self.device = self.dist.device
        self.use_bf16 = cfg.bf16 and self.device.type == "cuda"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False  # same kernels on resume
        W, r = self.dist.world_size, self.dist.rank
        loader_opts = dict(stride=cfg.stride, min_valid_fraction=cfg.min_valid_fraction, mask=cfg.mask,
                           mask_ratio=cfg.mask_ratio, patch_length=cfg.patch_length, position=cfg.position_channel,
                           rank=r, world_size=W)
        self.train_loader = src.loader("train", cfg.batch_size, max_windows=cfg.max_train_windows, shuffle=True,
                                       seed=derive_seed(cfg.seed, _S_TRAIN), pad=True, **loader_opts)
        self.val_loader = src.loader("val", EVAL_BATCH, max_windows=cfg.max_val_windows, shuffle=False,
                                     seed=derive_seed(cfg.seed, _S_VAL), pad=False, **loader_opts)
        self.final_loaders = {
            name: src.loader(name, EVAL_BATCH, max_windows=cfg.max_final_windows, shuffle=False,
                             seed=derive_seed(cfg.seed, stream), pad=False, **loader_opts)
            for name, stream in (("val", _S_VAL), ("test", _S_TEST))}
        for name, loader in (("train", self.train_loader), ("val", self.val_loader),
                             ("test", self.final_loaders["test"])):
            if loader.n_windows == 0:
                where = ", ".join(s["path"] for s in stores)
                raise TrainError(f"{where}: the {name} split has no usable {src.window_length}-bar windows; rebuild "
                                 "the store with other --split-fractions or more bars, or train with a shorter "
                                 "--window-length.")
        # Windows one epoch trains on, over all ranks (with several, the padded share counts).
        self.epoch_windows = self.train_loader.n_windows if W == 1 else len(self.train_loader) * cfg.batch_size * W
        self.mean = baselines.train_mean_on_device(src.features, src.valid, src.split_ids)
        torch.manual_seed(derive_seed(cfg.seed, _S_INIT))
        self.model = Jade(cfg.jade_config(len(FEATURE_NAMES))).to(self.device)
        recorded = None if state is None else state.get("cuda_graphs")
        graphs = _use_graphs(cfg, self.dist, recorded)
        self.opt = self._optimizer(graphs)
        self.total_steps = cfg.epochs * len(self.train_loader)
        if state is None:
            with torch.no_grad():  # step 0 predicts the mean baseline; training starts from there
                self.model.decoder.bias.copy_(self.mean)
            self.state = {"epoch": 0, "step": 0, "best_val_mae": None, "best_epoch": 0, "bad_epochs": 0,
                          "stopped_early": False, "history": [], "config": cfg.to_dict(),
                          "jade_config": self.model.config.to_dict(), "store": stores[0], "stores": stores,
                          "device": str(self.device), "world_size": W, "global_batch_size": cfg.batch_size * W,
                          "window_length": src.window_length, "cuda_graphs": graphs}
            self.best = None
        else:
            self.state = state
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            optimizer_from_tensors(self.opt, tensors, state["optimizer"])
            self.best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
            self.state.update(world_size=W, global_batch_size=cfg.batch_size * W, cuda_graphs=graphs)
        # DDP broadcasts rank 0's weights at construction; every rank already holds the same ones.
        self.net = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.dist.active else self.model)
        self.autocast = graph_autocast(self.use_bf16) if graphs else self._autocast
        self.step = TrainStep(self.model, self.net, self.opt, cfg.grad_clip, self.autocast, graphs)
        self.tb = self._tensorboard() if tensorboard and self.is_main else None

    # --- helpers ----------------------------------------------------------------------------------

    def _optimizer(self, graphs: bool) -> torch.optim.Optimizer:
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        rest = [p for n, p in self.model.named_parameters() if p.ndim < 2 and p.requires_grad]
        # Weight decay on matrices only: decaying biases, the mask vector or log sigma only biases them to 0.
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        if self.device.type != "cuda":
            return torch.optim.AdamW(groups, lr=self.cfg.lr)
        # Fused AdamW: one kernel for all parameters; capturable with a device learning rate for graphs.
        lr = torch.tensor(self.cfg.lr, device=self.device) if graphs else self.cfg.lr
        return torch.optim.AdamW(groups, lr=lr, fused=True, capturable=graphs)

    def _autocast(self):
        if self.use_bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise TrainError("--tensorboard needs the tensorboard package, which is not installed; install it with "
                             "pip install 'gpu-features[tensorboard]' (or drop --tensorboard).") from None
        return SummaryWriter(str(self.run_dir / TENSORBOARD))

    def _log_tensorboard(self, line: dict) -> None:
        """The numbers of a metrics line, by epoch (per-feature MAE under val_mae_per_feature/NAME)."""
        if self.tb is None:
            return
        for key, value in line.items():
            if isinstance(value, dict):
                for name, v in value.items():
                    self.tb.add_scalar(f"{key}/{name}", v, line["epoch"])
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self.tb.add_scalar(key, value, line["epoch"])
        self.tb.flush()

    def _progress(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        return Progress(TextColumn("[bold]{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=self.console,
                        disable=self.quiet, transient=False)

    def _print(self, *args, **kw):
        if self.console is not None and not self.quiet:
            self.console.print(*args, **kw)

    def _checkpoint(self) -> None:
        """Rank 0 commits the checkpoint and the metrics; every rank waits until it is on disk."""
        if self.is_main:
            tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
            if self.best is not None:
                tensors.update({f"best.{k}": v for k, v in self.best.items()})
            opt_tensors, opt_meta = optimizer_to_tensors(self.opt)
            tensors.update(opt_tensors)
            self.state["optimizer"] = opt_meta
            save_checkpoint(self.run_dir, self.state, tensors)
            write_json_atomic(self.run_dir / METRICS, self.state["history"], lines=True)
        self.dist.barrier()

    @property
    def done_training(self) -> bool:
        return self.state["stopped_early"] or self.state["epoch"] >= self.cfg.epochs

    # --- training ---------------------------------------------------------------------------------

    def fit(self, on_batch: OnBatch | None = None, on_epoch: OnEpoch | None = None) -> bool:
        """Train the remaining epochs (none when the checkpoint already finished them).

        ``on_epoch(line)`` is called after each epoch's checkpoint is committed; when it returns True
        the run stops there (a sweep's pruner), its checkpoint resumable as after an interruption
        (under torchrun every rank must return the same). Returns whether it was stopped so.
        """
        stopped = False
        cfg, model = self.cfg, self.model
        with self._progress() as progress:
            while not self.done_training:
                epoch = self.state["epoch"]
                # Dropout, reproducible on resume; each rank its own stream (rank 0's is the single process's).
                r = self.dist.rank
                torch.manual_seed(derive_seed(cfg.seed, _S_DROPOUT, epoch, *([r] if r else [])))
                model.train()
                n_batches = len(self.train_loader)
                task = progress.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=n_batches, info="")
                sums = torch.zeros(4, dtype=torch.float64, device=self.device)  # loss, huber, abs err, positions
                check = LaggedCheck(self.dist, self.device)
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
                    if i == 0 and self.step.graphs:
                        self._capture(X, mask, valid)
                    lr = lr_at(self.state["step"], self.total_steps, cfg)
                    sums += self.step(X, mask, valid, lr)
                    self.state["step"] += 1
                    if (i + 1) % CHECK_EVERY == 0:
                        seen = check.pop()
                        if seen is not None:
                            s, at_step, done = seen
                            if not finite(s):
                                self._non_finite(epoch, first_step, s, at_step)
                            rate = done * cfg.batch_size * self.dist.world_size / (time.perf_counter() - t0)
                            progress.update(task, info=f"loss {s[0] / (done * self.dist.world_size):.4f}  "
                                                       f"mae {s[2] / max(s[3], 1):.4f}  {rate:,.0f} win/s")
                        check.push(sums, self.state["step"], i + 1)
                    progress.update(task, completed=i + 1)
                s = self.dist.all_reduce_sum(sums.clone()).tolist()  # the epoch's one wait for the device
                if not finite(s):
                    self._non_finite(epoch, first_step, s, self.state["step"])
                train_s = time.perf_counter() - t0
                te = time.perf_counter()
                val = evaluate(model, self.val_loader, self.mean, self.autocast, progress, "  validate", self.dist)
                eval_s = time.perf_counter() - te
                improved = self.state["best_val_mae"] is None or val["mae"]["model"] < self.state["best_val_mae"]
                if improved:
                    self.state.update(best_val_mae=val["mae"]["model"], best_epoch=epoch + 1, bad_epochs=0)
                    self.best = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    self.state["bad_epochs"] += 1
                steps_all = n_batches * self.dist.world_size
                line = {"epoch": epoch + 1, "step": self.state["step"], "lr": lr,
                        "train_loss": s[0] / steps_all, "train_huber": s[1] / steps_all,
                        "train_mae": s[2] / max(s[3], 1.0), "sigma": model.sigma,
                        "val_huber": val["huber"], "val_mae": val["mae"]["model"],
                        "val_mae_mean_baseline": val["mae"]["mean"], "val_mae_interp_baseline": val["mae"]["interp"],
                        "val_mae_per_feature": dict(zip(FEATURE_NAMES, val["model"])), "best": improved,
                        "train_windows": self.train_loader.n_windows, "val_windows": val["windows"],
                        "windows_per_s": self.epoch_windows / train_s,
                        "data_wait_fraction": wait / train_s, "epoch_s": train_s, "eval_s": eval_s}
                self.state["history"].append(line)
                self.state["epoch"] = epoch + 1
                self.state["stopped_early"] = self.state["bad_epochs"] >= cfg.patience and epoch + 1 < cfg.epochs
                self._checkpoint()
                self._log_tensorboard(line)
                progress.update(task, info=f"loss {line['train_loss']:.4f}  val mae {line['val_mae']:.4f}"
                                           f"{' *' if improved else ''}  {line['windows_per_s']:,.0f} win/s")
                if self.state["stopped_early"]:
                    self._print(f"[yellow]early stop[/]: no better validation MAE for {cfg.patience} epochs "
                                f"(best epoch {self.state['best_epoch']})")
                if on_epoch is not None and on_epoch(line):
                    stopped = True
                    break
        self.step.release()
        return stopped

    def _capture(self, X, mask, valid) -> None:
        """Capture the step after the epoch's seed (see train.step).

        A failure is a bug in this new path, not bad input: it stays an internal error (exit 3, the
        traceback kept for the report), with the one sentence that says how to train meanwhile.
        """
        try:
            self.step.capture(X, mask, valid)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RuntimeError(f"capturing the training step into a CUDA graph failed ({first}); train with "
                               "--cuda-graphs off meanwhile") from err

    def _non_finite(self, epoch: int, first_step: int, sums: list, at_step: int) -> None:
        kind = "NaN" if any(math.isnan(x) for x in sums) else "infinite"
        last = self.state["epoch"]
        kept = (f"the checkpoint of epoch {last} is kept in {self.run_dir / CHECKPOINT_JSON}" if last
                else "no epoch had completed, so no checkpoint was written")
        raise TrainError(f"training stopped: the loss became {kind} in epoch {epoch + 1} (steps {first_step + 1} to "
                         f"{at_step}); {kept}; start a new run with a lower --lr (now {self.cfg.lr:g}).")

    # --- the end ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the run directory's lock (:func:`prepare` took it): after :meth:`finish` and whatever
        else the caller writes into the run directory. Idempotent; ``train`` and the CLI always call it."""
        held = getattr(self, "held", None)
        if held is not None:
            held.close()

    def loaded(self, summary: dict) -> LoadedRun:
        """This run's best weights as :func:`train.load.load_run` would return them (the probe's input)."""
        from gpu_features.config import FeatureConfig

        return LoadedRun(self.model.eval(), self.cfg, FeatureConfig.from_dict(self.feature_config),
                         self.src.window_length, summary, self.run_dir)

    def finish(self) -> dict:
        """Evaluate the best weights on val and test; rank 0 writes the model files and ``summary.json``."""
        if self.best is not None:
            self.model.load_state_dict(self.best)
        with self._progress() as progress:
            final = {name: evaluate(self.model, loader, self.mean, self.autocast, progress, f"final {name}", self.dist)
                     for name, loader in self.final_loaders.items()}
        hist = self.state["history"]
        W = self.dist.world_size
        summary = {
            "store": self.stores[0]["path"], "stores": [s["path"] for s in self.stores], "run_dir": str(self.run_dir),
            "device": str(self.device), "bf16": self.use_bf16, "config": self.cfg.to_dict(),
            "world_size": W, "batch_size_per_process": self.cfg.batch_size, "global_batch_size": self.cfg.batch_size * W,
            "window_length": self.src.window_length, "cuda_graphs": self.step.graphs,
            "feature_names": list(FEATURE_NAMES),
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
        if self.is_main:
            meta = dict(self.model.metadata(), feature_names=json.dumps(list(FEATURE_NAMES)),
                        train_config=json.dumps(self.cfg.to_dict()), best_epoch=str(self.state["best_epoch"]),
                        feature_config=json.dumps(self.feature_config, sort_keys=True))
            save_tensors_atomic(self.run_dir / MODEL, self.model.state_dict(), meta)
            save_tensors_atomic(self.run_dir / ENCODER, self.model.encoder_state_dict(), meta)
            summary[FILE_HASHES] = {name: sha256_file(self.run_dir / name) for name in (MODEL, ENCODER)}
            if self.probe_targets:  # the downstream probe of the best weights (train.probe), its headline numbers
                from .probe import headline, run_probe, write_probe

                say = (lambda m: None) if self.quiet or self.console is None else \
                    (lambda m: self.console.print(f"probe: {m}", highlight=False))
                record = run_probe(self.loaded(summary), self.probe_targets, progress=say, source=self.src)
                write_probe(record, self.run_dir)
                summary["probe"] = headline(record)
            write_json_atomic(self.run_dir / SUMMARY, summary)
            if self.tb is not None:
                self.tb.close()
        self.dist.barrier()
        return summary


def _start_or_refuse(dist: distributed.Dist, error: GpuFeaturesError | None) -> None:
    """Every rank raises when any rank hit an error (its own message, or a pointer to the other rank's)."""
    try:
        dist.agree(error is None, "another rank could not start the run; its message says why.")
    except TrainError:
        if error is not None:
            raise error from None
        raise


def prepare(store_path, run_dir, cfg: TrainConfig | None = None, resume: bool = False, overwrite: bool = False,
            console=None, quiet: bool = False, tensorboard: bool = False,
            allow_world_size_change: bool = False, probe=()) -> Run:
    """Open the stores and the run directory (fresh, replaced with ``overwrite``, or resumed).

    Args:
        store_path: a store, or a list of stores trained on as one dataset.
        probe: downstream probe targets (``return-sign:5``, ...) run on the best weights at the end
            (:mod:`train.probe`); their headline numbers go into ``summary.json``.
        allow_world_size_change: resume with another number of processes than the checkpoint's
            run had (the result then differs from an uninterrupted run).
    """
    deterministic_cublas()
    run_dir = Path(run_dir)
    paths = _store_paths(store_path)
    saved = None
    if resume:
        record = read_checkpoint_record(run_dir)  # refuses, saying why, where there is nothing to resume
        saved = TrainConfig.from_dict(record["config"])
        if cfg is not None and cfg != saved:
            diff = [f"{k} {v!r} (saved {saved.to_dict()[k]!r})" for k, v in cfg.to_dict().items()
                    if saved.to_dict()[k] != v]
            raise TrainError(f"--resume continues {run_dir} with its saved settings, but these differ: "
                             f"{', '.join(diff)}; drop them or start a new --run-dir.")
    run_cfg = saved or cfg or TrainConfig()
    dist = distributed.init(run_cfg.device)  # refuses a missing GPU before touching the run directory
    error, state, tensors, stores, held = None, None, None, [], contextlib.ExitStack()
    try:
        stores = [open_training_store(p) for p in paths]
        if len(stores) > 1:
            check_combinable(stores)
        identities = [store_identity(s) for s in stores]
        for attempt in ("early", "locked"):  # refused before waiting for the lock, and checked again under it
            if attempt == "locked" and dist.is_main:
                held.enter_context(rundir.lock(run_dir))  # one trainer per run directory (rank 0 writes)
            if resume:
                rundir.check_resume(run_dir)
                rundir.check_config_json(run_dir, (saved or run_cfg).to_dict())
            else:
                rundir.check_new(run_dir, overwrite)
        if resume:
            state, tensors = load_checkpoint(run_dir)
            was = state["stores"]
            rundir.check_same_stores(run_dir, was, identities)
            before = int(state.get("world_size", 1))
            if before != dist.world_size:
                if not allow_world_size_change:
                    raise TrainError(f"--resume: {run_dir} was trained by {before} process(es) and this run has "
                                     f"{dist.world_size}; how an epoch's windows are grouped into steps depends on "
                                     f"that, so the result would differ from an uninterrupted run; resume with "
                                     f"{before} process(es), or pass --allow-world-size-change to continue anyway.")
                state.setdefault("world_size_changes", []).append(
                    {"epoch": state["epoch"], "from": before, "to": dist.world_size})
    except GpuFeaturesError as err:  # a held run directory stays a LockError: a sweep tells it from a bad trial
        error = err if isinstance(err, (TrainError, LockError)) else TrainError(str(err))
    try:
        _start_or_refuse(dist, error)
        try:  # windows, loaders and model before the run directory is touched: a refusal here leaves it as it was
            if probe:
                from .targets import parse_targets

                probe = tuple(t.name for t in parse_targets(probe))  # refused before anything is written
            src = WindowSource.from_stores(stores, dist.device, run_cfg.window_length)
            feature_config = stores[0].config.to_dict()
            del stores  # the source holds the one host copy; the stores' own arrays can go
            run = Run(src, identities, run_dir, run_cfg, state, tensors, console, quiet, dist, tensorboard=False,
                      feature_config=feature_config, probe=probe)
        except GpuFeaturesError as err:
            raise (err if isinstance(err, TrainError) else TrainError(str(err))) from None
        dist.barrier()  # every rank has looked at the run directory before rank 0 changes it
        if dist.is_main:
            rundir.start(run_dir, RUN_FILES, resolved(run_cfg, paths, tensorboard, probe), fresh=not resume)
        dist.barrier()
        if tensorboard and run.is_main:
            run.tb = run._tensorboard()  # its folder goes into the run directory, so after run.json
    except BaseException:
        held.close()
        raise
    run.held = held  # the run directory's lock, released by Run.close()
    return run


def train(store_path, run_dir, cfg: TrainConfig | None = None, resume: bool = False, overwrite: bool = False,
          console=None, quiet: bool = True, on_batch: OnBatch | None = None, tensorboard: bool = False,
          allow_world_size_change: bool = False, probe=()) -> dict:
    """Train (or resume) and evaluate; returns the summary (also in ``run_dir/summary.json``).

    Args:
        store_path: a gpu-features store, or a list of them (one dataset).
        run_dir: where checkpoints, ``metrics.jsonl``, the model files and ``summary.json`` go.
        cfg: the run's settings (default :class:`TrainConfig`); with ``resume`` it must match the saved one or be None.
        resume: continue the checkpoint in ``run_dir``.
        overwrite: replace a run already in ``run_dir``.
        console: a rich Console for progress and messages (None: silent).
        on_batch: ``callback(epoch, index, batch, model)`` before each training step (tests use it).
        tensorboard: also log the metrics to ``run_dir/tensorboard`` (needs the ``tensorboard`` package).
        allow_world_size_change, probe: see :func:`prepare`.

    Under torchrun, call it in every process; rank 0 writes the files, every rank returns the summary.
    """
    run = prepare(store_path, run_dir, cfg, resume, overwrite, console, quiet, tensorboard, allow_world_size_change,
                  probe)
    with contextlib.closing(run):
        run.fit(on_batch)
        return run.finish()


__all__ = ["OnBatch", "OnEpoch", "Run", "TIMING_FIELDS", "evaluate", "lr_at", "open_training_store", "prepare",
           "train"]
