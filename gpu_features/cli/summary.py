"""What a write did, on screen: printed from its :class:`~gpu_features.store.BuildReport` alone."""
from __future__ import annotations

from rich.table import Table

from ..guard import escape
from ..splits import iso_time
from ..store import BuildReport
from .common import console, err_console

VERBS = {"build": "wrote", "append": "appended to", "dataset build": "wrote dataset",
         "dataset append": "appended to dataset"}


def print_report(path, r: BuildReport) -> None:
    """What a precompute or an append did: size, the engine and timings of THIS write, what ingest read,
    dropped or repaired, the splits, and a warning for every split without windows."""
    console.print(f"[bold green]{VERBS[r.kind]}[/] {escape(str(path))}: {r.n_bars:,} bars, {r.n_symbols} symbol(s), "
                  + (f"{r.n_parts} part(s), " if r.n_parts is not None else "")
                  + f"{r.n_shards} shard(s), {r.bytes_on_disk / 1e6:.1f} MB"
                  + (f" ({r.new_bars:,} new bars, {r.skipped_overlap:,} overlapping skipped)" if r.is_append else ""),
                  soft_wrap=True)
    sources = list(r.sources)
    if r.cluster is not None:
        c = r.cluster
        work = ", ".join(f"{k} {v:.2f} s" for k, v in c.task_work.items())
        console.print(f"{c.inputs} input file(s) in {c.tasks} task(s) on {c.scheduler} ({c.workers or '?'} worker(s))"
                      + (f"; summed over the tasks: {work}" if work else ""))
    if r.is_dataset:  # one line for every source, then those that dropped, repaired, skipped or warned
        console.print(f"ingest: {sum(s.rows_read or 0 for s in sources):,} rows read from {len(sources)} "
                      f"source(s), {sum(s.bars for s in sources):,} bars kept", soft_wrap=True)
        sources = [s for s in sources if s.notable]
    _print_ingest(sources)
    readers = sorted({s.reader for s in sources if s.reader})
    notes = sorted({f" (cudf handed over: {escape(s.reader_note)})" for s in sources if s.reader_note})
    e = r.engine
    phases = ", ".join(f"{name} {seconds:.2f}" for name, seconds in r.phases.items())
    console.print(f"engine [bold]{e.name}[/] ({e.chunks} chunks, {e.fixups} fix-ups, kernels "
                  f"{e.kernel_seconds * 1e3:.1f} ms); "
                  + (f"read with [bold]{', '.join(readers)}[/]{''.join(notes)}; " if readers else "")
                  + f"total {r.total_s:.2f} s ({phases})", soft_wrap=True)
    if e.note:
        console.print(f"[bold yellow]note:[/] {escape(e.note)}", soft_wrap=True)
    table = Table(title="splits")
    for col in ("split", "from", "to", "bars", "windows"):
        table.add_column(col, justify="right" if col in ("bars", "windows") else "left")
    for row in r.splits:
        table.add_row(row.name, iso_time(row.start)[:16] if row.start is not None else "-",
                      iso_time(row.end)[:16] if row.end is not None else "-", f"{row.bars:,}", f"{row.windows:,}")
    console.print(table)
    for w in r.warnings():
        console.print(f"[bold yellow]warning:[/] {escape(w)}", soft_wrap=True)


def _print_ingest(sources) -> None:
    """Dropped, repaired and skipped bars and ingest warnings, on screen (not only in the manifest)."""
    for s in sources:
        parts = [f"dropped {count:,} ({rule}; first rows {', '.join(first)})" for rule, (count, first) in s.dropped.items()]
        parts += [f"repaired {count:,} ({rule})" for rule, count in s.repaired.items()]
        if s.skipped_overlap:
            parts.append(f"skipped {s.skipped_overlap:,} bar(s) repeated identically across files")
        if s.roll_segments:
            parts.append(f"cut at {s.roll_segments} roll(s)")
        if s.format or s.timezone:
            parts.append(f"format {s.format or 'generic'}"
                         + (f", times in {s.timezone} stored as UTC" if s.timezone else ""))
        if s.rows_read is not None:
            console.print(escape(f"ingest: {s.rows_read:,} rows read, {s.bars:,} bars kept"
                                 + ("; " + "; ".join(parts) if parts else "")), highlight=False, soft_wrap=True)
        for w in s.warnings:
            err_console.print(f"[bold yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
