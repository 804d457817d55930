"""``gpu-features verify`` and ``inspect``: check a store by recomputation, and describe it."""
from __future__ import annotations

from rich.table import Table

from ..guard import EXIT_OK, EXIT_VERIFY_FAILED, escape
from ..options import count
from .common import DEFAULT_STORE, HelpFormatter, RichProgress, add_no_checksums, console, progress_bars


def cmd_verify(args) -> int:
    from ..verify import verify_store

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


def cmd_inspect(args) -> int:
    from ..inspection import inspect_store, render

    result = inspect_store(args.store, symbol=args.symbol, checksums=not args.no_checksums)
    render(result, console)
    return 0


def add_parsers(sub) -> None:
    """The ``verify`` and ``inspect`` commands."""
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
