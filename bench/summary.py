"""Print the rows of one or more bench JSON files as one short table (the last thing `make test-gpu` prints).

Usage: ``python bench/summary.py [--stages stages.jsonl] [--pytest-log pytest.log] results/features-gpu.json
results/train-gpu.json``: the stages of ``bench/test_gpu.sh`` (exit code, seconds, limit) and pytest's
closing line first, then every bench row.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def write_result(out: str | None, result: dict) -> None:
    """Write a bench's JSON to ``out`` (its folder made), if given."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + "\n")


def number(v: float) -> str:
    """A bench value as the tables print it: no decimals from 100 up, else 3 significant digits."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


def rows_table(title: str, rows: list) -> Table:
    """One bench's ``rows`` ({what, value, unit}) as a table."""
    table = Table(title=title)
    for col in ("what", "value", "unit"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for row in rows:
        table.add_row(escape(row["what"]), number(float(row["value"])), row["unit"])
    return table


def stage_table(stages: Path, pytest_log: Path | None) -> tuple[Table, bool]:
    """The stages of a ``make test-gpu`` run, and whether all of them exited 0."""
    table = Table(title="make test-gpu stages")
    for col in ("stage", "exit", "seconds", "limit", "result"):
        table.add_column(col, justify="right" if col in ("exit", "seconds", "limit") else "left")
    closing = ""
    if pytest_log is not None and pytest_log.is_file():
        lines = [ln.strip() for ln in pytest_log.read_text(errors="replace").splitlines() if ln.strip()]
        closing = next((ln for ln in reversed(lines)
                        if re.search(r"\d+ (passed|failed|skipped|errors?|deselected)\b", ln)), "")
    ok = True
    for line in stages.read_text().splitlines():
        s = json.loads(line)
        rc = int(s["rc"])
        ok &= rc == 0
        result = ("ok" if rc == 0 else "TIMED OUT" if rc in (124, 137) else "NOT RUN (budget spent)" if rc == 125
                  else "FAILED")
        if s["stage"] == "pytest-gpu" and closing:
            result += f": {closing}"
        table.add_row(s["stage"], str(rc), str(s["seconds"]), str(s["limit"]), escape(result))
    return table, ok


def main(argv) -> int:
    args = list(argv)
    stages = pytest_log = None
    if "--stages" in args:
        i = args.index("--stages")
        stages = Path(args.pop(i + 1))
        args.pop(i)
    if "--pytest-log" in args:
        i = args.index("--pytest-log")
        pytest_log = Path(args.pop(i + 1))
        args.pop(i)
    paths = args
    table = Table(title="gpu-features benchmark summary")
    for col in ("bench", "what", "value", "unit"):
        table.add_column(col, justify="right" if col == "value" else "left")
    missing = []
    devices = set()
    for p in paths:
        path = Path(p)
        if not path.is_file():
            missing.append(p)
            continue
        data = json.loads(path.read_text())
        dev = data.get("device")
        devices.update(dev.values() if isinstance(dev, dict) else [dev] if dev else [])
        for row in data.get("rows", []):
            v = float(row["value"])
            table.add_row(data.get("bench", path.stem), escape(row["what"]), number(v), row["unit"])
    console = Console()
    if devices:
        table.caption = "devices: " + "; ".join(sorted(map(str, devices)))
    console.print(table)
    for p in missing:
        console.print(f"[red]missing:[/] {escape(p)} (its benchmark failed or did not run)")
    stages_ok = True
    if stages is not None and stages.is_file():
        stage_rows, stages_ok = stage_table(stages, pytest_log)
        console.print(stage_rows)
    return 0 if not missing and stages_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
