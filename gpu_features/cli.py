"""``gpu-features``: precompute | verify | inspect | export | plot | doctor: the command line over the library.

Every command has ``--help``. Exit status: 0 success; 1 verification failed
(only ``verify``); 2 bad input or environment (one line saying what, where,
which rule and how to fix it: a bad file or flag, a store that fails its
checks, a full disk, a folder that cannot be written, another writer holding
the store); 3 internal error (a bug: one line naming the file the traceback
was written to, please report it); 130 interrupted. Output that is not a
terminal (logs, CI) is printed at :data:`LOG_WIDTH` columns, so lines never
break mid-phrase.
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import sys
import tempfile
import traceback

from rich.console import Console
from rich.markup import escape as escape_markup
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import synthetic
from .bars import DEFAULT_MAX_DROP_FRACTION, POLICIES, READERS
from .config import FeatureConfig
from .engines import ENGINE_CHOICES
from .errors import ConfigError, GpuFeaturesError, printable
from .formats import FORMATS
from .options import OneLineParser, character, count, number
from .splits import SPLIT_NAMES, iso_time
from .store import OVERLAP_POLICIES, SHARD_BARS

DEFAULT_STORE = "data/features/demo"
EXPORT_LAYOUTS = ("seed", "parquet")  # what `export --layout` writes
LOG_WIDTH = 200  # columns of output that is not a terminal (rich would cut it at 80)
EXIT_OK, EXIT_VERIFY_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def make_console(stderr: bool = False) -> Console:
    """A rich console: the terminal's width on a terminal, :data:`LOG_WIDTH` columns elsewhere (unless
    ``COLUMNS`` says otherwise), so summaries in logs and CI are not broken at 80 columns."""
    c = Console(stderr=stderr)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(stderr=stderr, width=LOG_WIDTH)
    return c


console = make_console()
err_console = make_console(stderr=True)


def escape(text) -> str:
    """Text from data or a library (paths, symbols, messages) for a rich console: control characters escaped
    (:func:`~gpu_features.errors.printable`), markup brackets kept literal."""
    return escape_markup(printable(text))


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` wrapped at spaces only: flag lists and file names are never broken inside a word."""

    def _split_lines(self, text, width):
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)


