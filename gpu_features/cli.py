"""``gpu-features``: precompute | verify | inspect | export | plot: the command line over the library.

Every command has ``--help``. Exit status: 0 success, 1 verification failed
or could not be completed, 2 bad input (one line saying what, where, which
rule and how to fix it), 130 interrupted.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import synthetic
from .bars import POLICIES, READERS
from .config import FeatureConfig
from .engines import ENGINE_CHOICES
from .errors import ConfigError, GpuFeaturesError
from .splits import SPLIT_NAMES, iso_time
from .store import OVERLAP_POLICIES, SHARD_BARS

DEFAULT_STORE = "data/features/demo"
EXPORT_LAYOUTS = ("seed",)  # what `export --layout` writes
console = Console()
err_console = Console(stderr=True)


# --- shared argument helpers ---------------------------------------------------------------


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per FeatureConfig field (``--ema-period``...), plus ``--config FILE.json`` and ``--no-hybrid``."""
    g = p.add_argument_group("feature config (FEATURES.md; defaults in brackets)")
    g.add_argument("--config", metavar="FILE", help="JSON file with FeatureConfig fields; flags below override it")
    for f in dataclasses.fields(FeatureConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            g.add_argument(flag, dest=f.name, action="store_true", default=None, help=f"[{f.default}]")
            g.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                           help=f"turn {f.name} off")
        else:
            typ = int if f.type in (int, "int") else float
            g.add_argument(flag, dest=f.name, type=typ, default=None, metavar=typ.__name__.upper(),
                           help=f"[{f.default}]")


