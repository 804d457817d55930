"""``gpu-features stream``: live features of closed bars from standard input, one JSON line per bar.

Input, one bar a line: JSON objects (``{"time": ..., "symbol": "ES", "open": ..., "high": ..., "low": ...,
"close": ...}``), or CSV whose first line is the header (``time,symbol,open,high,low,close``); the
first line that is not empty or a ``#`` comment decides which. Times as ``read_bars`` reads them (ISO
text, epoch integers; naive times in ``--timezone``). Each accepted bar gives one line on standard
output::

    {"line": 2, "symbol": "ES", "time": "2024-01-02T14:31:00+00:00", "valid": true,
     "features": {"open_norm": 0.25, ..., "bars_since_SL_norm": 0.0952381}}

(features are float32 values written as the shortest decimal that reads back to the same float32);
a bad line is refused with one sentence on standard error naming the line, and the stream goes on.
At the end of input (or Ctrl-C) ``--commit`` appends the accepted bars to ``--store`` with the store's
own append machinery (the store then equals ``--append`` of the same bars) and ``--save`` writes the
stream's state, which ``--resume`` continues later.

The CLI (``gpu_features/cli/__init__.py``) adds this command with :func:`add_parser`; :func:`cmd_stream` runs it.
"""
from __future__ import annotations

import csv
import json
import sys

import numpy as np

from ..config import FEATURE_NAMES
from ..engines import ENGINE_CHOICES
from ..errors import GpuFeaturesError, StreamError
from ..guard import EXIT_INTERRUPTED, EXIT_OK
from ..ingest import PRICE_COLUMNS
from ..ingest.files import sniff_delimiter
from ..splits import iso_time
from ..stream import FeatureStream, check_state_path
from .common import HelpFormatter, add_no_checksums, config_from_args