# --- shared argument helpers ---------------------------------------------------------------


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per FeatureConfig field (``--ema-period``...), plus ``--config FILE.json``; a bool field is a
    ``--hybrid`` / ``--no-hybrid`` switch pair."""
    g = p.add_argument_group("feature config (FEATURES.md; defaults in brackets)")
    g.add_argument("--config", metavar="FILE", help="JSON file with FeatureConfig fields; flags below override it")
    for f in dataclasses.fields(FeatureConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            # --hybrid / --no-hybrid: a switch takes no value, and its help says which way is the default.
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                           help=f"turn {f.name.replace('_', ' ')} on or off [{'on' if f.default else 'off'}]")
        else:
            typ = int if f.type in (int, "int") else float
            g.add_argument(flag, dest=f.name, type=count() if typ is int else number(), default=None,
                           metavar=typ.__name__.upper(), help=f"[{f.default}]")


def add_no_checksums(p: argparse.ArgumentParser) -> None:
    """``--no-checksums``: the one opt-out of hashing a store on open (inspect, plot, export)."""
    p.add_argument("--no-checksums", action="store_true",
                   help="skip the SHA-256 of shards and state file on open (sizes, headers and shapes are still "
                        "checked; for very large trusted stores)")


def config_from_args(args) -> FeatureConfig:
    from .fileio import MAX_CONFIG_BYTES, read_json_file

    data = {}
    if args.config:
        data = read_json_file(args.config, "a FeatureConfig file", "give --config a JSON object of FeatureConfig "
                              "fields.", ConfigError, MAX_CONFIG_BYTES, label=f"--config {args.config}")
        if not isinstance(data, dict):
            raise ConfigError(f"--config {args.config}: must hold a JSON object of FeatureConfig fields.")
    given = {}
    for f in dataclasses.fields(FeatureConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            data[f.name] = given[f.name] = value
    try:
        return FeatureConfig.from_dict(data)
    except ConfigError as err:  # name the flag that set the refused field
        field = next((name for name in given if f"FeatureConfig.{name} " in str(err)), None)
        if field is not None:
            raise ConfigError(f"--{field.replace('_', '-')} {given[field]}: {err}") from None
        if args.config:  # the file set it
            raise ConfigError(f"--config {args.config}: {err}") from None
        raise


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
    from .store import append_dataset, append_store, is_dataset, precompute

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
    read_options = read_options_from_args(args)
    if (args.distributed or args.workers is not None or args.scheduler or args.symbols_per_task is not None
            or args.bars_per_task is not None):
        return _precompute_distributed(args, cfg, splits, read_options)
    if args.append and is_dataset(args.output):
        with progress_bars(args.quiet) as prog:
            st = append_dataset(args.output, args.append, engine=args.engine, on_bad_bars=args.on_bad_bars,
                                on_overlap=args.on_overlap, shard_bars=args.shard_bars, progress=RichProgress(prog),
                                read_options=read_options)
        _print_store_summary(st, "appended to dataset")
        return 0
    if args.append:
        with progress_bars(args.quiet) as prog:
            st = append_store(args.output, args.append, engine=args.engine, on_bad_bars=args.on_bad_bars,
                              on_overlap=args.on_overlap, shard_bars=args.shard_bars, progress=RichProgress(prog),
                              read_options=read_options)
        _print_store_summary(st, "appended to")
        return 0
    if args.input:
        source = [p for group in args.input for p in group]
    else:
        source = synthetic.generate(args.synthetic_bars, args.symbols, args.seed)
    with progress_bars(args.quiet) as prog:
        st = precompute(source, args.output, config=cfg, engine=args.engine, shard_bars=args.shard_bars,
                        splits=splits, overwrite=args.overwrite, on_bad_bars=args.on_bad_bars,
                        progress=RichProgress(prog), reader=args.reader or "auto",
                        read_options=dict(read_options or {}, on_overlap=args.on_overlap))
    _print_store_summary(st, "wrote")
    return 0


def _precompute_distributed(args, cfg, splits, read_options) -> int:
    """``precompute --distributed``: a dataset built on a Dask cluster (gpu_features.distributed, the only
    module that imports Dask, is imported here and nowhere on the single-machine path)."""
    if not args.distributed:
        raise GpuFeaturesError("--workers, --scheduler, --symbols-per-task and --bars-per-task belong to "
                               "--distributed; add it.")
    if args.append:
        raise GpuFeaturesError("--append extends a dataset on this machine; drop --distributed (new bars go to the "
                               "parts of their symbols).")
    if not args.input:
        raise GpuFeaturesError("--distributed needs --input: bar files, a directory or a glob like "
                               "'data/**/*.parquet'.")
    from .distributed import build_dataset

    inputs = [p for group in args.input for p in group]
    with progress_bars(args.quiet) as prog:
        st = build_dataset(inputs, args.output, config=cfg, engine=args.engine, splits=splits,
                           overwrite=args.overwrite, on_bad_bars=args.on_bad_bars, reader=args.reader or "auto",
                           shard_bars=args.shard_bars, symbols_per_task=args.symbols_per_task,
                           **({} if args.bars_per_task is None else {"bars_per_task": args.bars_per_task}),
                           workers=args.workers,
                           scheduler=args.scheduler, progress=RichProgress(prog),
                           read_kwargs=dict(read_options or {}, on_overlap=args.on_overlap))
    _print_store_summary(st, "wrote dataset")
    return 0


def read_options_from_args(args) -> dict | None:
    """``read_bars`` keywords of the input flags that were given (None when none was)."""
    from .readers import ReadOptions

    opts = {}
    for flag in ("format", "time_column", "date_column", "time_format", "timezone", "symbol_column", "roll_column",
                 "delimiter", "price_scale"):
        if getattr(args, flag, None) is not None:
            opts[flag] = getattr(args, flag)
    if args.format == "auto":
        opts.pop("format")
    if args.no_header:
        opts["header"] = False
    if args.columns:
        opts["columns"] = tuple(c.strip() for c in args.columns.split(","))
    if args.rename:
        pairs = {}
        for item in args.rename:
            if "=" not in item:
                raise GpuFeaturesError(f"--rename {item!r}: write FILE_COLUMN=OURS, e.g. --rename Last=close.")
            theirs, ours = item.split("=", 1)
            pairs[theirs.strip()] = ours.strip()
        opts["rename"] = pairs
    kw = {"options": ReadOptions(**opts)} if opts else {}
    if args.allow_nonpositive_prices:
        kw["allow_nonpositive"] = True
    if args.max_drop_fraction is not None:
        kw["max_drop_fraction"] = args.max_drop_fraction
    return kw or None


def _print_ingest(sources) -> None:
    """Dropped, repaired and skipped bars and ingest warnings, on screen (not only in the manifest)."""
    for src in sources:
        ing = src.get("ingest", {})
        parts = [f"dropped {r['count']:,} ({rule}; first rows {', '.join(r.get('first_rows_named') or map(str, r['first_rows']))})"
                 for rule, r in ing.get("dropped", {}).items()]
        parts += [f"repaired {r['count']:,} ({rule})" for rule, r in ing.get("repaired", {}).items()]
        if "skipped_overlap" in ing:
            parts.append(f"skipped {ing['skipped_overlap']['count']:,} bar(s) repeated identically across files")
        if ing.get("roll_segments"):
            parts.append(f"cut at {ing['roll_segments']} roll(s)")
        read = src.get("read", {})
        if read.get("format") or read.get("timezone"):
            parts.append(f"format {read.get('format', 'generic')}"
                         + (f", times in {read['timezone']} stored as UTC" if read.get("timezone") else ""))
        if "rows_read" in ing:
            console.print(escape(f"ingest: {ing['rows_read']:,} rows read, {ing.get('bars', 0):,} bars kept"
                                 + ("; " + "; ".join(parts) if parts else "")), highlight=False, soft_wrap=True)
        for w in ing.get("warnings", []):
            err_console.print(f"[bold yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)


def _print_store_summary(st, verb: str) -> None:
    """What a precompute or an append did: size, the engine and timings of THIS run, what ingest read,
    dropped or repaired, the splits, and a warning for every split without windows."""
    run = st.appends[-1] if verb == "appended to" and st.appends else None
    # a dataset append touches several parts: its own record sums them (new bars, overlapping ones skipped)
    ds_run = st.record["build"]["appends"][-1] if verb == "appended to dataset" else None
    eng, t = (run["engine"], run["timings"]) if run else (ds_run["engine"], ds_run["timings"]) if ds_run \
        else (st.engine, st.timings)
    parts = getattr(st, "parts", None)  # a dataset
    console.print(f"[bold green]{verb}[/] {escape(str(st.path))}: {st.n_bars:,} bars, {len(st.symbols)} symbol(s), "
                  + (f"{len(parts)} part(s), " if parts is not None else "")
                  + f"{len(st.shards)} shard(s), {st.bytes_on_disk / 1e6:.1f} MB"
                  + (f" ({run['bars']:,} new bars, {run['skipped_overlap']:,} overlapping skipped)" if run else "")
                  + (f" ({ds_run['new_bars']:,} new bars, {ds_run['skipped_overlap']:,} overlapping skipped)"
                     if ds_run else ""),
                  soft_wrap=True)
    sources = [st.sources[run["source"]]] if run else st.sources
    if parts is not None and "scan_s" in t:
        b = st.record["build"]
        console.print(f"{len(b['inputs'])} input file(s) in {b['tasks']} task(s) on {b['cluster']['scheduler']} "
                      f"({b['cluster']['workers'] or '?'} worker(s)): scan {t['scan_s']:.2f} s, tasks "
                      f"{t['tasks_s']:.2f} s; read, compute and write below are summed over the tasks")
    if parts is not None:  # a dataset: one line for every source, then those that dropped, repaired or warned
        ingest = [src.get("ingest", {}) for src in sources]
        console.print(f"ingest: {sum(i.get('rows_read', 0) for i in ingest):,} rows read from {len(sources)} "
                      f"source(s), {sum(i.get('bars', 0) for i in ingest):,} bars kept", soft_wrap=True)
        sources = [src for src, i in zip(sources, ingest) if any(i.get(k) for k in (
            "dropped", "repaired", "skipped_overlap", "warnings", "roll_segments"))]
    _print_ingest(sources)
    ingests = [src.get("ingest", {}) for src in sources]
    readers = sorted({i["reader"] for i in ingests if "reader" in i})
    notes = sorted({f" (cudf handed over: {escape(str(i['reader_note']))})" for i in ingests if "reader_note" in i})
    phases = ", ".join(f"{k[:-2]} {v:.2f}" for k, v in t.items() if k.endswith("_s") and k != "total_s")
    console.print(f"engine [bold]{eng['name']}[/] ({eng['chunks']} chunks, {eng['fixups']} fix-ups, kernels "
                  f"{eng['kernel_seconds'] * 1e3:.1f} ms); "
                  + (f"read with [bold]{', '.join(readers)}[/]{''.join(notes)}; " if readers else "")
                  + f"total {t['total_s']:.2f} s ({phases})", soft_wrap=True)
    if eng.get("note"):
        console.print(f"[bold yellow]note:[/] {escape(eng['note'])}", soft_wrap=True)
    table = Table(title="splits")
    for col in ("split", "from", "to", "bars", "windows"):
        table.add_column(col, justify="right" if col in ("bars", "windows") else "left")
    for name, (a, b) in zip(SPLIT_NAMES, st.splits["boundaries"]):
        c = st.splits["counts"][name]
        table.add_row(name, iso_time(a)[:16] if a is not None else "-", iso_time(b)[:16] if b is not None else "-",
                      f"{c['bars']:,}", f"{c['windows']:,}")
    console.print(table)
    from .verify import empty_split_warnings

    for w in empty_split_warnings(st.splits["counts"], st.stats["valid_bars"]):
        console.print(f"[bold yellow]warning:[/] {escape(w)}", soft_wrap=True)


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
        table.add_row(c.name, mark, escape(c.detail))
    console.print(table)
    for w in report.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(w)}", soft_wrap=True)
    colour = "green" if report.ok else "red"
    console.print(f"[bold {colour}]{escape(report.summary)}[/]")
    return EXIT_OK if report.ok else EXIT_VERIFY_FAILED


# --- inspect --------------------------------------------------------------------------------


def cmd_inspect(args) -> int:
    from .inspection import inspect_store, render

    result = inspect_store(args.store, symbol=args.symbol, checksums=not args.no_checksums)
    render(result, console)
    return 0


# --- export -------------------------------------------------------------------------------


def cmd_export(args) -> int:
    from .seed import ExportError, check_output, export_seed, plan
    from .store import open_store

    if args.stride < 1:
        raise ExportError(f"--stride must be >= 1, got {args.stride}.")
    st = open_store(args.store, checksums=not args.no_checksums)
    if args.layout == "parquet":  # one row per bar: timestamp, symbol, valid, the ten features
        from .arrow_export import write_parquet

        out = write_parquet(st, args.output, overwrite=args.overwrite)
        console.print(f"[bold green]wrote[/] {escape(out)}: {st.n_bars:,} bars x (timestamp, symbol, valid, "
                      "10 features)")
        return 0
    splits = tuple(s for s in SPLIT_NAMES if s in (args.split or SPLIT_NAMES))
    check_output(args.output, args.overwrite, st)  # refused before the size is stated
    p = plan(st, splits, args.stride)
    console.print(f"export {escape(st.path)} -> {escape(args.output)} (layout {args.layout}): "
                  f"{p['n_windows']:,} windows of {p['K']} bars from {', '.join(splits)} = "
                  f"[bold]{p['bytes'] / 1e9:.2f} GB[/]")
    with progress_bars(args.quiet, console) as prog:
        meta = export_seed(st, args.output, splits, args.stride, yes=args.yes, overwrite=args.overwrite,
                           progress=RichProgress(prog))
    console.print(f"[bold green]wrote[/] {escape(args.output)}: features_10d.npy [{meta['n_windows']}, "
                  f"{meta['window_length']}, 10], valid_mask.npy, metadata.json, splits.json "
                  f"({', '.join(f'{k} {v:,}' for k, v in meta['windows'].items())})")
    return 0


# --- plot -----------------------------------------------------------------------------------


def cmd_plot(args) -> int:
    from .plot import DEFAULT_FEATURES, chart_data, check_png, render

    features = args.features.split(",") if args.features else list(DEFAULT_FEATURES)
    check_png(args.out)
    data = chart_data(args.store, symbol=args.symbol, start=args.start, end=args.end, last=args.last,
                      features=features, sources=args.source, checksums=not args.no_checksums)
    out = render(data, args.out)
    console.print(f"[bold green]wrote[/] {escape(out)}: {escape(data.symbol)}, {len(data.bars)} bars, "
                  f"{len(data.swings)} confirmed swings, {int((~data.valid).sum())} invalid bars, panels "
                  f"{', '.join(features)}")
    return 0


# --- doctor ---------------------------------------------------------------------------------


def cmd_doctor(args) -> int:
    from . import doctor

    report = doctor.collect()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        doctor.render(report, console)
    if report["problem"]:
        raise GpuFeaturesError(report["problem"])
    return 0


# --- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from .plot import MAX_PLOT_BARS
    p = OneLineParser(prog="gpu-features", formatter_class=HelpFormatter,
                      description="GPU-native relativity-10 features for intraday futures bars.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pre = sub.add_parser("precompute", formatter_class=HelpFormatter, help="compute features of bars and write a store",
                         description="Compute the relativity-10 features of bars (a parquet/CSV file, or the "
                                     "embedded synthetic set) and write a verified safetensors store.")
    pre.add_argument("--input", metavar="PATH", nargs="+", action="append",
                     help="bar file(s), a directory or a glob; repeatable (default: embedded synthetic bars)")
    pre.add_argument("--output", metavar="DIR", default=DEFAULT_STORE, help=f"store directory [{DEFAULT_STORE}]")
    pre.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help="[auto: gpu, then host, then reference]")
    pre.add_argument("--overwrite", action="store_true", help="replace an existing store (only by a complete new one)")
    pre.add_argument("--on-bad-bars", choices=POLICIES, default="error",
                     help="bad-bar policy [error]")
    pre.add_argument("--reader", choices=READERS, default=None,
                     help="how --input is read [auto: cudf for parquet where cudf imports, else pyarrow]")
    pre.add_argument("--shard-bars", type=count(1), default=SHARD_BARS, metavar="N",
                     help=f"bars per shard [{SHARD_BARS}]")
    pre.add_argument("--split-fractions", metavar="A,B,C", help="chronological train,val,test fractions [0.9,0.05,0.05]")
    pre.add_argument("--split-dates", metavar="VAL,TEST", help="chronological split dates (UTC): val start, test start")
    pre.add_argument("--synthetic-bars", type=count(1), default=synthetic.DEFAULT_BARS, metavar="N",
                     help=f"bars per symbol of the synthetic set [{synthetic.DEFAULT_BARS}]")
    pre.add_argument("--symbols", type=count(1), default=1, metavar="N", help="symbols of the synthetic set [1]")
    pre.add_argument("--seed", type=count(0, synthetic.MAX_SEED), default=0, help="seed of the synthetic set [0]")
    pre.add_argument("--append", metavar="FILE", help="append newer bars from FILE to the store at --output")
    pre.add_argument("--on-overlap", choices=OVERLAP_POLICIES, default="error",
                     help="bars at or before a series' last bar (stored, with --append; of an earlier input file): "
                          "refuse, or skip those identical to it [error]")
    g = pre.add_argument_group("input layout (README 'Inputs')")
    g.add_argument("--format", choices=FORMATS, default="auto", help="vendor preset [auto: detected]")
    g.add_argument("--time-column", metavar="COL", help="column holding the time")
    g.add_argument("--date-column", metavar="COL", help="date column combined with --time-column (time of day)")
    g.add_argument("--time-format", metavar="FMT", help="strptime format of the time column, e.g. '%%Y%%m%%d %%H%%M%%S'")
    g.add_argument("--timezone", metavar="ZONE", help="IANA zone of times without one [UTC]; stored as UTC")
    g.add_argument("--symbol-column", metavar="COL", help="column naming each bar's series [symbol]")
    g.add_argument("--roll-column", metavar="COL",
                   help="contract column (e.g. instrument_id): a series is cut into segments where it changes")
    g.add_argument("--rename", metavar="THEIRS=OURS", action="append", help="map a column, e.g. Last=close")
    g.add_argument("--delimiter", metavar="CHAR", type=character, help="CSV delimiter [sniffed]")
    g.add_argument("--no-header", action="store_true", help="the CSV has no header line (see --columns)")
    g.add_argument("--columns", metavar="A,B", help="column names of a headerless CSV [time,open,high,low,close,volume]")
    g.add_argument("--price-scale", type=number(1e-12, 1e12), metavar="X",
                   help="multiply prices by X (1e-9: fixed-point prices)")
    g.add_argument("--allow-nonpositive-prices", action="store_true",
                   help="accept prices <= 0 (back-adjusted continuous futures)")
    g.add_argument("--max-drop-fraction", type=number(0.0, 1.0), default=None, metavar="F",
                   help=f"--on-bad-bars drop refuses to drop more than this share of rows [{DEFAULT_MAX_DROP_FRACTION}]")
    dist = pre.add_argument_group("many machines (needs the 'distributed' extra: Dask)")
    dist.add_argument("--distributed", action="store_true",
                      help="build a dataset of part stores on a Dask cluster, one task per symbol group; --input "
                           "takes globs ('data/**/*.parquet') and directories")
    dist.add_argument("--workers", type=count(1, 1024), metavar="N",
                      help="local cluster of N worker processes [one per core]")
    dist.add_argument("--scheduler", metavar="ADDRESS", help="use the running Dask scheduler at ADDRESS "
                                                             "(tcp://host:8786) instead of a local cluster")
    dist.add_argument("--symbols-per-task", type=count(1), metavar="N",
                      help="cut a file group of more symbols into tasks of N symbols [whole groups]")
    dist.add_argument("--bars-per-task", type=count(0), metavar="N", default=None,
                      help="pack small symbol groups into tasks of at most N input rows (and all rows / 2 per worker "
                           "thread); 0: a task per group "
                           "[1000000]")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_arguments(pre)
    pre.set_defaults(func=cmd_precompute)

    ver = sub.add_parser("verify", formatter_class=HelpFormatter, help="recompute sampled bars from the source and compare bits",
                         description="Check a store: structure, checksums (always), content, source, and values "
                                     "recomputed with the reference engine bit for bit. Exit 1 when a check "
                                     "fails or cannot run.")
    ver.add_argument("store", nargs="?", default=DEFAULT_STORE, help=f"store directory [{DEFAULT_STORE}]")
    ver.add_argument("--source", action="append", metavar="FILE",
                     help="bar file(s) to use instead of the manifest's sources, in order")
    ver.add_argument("--sample-bars", type=count(0), default=10_000, metavar="N", help="least bars to recompute [10000]")
    ver.add_argument("--seed", type=count(0), default=0, help="seed of the sampled intervals [0]")
    ver.add_argument("--quiet", action="store_true", help="no progress bars")
    ver.set_defaults(func=cmd_verify)

    ins = sub.add_parser("inspect", formatter_class=HelpFormatter, help="summary, statistics, swing rates and warnings",
                         description="Print a store's manifest summary, per-feature statistics, swing "
                                     "confirmation rates and warnings with the setting to try.")
    ins.add_argument("store", nargs="?", default=DEFAULT_STORE, help=f"store directory [{DEFAULT_STORE}]")
    ins.add_argument("--symbol", help="one symbol only")
    add_no_checksums(ins)
    ins.set_defaults(func=cmd_inspect)

    exp = sub.add_parser("export", formatter_class=HelpFormatter, help="write a store's windows in the old pipeline's layout",
                         description="Materialize a store's usable windows as the old pipeline's "
                                     "features_10d.npy [N,K,10], valid_mask.npy [N,K], metadata.json and "
                                     "splits.json. States the size first; above 1 GB it needs --yes.")
    exp.add_argument("store", help="store directory")
    exp.add_argument("--layout", choices=EXPORT_LAYOUTS, default="seed",
                     help="seed: window arrays (a directory); parquet: one row per bar (a file) [seed]")
    exp.add_argument("--output", required=True, metavar="PATH", help="new directory (seed) or .parquet file")
    exp.add_argument("--split", action="append", choices=SPLIT_NAMES,
                     help="export only this split (repeatable) [all three]")
    exp.add_argument("--stride", type=count(), default=1, metavar="N", help="every N-th usable window [1]")
    exp.add_argument("--yes", action="store_true", help="confirm an export above 1 GB")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing seed-layout export at --output")
    exp.add_argument("--quiet", action="store_true", help="no progress bar")
    add_no_checksums(exp)
    exp.set_defaults(func=cmd_export)

    plt = sub.add_parser("plot", formatter_class=HelpFormatter, help="candlesticks with swings, invalid bars and feature panels (PNG)",
                         description="Chart one symbol of a store: candlesticks, each confirmed swing at its "
                                     "extreme bar and at the bar that confirmed it, invalid bars shaded, and "
                                     "one panel per chosen feature. Needs matplotlib (extra 'plot').")
    plt.add_argument("store", nargs="?", default=DEFAULT_STORE, help=f"store directory [{DEFAULT_STORE}]")
    plt.add_argument("--symbol", help="which symbol [the first]")
    plt.add_argument("--start", metavar="TIME", help="first time shown (ISO 8601, UTC)")
    plt.add_argument("--end", metavar="TIME", help="time after the last bar shown (ISO 8601, UTC)")
    plt.add_argument("--last", type=count(), metavar="N", help=f"the last N bars, 1 .. {MAX_PLOT_BARS} [300 when no --start/--end]")
    plt.add_argument("--features", metavar="A,B", help="feature panels [range_z,dist_to_prev_SH,dist_to_prev_SL,"
                                                       "bars_since_SH_norm]")
    plt.add_argument("--source", action="append", metavar="FILE", help="bar file(s) replacing the manifest's sources")
    plt.add_argument("--out", default="chart.png", metavar="PNG", help="output file, .png [chart.png]")
    add_no_checksums(plt)
    plt.set_defaults(func=cmd_plot)

    doc = sub.add_parser("doctor", help="interpreter, packages, CUDA device, engines that run here and why not",
                         description="Report what this interpreter can run: package versions (and the extra "
                                     "to install for each missing one), CUDA devices, which engines run and "
                                     "why not, what --engine auto picks, the C++ compiler and the kernel "
                                     "cache. Exit 2 when a required package is missing.")
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.set_defaults(func=cmd_doctor)
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
        say(err_console, str(err))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err_console.print(escape(interrupted), soft_wrap=True)
        return EXIT_INTERRUPTED
    except OSError as err:  # the environment: disk full, permissions, a file in the way
        say(err_console, os_error_sentence(err))
        return EXIT_BAD_INPUT
    except MemoryError:  # the environment too: what was asked for does not fit this machine
        say(err_console, OUT_OF_MEMORY)
        return EXIT_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - the one place a bug becomes a report instead of a traceback
        if _disk_full(err):
            say(err_console, os_error_sentence(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
            return EXIT_BAD_INPUT
        if _out_of_memory(err):
            say(err_console, OUT_OF_MEMORY)
            return EXIT_BAD_INPUT
        where = _write_traceback()
        say(err_console, f"internal error: {type(err).__name__}: {err}; this is a bug in gpu-features, please "
                         f"report it with the traceback in {where}.", label="internal error")
        return EXIT_INTERNAL


def say(err_console, sentence: str, label: str = "error") -> None:
    """Print one refusal line; markup in the sentence (like ``gpu-features[plot]``) is printed as is, and
    control characters (data quoted in a message: symbol names, a file's bytes) escaped
    (:func:`~gpu_features.errors.printable`)."""
    if sentence.startswith(label + ": "):
        sentence = sentence[len(label) + 2:]
    err_console.print(f"[bold red]{label}:[/] {escape(sentence)}", highlight=False, soft_wrap=True)


def os_error_sentence(err: OSError) -> str:
    """One sentence for an OSError from writing or reading: what, where, how to fix."""
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    if err.errno == errno.ENOSPC or err.errno == getattr(errno, "EDQUOT", -1):
        return (f"the disk is full{where}; nothing was committed and any existing store or export is intact, "
                "so free space (or choose an --output on another disk) and run the command again.")
    if isinstance(err, PermissionError) or err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"permission denied{where}: this user may not write or read there; choose another --output or "
                "fix the folder's permissions.")
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        return f"a file is in the way{where}: a folder was expected there; choose another --output or move the file."
    return f"{err.strerror or err}{where}; check the path and run the command again."


OUT_OF_MEMORY = ("out of memory: this machine cannot hold what the command was asked to build; ask for less (fewer "
                 "bars or symbols, a smaller batch or model) or use a machine with more memory; nothing was committed.")


def _out_of_memory(err: BaseException) -> bool:
    """torch and CuPy report an allocation that failed as their own error types, with these words inside."""
    text = str(err)
    return "out of memory" in text.lower() or "can't allocate memory" in text or "OutOfMemory" in type(err).__name__


def _disk_full(err: BaseException) -> bool:
    """The safetensors library reports a full disk as its own error type, with the OS text inside."""
    return "No space left on device" in str(err)


def _write_traceback() -> str:
    """Write the current exception's traceback to a file in the temporary folder; returns its path."""
    try:
        fd, path = tempfile.mkstemp(prefix="gpu-features-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        return path
    except OSError:
        traceback.print_exc()
        return "the lines above"


if __name__ == "__main__":
    sys.exit(main())