def config_from_args(args) -> FeatureConfig:
    data = {}
    if args.config:
        try:
            data = json.loads(Path(args.config).read_text())
        except OSError as err:
            raise ConfigError(f"--config {args.config}: cannot read it ({err.strerror}).") from None
        except json.JSONDecodeError as err:
            raise ConfigError(f"--config {args.config}: not valid JSON ({err}).") from None
        if not isinstance(data, dict):
            raise ConfigError(f"--config {args.config}: must hold a JSON object of FeatureConfig fields.")
    for f in dataclasses.fields(FeatureConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            data[f.name] = value
    return FeatureConfig.from_dict(data)


class RichProgress:
    """Adapter from the library's ``progress(stage, done, total)`` callbacks to one rich bar per stage."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def progress_bars(quiet: bool, console: Console = err_console) -> Progress:
    """The rich progress display of every command (wrap it in :class:`RichProgress` for the library)."""
    return Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=console, transient=False, disable=quiet)


# --- precompute -----------------------------------------------------------------------------


def cmd_precompute(args) -> int:
    from .splits import parse_fractions
    from .store import append_store, precompute

    if args.append:
        given = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(FeatureConfig)
                 if getattr(args, f.name, None) is not None]
        given += [flag for flag, on in (("--config", args.config), ("--input", args.input),
                                        ("--overwrite", args.overwrite), ("--reader", args.reader),
                                        ("--split-dates", args.split_dates),
                                        ("--split-fractions", args.split_fractions)) if on]
        if given:
            raise GpuFeaturesError(f"--append continues the store's own config, input layout and splits, so "
                                   f"{', '.join(given)} cannot be used with it; drop those flags.")
    cfg = config_from_args(args)
    if args.split_dates and args.split_fractions:
        raise GpuFeaturesError("give either --split-dates or --split-fractions, not both.")
    splits = ({"dates": args.split_dates} if args.split_dates else
              {"fractions": parse_fractions(args.split_fractions)} if args.split_fractions else None)
    if args.append:
        with progress_bars(args.quiet) as prog:
            st = append_store(args.output, args.append, engine=args.engine, on_bad_bars=args.on_bad_bars,
                              on_overlap=args.on_overlap, shard_bars=args.shard_bars, progress=RichProgress(prog))
        _print_store_summary(st, "appended to")
        return 0
    if args.input:
        source = args.input
    else:
        source = synthetic.generate(args.synthetic_bars, args.symbols, args.seed)
    with progress_bars(args.quiet) as prog:
        st = precompute(source, args.output, config=cfg, engine=args.engine, shard_bars=args.shard_bars,
                        splits=splits, overwrite=args.overwrite, on_bad_bars=args.on_bad_bars,
                        progress=RichProgress(prog), reader=args.reader or "auto")
    _print_store_summary(st, "wrote")
    return 0


def _phases(timings: dict) -> str:
    """``read 0.10, compute 0.03, ...``: every recorded phase in order (they add up to ``total_s``)."""
    return ", ".join(f"{k[:-2]} {v:.2f}" for k, v in timings.items() if k.endswith("_s") and k != "total_s")


def _print_store_summary(st, verb: str) -> None:
    t, eng = st.timings, st.engine
    console.print(f"[bold green]{verb}[/] {st.path}: {st.n_bars:,} bars, {len(st.symbols)} symbol(s), "
                  f"{len(st.shards)} shard(s), {st.bytes_on_disk / 1e6:.1f} MB")
    ingests = [src.get("ingest", {}) for src in st.sources]
    readers = sorted({i["reader"] for i in ingests if "reader" in i})
    notes = sorted({f" (cudf handed over: {i['reader_note']})" for i in ingests if "reader_note" in i})
    console.print(f"engine [bold]{eng['name']}[/] ({eng['chunks']} chunks, {eng['fixups']} fix-ups, kernels "
                  f"{eng['kernel_seconds'] * 1e3:.1f} ms); "
                  + (f"read with [bold]{', '.join(readers)}[/]{''.join(notes)}; " if readers else "")
                  + f"total {t['total_s']:.2f} s ({_phases(t)})")
    table = Table(title="splits")
    for col in ("split", "from", "to", "bars", "windows"):
        table.add_column(col, justify="right" if col in ("bars", "windows") else "left")
    for name, (a, b) in zip(SPLIT_NAMES, st.splits["boundaries"]):
        c = st.splits["counts"][name]
        table.add_row(name, iso_time(a)[:16] if a is not None else "-", iso_time(b)[:16] if b is not None else "-",
                      f"{c['bars']:,}", f"{c['windows']:,}")
    console.print(table)


# --- verify ---------------------------------------------------------------------------------


def cmd_verify(args) -> int:
    from .verify import verify_store

    with progress_bars(args.quiet) as prog:
        report = verify_store(args.store, sources=args.source, sample_bars=args.sample_bars, seed=args.seed,
                              progress=RichProgress(prog))
    table = Table(title=f"verify {args.store}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for c in report.checks:
        mark = {True: "[green]ok[/]", False: "[red]FAILED[/]", None: "[yellow]not run[/]"}[c.ok]
        table.add_row(c.name, mark, c.detail)
    console.print(table)
    colour = "green" if report.ok else "red"
    console.print(f"[bold {colour}]{report.verdict}[/]: {report.bars_recomputed:,} bars recomputed bit for bit")
    return 0 if report.ok else 1


# --- inspect --------------------------------------------------------------------------------


def cmd_inspect(args) -> int:
    from .inspection import inspect_store, render

    result = inspect_store(args.store, symbol=args.symbol)
    render(result, console)
    return 0


# --- export -------------------------------------------------------------------------------


def cmd_export(args) -> int:
    from .seed import ExportError, export_seed, plan
    from .store import open_store

    if args.stride < 1:
        raise ExportError(f"--stride must be >= 1, got {args.stride}.")
    st = open_store(args.store)
    splits = tuple(s for s in SPLIT_NAMES if s in (args.split or SPLIT_NAMES))
    p = plan(st, splits, args.stride)
    console.print(f"export {st.path} -> {args.output} (layout {args.layout}): {p['n_windows']:,} windows of "
                  f"{p['K']} bars from {', '.join(splits)} = [bold]{p['bytes'] / 1e9:.2f} GB[/]")
    with progress_bars(args.quiet, console) as prog:
        meta = export_seed(st, args.output, splits, args.stride, yes=args.yes, overwrite=args.overwrite,
                           progress=RichProgress(prog))
    console.print(f"[bold green]wrote[/] {args.output}: features_10d.npy [{meta['n_windows']}, {meta['window_length']}, "
                  f"10], valid_mask.npy, metadata.json, splits.json "
                  f"({', '.join(f'{k} {v:,}' for k, v in meta['windows'].items())})")
    return 0


# --- plot -----------------------------------------------------------------------------------


def cmd_plot(args) -> int:
    from .plot import DEFAULT_FEATURES, chart_data, render

    features = args.features.split(",") if args.features else list(DEFAULT_FEATURES)
    data = chart_data(args.store, symbol=args.symbol, start=args.start, end=args.end, last=args.last,
                      features=features, sources=args.source)
    out = render(data, args.out)
    console.print(f"[bold green]wrote[/] {out}: {data.symbol}, {len(data.bars)} bars, {len(data.swings)} confirmed "
                  f"swings, {int((~data.valid).sum())} invalid bars, panels {', '.join(features)}")
    return 0


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu-features",
                                description="GPU-native relativity-10 features for intraday futures bars.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pre = sub.add_parser("precompute", help="compute features of bars and write a store",
                         description="Compute the relativity-10 features of bars (a parquet/CSV file, or the "
                                     "embedded synthetic set) and write a verified safetensors store.")
    pre.add_argument("--input", metavar="FILE", help="bars as parquet or CSV (default: embedded synthetic bars)")
    pre.add_argument("--output", metavar="DIR", default=DEFAULT_STORE, help=f"store directory [{DEFAULT_STORE}]")
    pre.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help="[auto: gpu, then host, then reference]")
    pre.add_argument("--overwrite", action="store_true", help="replace an existing store (only by a complete new one)")
    pre.add_argument("--on-bad-bars", choices=POLICIES, default="error",
                     help="bad-bar policy [error]")
    pre.add_argument("--reader", choices=READERS, default=None,
                     help="how --input is read [auto: cudf for parquet where cudf imports, else pyarrow]")
    pre.add_argument("--shard-bars", type=int, default=SHARD_BARS, metavar="N", help=f"bars per shard [{SHARD_BARS}]")
    pre.add_argument("--split-fractions", metavar="A,B,C", help="chronological train,val,test fractions [0.9,0.05,0.05]")
    pre.add_argument("--split-dates", metavar="VAL,TEST", help="chronological split dates (UTC): val start, test start")
    pre.add_argument("--synthetic-bars", type=int, default=synthetic.DEFAULT_BARS, metavar="N",
                     help=f"bars per symbol of the synthetic set [{synthetic.DEFAULT_BARS}]")
    pre.add_argument("--symbols", type=int, default=1, metavar="N", help="symbols of the synthetic set [1]")
    pre.add_argument("--seed", type=int, default=0, help="seed of the synthetic set [0]")
    pre.add_argument("--append", metavar="FILE", help="append newer bars from FILE to the store at --output")
    pre.add_argument("--on-overlap", choices=OVERLAP_POLICIES, default="error",
                     help="with --append: bars at or before a series' last stored bar [error]")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_arguments(pre)
    pre.set_defaults(func=cmd_precompute)

    ver = sub.add_parser("verify", help="recompute sampled bars from the source and compare bits",
                         description="Check a store: structure, checksums, content, source, and values "
                                     "recomputed with the reference engine bit for bit.")
    ver.add_argument("store", nargs="?", default=DEFAULT_STORE, help=f"store directory [{DEFAULT_STORE}]")
    ver.add_argument("--source", action="append", metavar="FILE",
                     help="bar file(s) to use instead of the manifest's sources, in order")
    ver.add_argument("--sample-bars", type=int, default=10_000, metavar="N", help="least bars to recompute [10000]")
    ver.add_argument("--seed", type=int, default=0, help="seed of the sampled intervals [0]")
    ver.add_argument("--quiet", action="store_true", help="no progress bars")
    ver.set_defaults(func=cmd_verify)

    ins = sub.add_parser("inspect", help="summary, statistics, swing rates and warnings",
                         description="Print a store's manifest summary, per-feature statistics, swing "
                                     "confirmation rates and warnings with the setting to try.")
    ins.add_argument("store", nargs="?", default=DEFAULT_STORE, help=f"store directory [{DEFAULT_STORE}]")
    ins.add_argument("--symbol", help="one symbol only")
    ins.set_defaults(func=cmd_inspect)

    exp = sub.add_parser("export", help="write a store's windows in the old pipeline's layout",
                         description="Materialize a store's usable windows as the old pipeline's "
                                     "features_10d.npy [N,K,10], valid_mask.npy [N,K], metadata.json and "
                                     "splits.json. States the size first; above 1 GB it needs --yes.")
    exp.add_argument("store", help="store directory")
    exp.add_argument("--layout", choices=EXPORT_LAYOUTS, default="seed", help="[seed]")
    exp.add_argument("--output", required=True, metavar="DIR", help="new directory for the files")
    exp.add_argument("--split", action="append", choices=SPLIT_NAMES,
                     help="export only this split (repeatable) [all three]")
    exp.add_argument("--stride", type=int, default=1, metavar="N", help="every N-th usable window [1]")
    exp.add_argument("--yes", action="store_true", help="confirm an export above 1 GB")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing seed-layout export at --output")
    exp.add_argument("--quiet", action="store_true", help="no progress bar")
    exp.set_defaults(func=cmd_export)

    plt = sub.add_parser("plot", help="candlesticks with swings, invalid bars and feature panels (PNG)",
                         description="Chart one symbol of a store: candlesticks, each confirmed swing at its "
                                     "extreme bar and at the bar that confirmed it, invalid bars shaded, and "
                                     "one panel per chosen feature. Needs matplotlib (extra 'plot').")
    plt.add_argument("store", nargs="?", default=DEFAULT_STORE, help=f"store directory [{DEFAULT_STORE}]")
    plt.add_argument("--symbol", help="which symbol [the first]")
    plt.add_argument("--start", metavar="TIME", help="first time shown (ISO 8601, UTC)")
    plt.add_argument("--end", metavar="TIME", help="time after the last bar shown (ISO 8601, UTC)")
    plt.add_argument("--last", type=int, metavar="N", help="the last N bars [300 when no --start/--end]")
    plt.add_argument("--features", metavar="A,B", help="feature panels [range_z,dist_to_prev_SH,dist_to_prev_SL,"
                                                       "bars_since_SH_norm]")
    plt.add_argument("--source", action="append", metavar="FILE", help="bar file(s) replacing the manifest's sources")
    plt.add_argument("--out", default="chart.png", metavar="PNG", help="output file [chart.png]")
    plt.set_defaults(func=cmd_plot)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(lambda: args.func(args), err_console, "interrupted; nothing half-written was left behind")


def guarded(call, err_console, interrupted: str) -> int:
    """Run a command: a refusal prints its one line and gives exit 2, Ctrl-C gives 130."""
    try:
        return call()
    except GpuFeaturesError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print(interrupted)
        return 130


if __name__ == "__main__":
    sys.exit(main())
