"""``gpu-features export`` and ``plot``: a store's windows or bars written out, or drawn."""
from __future__ import annotations

from ..guard import escape
from ..options import count
from ..splits import SPLIT_NAMES
from .common import DEFAULT_STORE, HelpFormatter, RichProgress, add_no_checksums, console, progress_bars

EXPORT_LAYOUTS = ("seed", "parquet")  # what `export --layout` writes


def cmd_export(args) -> int:
    from ..seed import ExportError, check_output, export_seed, plan
    from ..store import open_store

    if args.stride < 1:
        raise ExportError(f"--stride must be >= 1, got {args.stride}.")
    st = open_store(args.store, checksums=not args.no_checksums)
    if args.layout == "parquet":  # one row per bar: timestamp, symbol, valid, the ten features
        from ..arrow_export import write_parquet

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


def cmd_plot(args) -> int:
    from ..plot import DEFAULT_FEATURES, chart_data, check_png, render

    features = args.features.split(",") if args.features else list(DEFAULT_FEATURES)
    check_png(args.out)
    data = chart_data(args.store, symbol=args.symbol, start=args.start, end=args.end, last=args.last,
                      features=features, sources=args.source, checksums=not args.no_checksums)
    out = render(data, args.out)
    console.print(f"[bold green]wrote[/] {escape(out)}: {escape(data.symbol)}, {len(data.bars)} bars, "
                  f"{len(data.swings)} confirmed swings, {int((~data.valid).sum())} invalid bars, panels "
                  f"{', '.join(features)}")
    return 0


def add_parsers(sub) -> None:
    """The ``export`` and ``plot`` commands."""
    from ..plot import MAX_PLOT_BARS

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
