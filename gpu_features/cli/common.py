"""What every ``gpu-features`` command shares: the consoles, ``--help`` wrapping, the FeatureConfig flags,
``--no-checksums`` and the progress bars."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import FeatureConfig
from ..errors import ConfigError
from ..guard import make_console

DEFAULT_STORE = "data/features/demo"

console = make_console()
err_console = make_console(stderr=True)


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` wrapped at spaces only: flag lists and file names are never broken inside a word."""

    def _split_lines(self, text, width):
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)


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
            g.add_argument(flag, dest=f.name, type=typ, default=None, metavar=typ.__name__.upper(),
                           help=f"[{f.default}]")


def add_no_checksums(p: argparse.ArgumentParser) -> None:
    """``--no-checksums``: the one opt-out of hashing a store on open (inspect, plot, export)."""
    p.add_argument("--no-checksums", action="store_true",
                   help="skip the SHA-256 of shards and state file on open (sizes, headers and shapes are still "
                        "checked; for very large trusted stores)")


def config_from_args(args) -> FeatureConfig:
    """The FeatureConfig of ``--config FILE`` with the config flags that were given on top."""
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
