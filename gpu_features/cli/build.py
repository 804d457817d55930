"""``gpu-features precompute``: build a store (or a dataset with ``--distributed``), or ``--append`` to one."""
from __future__ import annotations

import dataclasses

from .. import synthetic
from ..config import FeatureConfig
from ..engines import ENGINE_CHOICES
from ..errors import GpuFeaturesError
from ..ingest import DEFAULT_MAX_DROP_FRACTION, FORMATS, OVERLAP_POLICIES, POLICIES, READERS, ReadSpec
from ..options import character, count, number
from ..store import SHARD_BARS
from .common import DEFAULT_STORE, HelpFormatter, RichProgress, add_config_arguments, config_from_args, progress_bars
from .summary import print_report

# The input flags that are ReadSpec fields of the same name (the others: --no-header, --columns, --rename,
# --allow-nonpositive-prices, --max-drop-fraction, --format auto).
_SPEC_FLAGS = ("time_column", "date_column", "time_format", "timezone", "symbol_column", "roll_column", "delimiter",
               "price_scale")


def cmd_precompute(args) -> int:
    from ..splits import parse_fractions
    from ..store import append_dataset, append_store, is_dataset, precompute

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
    given_spec = read_spec_from_args(args)
    if (args.distributed or args.workers is not None or args.scheduler or args.symbols_per_task is not None
            or args.bars_per_task is not None):
        return _precompute_distributed(args, cfg, splits, given_spec)
    if args.append:  # the new bars are read like the store's inputs unless input flags say otherwise
        append = append_dataset if is_dataset(args.output) else append_store
        with progress_bars(args.quiet) as prog:
            st = append(args.output, args.append, engine=args.engine, on_bad_bars=args.on_bad_bars,
                        on_overlap=args.on_overlap, shard_bars=args.shard_bars, progress=RichProgress(prog),
                        spec=given_spec)
        print_report(st.path, st.report)
        return 0
    if args.input:
        source = [p for group in args.input for p in group]
    else:
        source = synthetic.generate(args.synthetic_bars, args.symbols, args.seed)
    with progress_bars(args.quiet) as prog:
        st = precompute(source, args.output, config=cfg, engine=args.engine, shard_bars=args.shard_bars,
                        splits=splits, overwrite=args.overwrite, on_bad_bars=args.on_bad_bars,
                        progress=RichProgress(prog), reader=args.reader or "auto",
                        spec=(given_spec or ReadSpec()).replace(on_overlap=args.on_overlap))
    print_report(st.path, st.report)
    return 0


def _precompute_distributed(args, cfg, splits, given_spec: ReadSpec | None) -> int:
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
    from ..distributed import build_dataset

    inputs = [p for group in args.input for p in group]
    with progress_bars(args.quiet) as prog:
        st = build_dataset(inputs, args.output, config=cfg, engine=args.engine, splits=splits,
                           overwrite=args.overwrite, on_bad_bars=args.on_bad_bars, reader=args.reader or "auto",
                           shard_bars=args.shard_bars, symbols_per_task=args.symbols_per_task,
                           **({} if args.bars_per_task is None else {"bars_per_task": args.bars_per_task}),
                           workers=args.workers, scheduler=args.scheduler, progress=RichProgress(prog),
                           spec=(given_spec or ReadSpec()).replace(on_overlap=args.on_overlap))
    print_report(st.path, st.report)
    return 0


def read_spec_from_args(args) -> ReadSpec | None:
    """The :class:`~gpu_features.ingest.ReadSpec` of the input flags that were given (None when none was)."""
    fields = {flag: getattr(args, flag) for flag in _SPEC_FLAGS if getattr(args, flag) is not None}
    if args.format != "auto":
        fields["format"] = args.format
    if args.no_header:
        fields["header"] = False
    if args.columns:
        fields["columns"] = tuple(c.strip() for c in args.columns.split(","))
    if args.rename:
        pairs = {}
        for item in args.rename:
            if "=" not in item:
                raise GpuFeaturesError(f"--rename {item!r}: write FILE_COLUMN=OURS, e.g. --rename Last=close.")
            theirs, ours = item.split("=", 1)
            if not theirs.strip() or not ours.strip() or "=" in ours:
                raise GpuFeaturesError(f"--rename {item!r}: write FILE_COLUMN=OURS with one name on each side, e.g. "
                                       "--rename Last=close.")
            pairs[theirs.strip()] = ours.strip()
        fields["rename"] = pairs
    if args.allow_nonpositive_prices:
        fields["allow_nonpositive"] = True
    if args.max_drop_fraction is not None:
        fields["max_drop_fraction"] = args.max_drop_fraction
    return ReadSpec(**fields) if fields else None


def add_parser(sub) -> None:
    """The ``precompute`` command and its flags."""
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
