"""The downstream probe: is this encoder (or this run's settings) worth anything on a task it was not trained for?

The protocol of self-supervised time-series work (TS2Vec, TS-TCC, PatchTST): freeze the encoder, fit a
linear head on its embeddings, and compare it with the same head on other inputs, all on identical
samples and splits. Arms:

- ``baseline``: no features. The training split's share of up moves for the sign; a ridge on the
  HAR-style lags of the window's own realized volatility for the volatility.
- ``raw``: the head on per-feature summaries of the raw window (mean, deviation and last value of each
  of the 10 features over its valid bars: 30 inputs).
- ``random``: the head on a frozen Jade of the same shape with random initial weights (seeded): what the
  architecture gives without pretraining.
- ``pretrained``: the head on the frozen trained encoder: the linear probe.
- ``finetuned`` (``finetune=True``): the encoder trained further together with a linear head.

Splits are the store's own (train, val, test by time in every series); windows are the run's usable
windows, every ``stride``-th, at most ``max_windows`` per split (evenly spaced). Labels come from
:mod:`train.targets`; :mod:`train.protocol` purges and embargoes them, and its separation check runs
before any head is fitted. Heads are fitted on train, their regularisation chosen on val
(:mod:`train.heads`); numbers are reported for val (what a sweep may rank by) and test (what is
reported), each with a 95% circular block bootstrap interval over samples in time order, with blocks
as long as the samples of ``K + N`` bars, so overlapping windows and labels stay together.

Writes ``probe.json`` (everything, with the protocol) and ``probe.png`` (the headline metric per arm
with its interval) in the run directory; :func:`headline` is what goes into ``summary.json``.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np

from gpu_features.fileio import now_iso, read_json_file, write_json_atomic
from gpu_features.splits import SPLIT_NAMES

from . import heads, protocol
from .config import TrainError
from .embed import EMBED_BATCH, bar_index, embed_starts, encode_windows, run_source, split_starts
from .jade import Jade
from .load import PROBE_JSON, PROBE_PNG, LoadedRun
from .targets import Target, labels, parse_targets, past_volatility, source_closes

PROBE_FORMAT, PROBE_VERSION = "jade-probe", 1
ARMS = ("baseline", "raw", "random", "pretrained", "finetuned")
HEADLINE = {"return-sign": "auc", "realized-vol": "r2"}  # the metric charted and printed first
REPORTED = ("val", "test")


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """How the probe samples, fits and measures (all recorded in ``probe.json``).

    Attributes:
        stride: every ``stride``-th usable window of a split (neighbouring windows share K - 1 bars).
        max_windows: at most this many windows per split, evenly spaced (None: all).
        embargo: bars between splits; None is ``K + N`` per target; less than that is refused.
        resamples: bootstrap resamples of each interval.
        seed: the random arm's weights, the bootstrap and fine-tuning.
        finetune: also fine-tune the encoder with the head (slow on a CPU).
        finetune_epochs: epochs of fine-tuning (the epoch with the best validation loss is kept).
        batch_size: windows per device batch.
    """

    stride: int = 5
    max_windows: int | None = 20_000
    embargo: int | None = None
    resamples: int = 1000
    seed: int = 0
    finetune: bool = False
    finetune_epochs: int = 2
    batch_size: int = EMBED_BATCH

    def __post_init__(self):
        for name, low in (("stride", 1), ("resamples", 10), ("finetune_epochs", 1), ("batch_size", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise TrainError(f"probe {name} must be a whole number >= {low}, got {v!r}.")
        if self.max_windows is not None and (isinstance(self.max_windows, bool) or self.max_windows < 100):
            raise TrainError(f"probe max_windows must be >= 100 (or None: all), got {self.max_windows!r}.")
        if self.embargo is not None and (isinstance(self.embargo, bool) or self.embargo < 0):
            raise TrainError(f"probe embargo must be a whole number of bars >= 0, got {self.embargo!r}.")


def raw_summaries(src, starts, batch_size: int = EMBED_BATCH):
    """``[w, 30] float32``: mean, deviation and last value of each feature over each window's valid bars."""
    import torch

    starts = torch.as_tensor(np.asarray(starts, dtype=np.int64)).to(src.device)
    out = []
    for a in range(0, len(starts), batch_size):
        X, valid = src.gather(starts[a:a + batch_size])
        w = valid.unsqueeze(-1).float()
        n = w.sum(dim=1).clamp(min=1.0)
        Xv = torch.where(valid.unsqueeze(-1), X, 0.0)  # an invalid bar's value (maybe NaN) is never read
        mean = Xv.sum(dim=1) / n
        std = (((Xv - mean.unsqueeze(1)) ** 2 * w).sum(dim=1) / n).sqrt()
        last_idx = (valid.long() * torch.arange(1, X.shape[1] + 1, device=X.device)).argmax(dim=1)
        last = Xv[torch.arange(len(X), device=X.device), last_idx]
        out.append(torch.cat([mean, std, last], dim=1))
    return torch.cat(out) if out else torch.zeros((0, 3 * src.features.shape[1]), device=src.device)


