"""Print the rows of one or more bench JSON files as one short table (the last thing `make test-gpu` prints).

Usage: ``python bench/summary.py results/features-gpu.json results/train-gpu.json``
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def main(paths) -> int:
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
            table.add_row(data.get("bench", path.stem), escape(row["what"]),
                          f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}", row["unit"])
    console = Console()
    if devices:
        table.caption = "devices: " + "; ".join(sorted(map(str, devices)))
    console.print(table)
    for p in missing:
        console.print(f"[red]missing:[/] {p} (its benchmark failed or did not run)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