def add_parser(sub) -> None:
    """The ``stream`` command; its handler is :func:`cmd_stream`."""
    p = sub.add_parser(
        "stream", formatter_class=HelpFormatter, help="live features of closed bars from stdin, one JSON line each",
        description="Read closed bars (JSON lines, or CSV with a header line) on standard input and write one JSON "
                    "line of features per bar on standard output, bit for bit what the offline build gives; bad "
                    "lines are refused in one sentence on standard error and the stream goes on.")
    src = p.add_argument_group("where the stream starts (one of --store, --config, --resume)")
    src.add_argument("--store", metavar="DIR", help="continue every symbol of this store from its stored end state")
    src.add_argument("--config", metavar="FILE", help="start fresh: a JSON file of FeatureConfig fields ({} for the "
                                                      "FEATURES.md defaults)")
    src.add_argument("--resume", metavar="STATE", help="continue a state written by --save (with --store: checked "
                                                       "against that store's config)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help="[auto: gpu, then host, then reference]")
    p.add_argument("--save", metavar="STATE", help="write the stream's state here at the end of input")
    p.add_argument("--commit", action="store_true",
                   help="at the end of input append the accepted bars to --store (equal to precompute --append of "
                        "the same bars)")
    p.add_argument("--timezone", metavar="ZONE", help="IANA zone of times without one [UTC]")
    add_no_checksums(p)
    p.set_defaults(func=cmd_stream)


def cmd_stream(args, stdin=None, stdout=None, stderr=None) -> int:
    """Run ``gpu-features stream``; returns the exit status (0, or 130 after Ctrl-C: the input ends there and the
    exit work, --commit and --save, still runs)."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    if args.save:  # refused before any input is read, not at its end
        check_state_path(args.save)
    stream = open_stream(args)
    taken = refused = 0
    interrupted = False
    lines = LineReader()
    try:
        for number, text in enumerate(iter(stdin.readline, ""), start=1):
            try:
                table = lines.parse(text)
                if table is None:
                    continue
                out = stream.update(table)
            except GpuFeaturesError as err:
                refused += 1
                stderr.write(f"refused: line {number}: {err}\n")
                stderr.flush()
                continue
            for r in out.refusals:
                refused += 1
                stderr.write(f"refused: line {number}: {r.message}\n")
            if out.accepted.any():
                taken += 1
                stdout.write(feature_line(number, out.symbol(0), int(out.time[0]), out.valid[0], out.features[0]))
                stdout.flush()
            stderr.flush()
    except KeyboardInterrupt:
        interrupted = True
    done = [f"{taken} bar(s) taken, {refused} refused"]
    if args.commit:
        store = stream.commit(args.store)
        done.append(f"committed to {store.path} ({store.n_bars:,} bars)")
    if args.save:
        done.append(f"state saved to {stream.save(args.save)}")
    stderr.write(("interrupted: " if interrupted else "done: ") + "; ".join(done) + ".\n")
    stderr.flush()
    return EXIT_INTERRUPTED if interrupted else EXIT_OK


def open_stream(args) -> FeatureStream:
    """The stream the flags ask for (refusing combinations that cannot work, in one sentence)."""
    given = [flag for flag, value in (("--store", args.store), ("--config", args.config), ("--resume", args.resume))
             if value]
    if not given or (len(given) > 1 and set(given) != {"--store", "--resume"}):
        raise StreamError(f"give one of --store, --config or --resume (--resume may come with --store), got "
                          f"{', '.join(given) or 'none'}.")
    if args.commit and not args.store:
        raise StreamError("--commit appends the accepted bars to a store: add --store DIR.")
    spec = {"timezone": args.timezone} if args.timezone else None
    if args.resume:
        config = None
        if args.store:
            from ..store import open_store

            config = open_store(args.store, checksums=not args.no_checksums).config
        return FeatureStream.load(args.resume, engine=args.engine, config=config, spec=spec,
                                  keep_for_commit=args.commit)
    if args.store:
        return FeatureStream.from_store(args.store, engine=args.engine, checksums=not args.no_checksums,
                                        keep_for_commit=args.commit, spec=spec)
    return FeatureStream(config_from_args(args), engine=args.engine, spec=spec)


class LineReader:
    """One input line -> a one-row pyarrow table (JSON lines, or CSV after its header line)."""

    def __init__(self):
        self.mode: str | None = None
        self.header: list[str] | None = None
        self.delimiter = ","

    def parse(self, text: str):
        """The bar of a line as a one-row table, or None for a blank, comment or header line."""
        import pyarrow as pa

        line = text.strip()
        if not line or line.startswith("#"):
            return None
        if self.mode is None:
            self.mode = "json" if line.startswith("{") else "csv"
            if self.mode == "csv":
                self.delimiter = sniff_delimiter(line)
                self.header = [h.strip() for h in next(csv.reader([line], delimiter=self.delimiter))]
                return None
        if self.mode == "json":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise StreamError(f"not a JSON object ({err.msg} at column {err.colno}); write one bar a line as "
                                  '{"time": ..., "symbol": ..., "open": ..., "high": ..., "low": ..., "close": ...}.') \
                    from None
            if not isinstance(row, dict):
                raise StreamError("not a JSON object; write one bar a line as {\"time\": ..., \"symbol\": ..., ...}.")
        else:
            values = next(csv.reader([line], delimiter=self.delimiter))
            if len(values) != len(self.header):
                raise StreamError(f"has {len(values)} field(s) but the header has {len(self.header)} "
                                  f"({', '.join(self.header)}); give one value per column.")
            row = dict(zip(self.header, values))
        columns = {}
        for key, value in row.items():
            name = str(key).strip().lower()
            if name in PRICE_COLUMNS and (value is None or isinstance(value, (int, float))) and not isinstance(value, bool):
                columns[key] = pa.array([value], pa.float64())  # a JSON null is a missing price (a bar rule)
            else:
                columns[key] = [value]
        try:
            return pa.table(columns)
        except (pa.ArrowException, ValueError, TypeError) as err:
            raise StreamError(f"its values could not be read ({str(err).splitlines()[0]}); give numbers for prices "
                              "and text or an epoch number for the time.") from None


def feature_line(number: int, symbol, time_ns: int, valid, features) -> str:
    """One JSON output line; each float32 feature as its shortest decimal that reads back to the same float32."""
    values = ", ".join(f"{json.dumps(name)}: {_float32_text(x)}" for name, x in zip(FEATURE_NAMES, features))
    return (f'{{"line": {number}, "symbol": {json.dumps(symbol)}, "time": {json.dumps(iso_time(time_ns))}, '
            f'"valid": {"true" if valid else "false"}, "features": {{{values}}}}}\n')


def _float32_text(x) -> str:
    text = str(np.float32(x))
    return text if text not in ("nan", "inf", "-inf") else "null"