def random_encoder(model: Jade, seed: int) -> Jade:
    """A Jade of ``model``'s shape with seeded random initial weights, frozen, on ``model``'s device."""
    import torch

    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = Jade(model.config)
    return net.to(device).eval()


class _Data:
    """The samples of one probe: candidate windows of every split and each arm's inputs for them."""

    def __init__(self, run: LoadedRun, stores, sources, settings: ProbeSettings, progress, source=None):
        src, opened = run_source(run, stores, source)
        self.src, self.K = src, src.window_length
        self.closes = source_closes(opened, sources)
        self.index = bar_index(opened)
        per = {s: split_starts(run, src, s, settings.stride, settings.max_windows) for s in SPLIT_NAMES}
        self.starts = np.concatenate([per[s] for s in SPLIT_NAMES])
        self.split = src.split_ids[self.starts].astype(np.int64)
        self.split_bars = np.bincount(src.split_ids.astype(np.int64), minlength=len(SPLIT_NAMES))
        progress("embedding with the pretrained encoder")
        self.inputs = {"pretrained": embed_starts(run.model, src, self.starts, settings.batch_size)}
        progress("embedding with a random encoder")
        self.inputs["random"] = embed_starts(random_encoder(run.model, settings.seed), src, self.starts,
                                             settings.batch_size)
        self.inputs["raw"] = raw_summaries(src, self.starts, settings.batch_size)
        self.device = src.device


def _bootstrap_block(n_samples: int, split_bars: int, span: int) -> int:
    """Samples per ``span`` bars of the split (at least 1, at most a tenth of the samples)."""
    return int(min(max(1, math.ceil(n_samples * span / max(split_bars, 1))), max(1, n_samples // 10)))


def _measure(target: Target, y, pred, idx) -> dict:
    metrics = heads.CLASSIFICATION if target.is_classification else heads.REGRESSION
    out = {}
    for name, fn in metrics.items():
        value, low, high = heads.interval(fn, y, pred, idx)
        out[name] = {"value": value, "low": low, "high": high}
    return out


def _finetune(run: LoadedRun, data: _Data, target: Target, rows: dict, y, settings: ProbeSettings, head):
    """Predictions on val and test of the encoder trained further with a linear head (initialised from the
    pretrained probe's head); the epoch with the best validation loss is kept.

    ``rows``: ``{split: [m] int64 numpy}`` sample indices in time order; ``y``: ``[w]`` labels on the device."""
    import torch

    model = copy.deepcopy(run.model).train()
    lin = torch.nn.Linear(2 * model.config.hidden_size, 1).to(data.device)
    with torch.no_grad():  # the pretrained head, folded back from standardised inputs
        w = (head.w / head.scale).float()
        lin.weight.copy_(w.unsqueeze(0))
        lin.bias.copy_((head.b - (head.mean / head.scale) @ head.w).float().reshape(1))
    opt = torch.optim.AdamW([{"params": model.parameters(), "lr": 1e-4}, {"params": lin.parameters(), "lr": 1e-3}],
                            weight_decay=0.0)
    starts = {k: torch.as_tensor(data.starts[v]).to(data.device) for k, v in rows.items()}
    ys = {k: y[torch.as_tensor(v).to(y.device)] for k, v in rows.items()}
    gen = torch.Generator(device="cpu").manual_seed(settings.seed)
    loss_fn = torch.nn.functional.binary_cross_entropy_with_logits if target.is_classification else \
        torch.nn.functional.mse_loss

    def predict(split):
        model.eval()
        out = []
        with torch.no_grad():
            for a in range(0, len(starts[split]), settings.batch_size):
                X, valid = data.src.gather(starts[split][a:a + settings.batch_size])
                out.append(lin(encode_windows(model, X, valid)[0]).squeeze(-1).double())
        model.train()
        z = torch.cat(out)
        return torch.sigmoid(z) if target.is_classification else z

    best, best_loss = None, None
    B = min(256, settings.batch_size)
    for _ in range(settings.finetune_epochs):
        perm = torch.randperm(len(starts["train"]), generator=gen).to(data.device)
        for a in range(0, len(perm), B):
            pick = perm[a:a + B]
            X, valid = data.src.gather(starts["train"][pick])
            z = lin(encode_windows(model, X, valid)[0]).squeeze(-1)
            loss = loss_fn(z, ys["train"][pick].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
        p_val = predict("val")
        v = float(heads.log_loss(ys["val"], p_val) if target.is_classification else heads.mse(ys["val"], p_val))
        if best_loss is None or v < best_loss:
            best_loss, best = v, {"val": p_val, "test": predict("test")}
    return best


def _embargo(settings: ProbeSettings, K: int, target: Target) -> int:
    """Bars between splits for ``target``: K + N, or the setting when it is at least that."""
    N = target.horizon
    if settings.embargo is not None and settings.embargo < K + N:
        raise TrainError(f"--embargo {settings.embargo} is shorter than K + N = {K + N} bars for {target.name}; "
                         "windows of one split would then share bars with labels of another; use at least that.")
    return K + N if settings.embargo is None else settings.embargo


def probe_target(run: LoadedRun, data: _Data, target: Target, settings: ProbeSettings, progress) -> dict:
    """Every arm of one target on identical samples; the record of ``probe.json["targets"][name]``."""
    import torch

    K, N = data.K, target.horizon
    embargo = _embargo(settings, K, target)
    ends = data.starts + K - 1
    lab = labels(data.closes, data.src.segment_bounds, ends, target)
    counts, keep = {}, np.zeros(len(data.starts), dtype=bool)
    for k, name in enumerate(SPLIT_NAMES):
        at = data.split == k
        sel = protocol.select(data.starts[at], K, N, data.src.split_ids, data.src.segment_bounds,
                              lab.past_segment[at], lab.degenerate[at], embargo)
        keep[np.flatnonzero(at)[sel.keep]] = True
        counts[name] = sel.counts
        if sel.counts["used"] < 20:
            raise TrainError(f"{target.name}: only {sel.counts['used']} usable {name} samples ({sel.counts}); the "
                             "probe needs more windows: a lower --stride, a larger --max-windows or more bars.")
    protocol.check_separation(data.starts[keep], K, N, data.src.split_ids, data.src.segment_bounds, embargo)
    # samples in time order (then series), so bootstrap blocks are stretches of time
    order = np.flatnonzero(keep)
    order = order[np.lexsort((data.index.symbol_of(data.starts[order]), data.index.time[ends[order]]))]
    rows = {name: order[data.split[order] == k] for k, name in enumerate(SPLIT_NAMES)}
    dev = data.device
    y = torch.as_tensor(lab.y).to(dev)
    rows_t = {k: torch.as_tensor(v).to(dev) for k, v in rows.items()}
    ys = {k: y[v] for k, v in rows_t.items()}
    block = {s: _bootstrap_block(len(rows[s]), int(data.split_bars[k + 1]), K + N) for k, s in enumerate(REPORTED)}
    idx = {s: heads.block_bootstrap(len(rows[s]), block[s], settings.resamples, settings.seed + k, dev)
           for k, s in enumerate(REPORTED)}
    preds, lam, tried, arms_in = {}, {}, {}, {}
    if target.is_classification:  # the prior: every sample gets the training split's share of up moves
        preds["baseline"] = {s: ys["train"].mean().expand(len(rows[s])) for s in REPORTED}
    else:
        arms_in["baseline"] = torch.as_tensor(past_volatility(data.closes, ends, K, N)).to(dev)
    arms_in.update({a: data.inputs[a] for a in ("raw", "random", "pretrained")})
    fitted = {}
    for arm, Z in arms_in.items():
        Zs = {k: Z[v] for k, v in rows_t.items()}
        head, tried[arm] = heads.fit_head(Zs["train"], ys["train"], Zs["val"], ys["val"], target.is_classification)
        lam[arm], fitted[arm] = head.lam, head
        preds[arm] = {s: head.predict(Zs[s]) for s in REPORTED}
    if settings.finetune:
        progress(f"fine-tuning for {target.name}")
        preds["finetuned"] = _finetune(run, data, target, rows, y, settings, fitted["pretrained"])
    result = {s: {arm: _measure(target, ys[s], p[s], idx[s]) for arm, p in preds.items()} for s in REPORTED}
    out = {"kind": target.kind, "horizon": N, "embargo_bars": embargo, "samples": counts,
           "bootstrap_block_samples": block, "lambda": lam,
           "validation_loss_by_lambda": {a: {f"{k:g}": v for k, v in t.items()} for a, t in tried.items()},
           "validation": result["val"], "test": result["test"]}
    if target.is_classification:
        out["up_share"] = {s: float(ys[s].mean()) for s in SPLIT_NAMES}
    return out


def run_probe(run: LoadedRun, targets, stores=None, sources=None, settings: ProbeSettings | None = None,
              progress=None, source=None) -> dict:
    """The probe of ``run`` on ``targets`` (``["return-sign:5", ...]``); returns the ``probe.json`` record.

    Args:
        stores: stores to probe on (default: the run's own); each must have the run's feature config.
        sources: bar files replacing the stores' recorded sources (one store only), as ``verify --source``.
        progress: ``callback(message)`` as each stage starts.
        source: the stores' WindowSource already on the model's device (a training run probing itself at
            its end: no second copy of the features).

    Raises:
        TrainError: a bad target or setting, a store of other features, sources that cannot be re-read,
            too few samples.
        protocol.LeakageError: the kept samples break the embargo (a bug; never reported as a result).
    """
    settings = settings or ProbeSettings()
    targets = parse_targets(targets)
    if not targets:
        raise TrainError("the probe needs at least one --target (return-sign:N or realized-vol:N).")
    for target in targets:  # refused before anything is read
        _embargo(settings, run.window_length, target)
    progress = progress or (lambda message: None)
    progress("reading the stores and their source bars")
    data = _Data(run, stores, sources, settings, progress, source)
    record = {"format": PROBE_FORMAT, "version": PROBE_VERSION, "created": now_iso(), "run_dir": str(run.run_dir),
              "stores": [str(p) for p in (stores or run.stores)], "window_length": data.K,
              "settings": dataclasses.asdict(settings),
              "protocol": {
                  "splits": "the store's train / val / test periods; heads fitted on train, regularisation "
                            "chosen on val, numbers for val and test",
                  "windows": f"the run's usable windows, every {settings.stride}-th, at most "
                             f"{settings.max_windows or 'all'} per split, evenly spaced",
                  "purge": "samples whose label reaches into another split are dropped",
                  "embargo": "samples starting fewer than embargo_bars (K + N unless set) bars into their split "
                             "are dropped",
                  "heads": "L2 logistic regression (sign) or ridge (volatility) on standardised inputs, "
                           f"lambda in {list(heads.LAMBDAS)} chosen by validation loss",
                  "interval": f"95% circular block bootstrap over samples in time order, {settings.resamples} "
                              "resamples, blocks of the samples of K + N bars",
                  "arms": {"baseline": "prior share (sign) / ridge on HAR-style past realized volatility",
                           "raw": "mean, deviation, last value of each feature over the window's valid bars",
                           "random": f"frozen Jade of the same shape, random weights (seed {settings.seed})",
                           "pretrained": "frozen trained encoder, mean of last-layer states over valid bars",
                           "finetuned": "the encoder trained further with the head (only with finetune)"}},
              "targets": {}}
    for target in targets:
        progress(f"fitting heads for {target.name}")
        record["targets"][target.name] = probe_target(run, data, target, settings, progress)
    return record


def headline(record: dict) -> dict:
    """What ``summary.json["probe"]`` holds: per target, the val and test metrics of every arm (with their
    intervals), the samples used per split and the embargo. Sweeps rank by the validation numbers."""
    return {name: {"validation": t["validation"], "test": t["test"], "embargo_bars": t["embargo_bars"],
                   "samples": {s: c["used"] for s, c in t["samples"].items()}}
            for name, t in record["targets"].items()}


# --- the run directory's files ---------------------------------------------------------------------------


def write_probe(record: dict, run_dir, chart: bool = True) -> list[Path]:
    """``probe.json`` (replacing only an earlier probe of ours) and, when matplotlib is there, ``probe.png``.

    Returns the files written.
    """
    run_dir = Path(run_dir)
    path = run_dir / PROBE_JSON
    if path.exists() or path.is_symlink():
        old = read_json_file(path, "a probe record", "move it away, then probe again.", TrainError) \
            if path.is_file() and not path.is_symlink() else None
        if not isinstance(old, dict) or old.get("format") != PROBE_FORMAT:
            raise TrainError(f"{path} exists and is not a probe record of ours; refusing to replace it, move it away "
                             "and probe again.")
    write_json_atomic(path, record)
    written = [path]
    if chart:
        png = draw_probe(record, run_dir / PROBE_PNG)
        if png is not None:
            written.append(png)
    return written


def draw_probe(record: dict, out, dpi: int = 100) -> Path | None:
    """The headline metric of every arm on the test split with its interval, one panel per target (None
    when matplotlib is missing: the chart is optional, the numbers are in ``probe.json``)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gpu_features.plot import check_png, save_png

    out = check_png(out, "probe chart")
    names = list(record["targets"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        t = record["targets"][name]
        metric = HEADLINE[t["kind"]]
        arms = [a for a in ARMS if a in t["test"]]
        vals = [t["test"][a][metric] for a in arms]
        y = [v["value"] for v in vals]
        err = [[v["value"] - v["low"] for v in vals], [v["high"] - v["value"] for v in vals]]
        ax.errorbar(range(len(arms)), y, yerr=np.nan_to_num(np.array(err)), fmt="o", capsize=4)
        ax.axhline(t["test"]["baseline"][metric]["value"], ls="--", c="grey", lw=0.8)
        if metric == "auc":
            ax.axhline(0.5, ls=":", c="k", lw=0.8)
        ax.set_xticks(range(len(arms)), arms, rotation=20)
        ax.set_title(f"{name}: {metric} on test (95% block bootstrap)", fontsize=9)
    fig.tight_layout()
    try:
        return save_png(fig, out, dpi)
    finally:
        plt.close(fig)


def probe_tables(record: dict) -> list:
    """One rich table per target: arms as rows, each metric on test as ``value [low, high]``, and the
    headline metric on val beside it."""
    from rich.table import Table

    tables = []
    for name, t in record["targets"].items():
        metrics = list(next(iter(t["test"].values())))
        head = HEADLINE[t["kind"]]
        c = t["samples"]
        tab = Table(title=f"{name}: test {c['test']['used']:,} / val {c['val']['used']:,} / train "
                          f"{c['train']['used']:,} samples, embargo {t['embargo_bars']} bars (95% block bootstrap)")
        tab.add_column("arm")
        for m in metrics:
            tab.add_column(f"{m} test", justify="right", no_wrap=True)
        tab.add_column(f"{head} val", justify="right", no_wrap=True)
        for arm in ARMS:
            if arm not in t["test"]:
                continue
            cells = [_cell(t["test"][arm][m]) for m in metrics]
            tab.add_row(arm, *cells, f"{t['validation'][arm][head]['value']:.3f}")
        tables.append(tab)
    return tables


def _cell(v: dict) -> str:
    return f"{v['value']:.3f} [{v['low']:.3f}, {v['high']:.3f}]"


def protocol_lines(record: dict) -> list[str]:
    """What was removed and why, per target and split, in words."""
    out = []
    for name, t in record["targets"].items():
        parts = []
        for s, c in t["samples"].items():
            parts.append(f"{s} {c['windows']:,} windows: {c['past_segment']} past their series, {c['degenerate']} "
                         f"{'with no sign (zero return)' if t['kind'] == 'return-sign' else 'with zero volatility'}, "
                         f"{c['purged']} purged, {c['embargoed']} embargoed, {c['used']:,} used")
        out.append(f"{name}: " + "; ".join(parts))
    return out


__all__ = ["ARMS", "HEADLINE", "PROBE_FORMAT", "ProbeSettings", "draw_probe", "headline", "probe_tables",
           "protocol_lines", "raw_summaries", "random_encoder", "run_probe", "write_probe"]
