"""What every ``gpu-features`` command shares: the consoles, ``--help`` wrapping, the FeatureConfig flags,
``--no-checksums`` and the progress bars."""
from __future__ import annotations

import argparse
import dataclasses

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import FeatureConfig
from ..errors import ConfigError
from ..fileio import MAX_CONFIG_BYTES, read_json_file
from ..guard import make_console
from ..options import count, number

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
            g.add_argument(flag, dest=f.name, type=count() if typ is int else number(), default=None,
                           metavar=typ.__name__.upper(), help=f"[{f.default}]")


def add_no_checksums(p: argparse.ArgumentParser) -> None:
    """``--no-checksums``: the one opt-out of hashing a store on open (inspect, plot, export)."""
    p.add_argument("--no-checksums", action="store_true",
                   help="skip the SHA-256 of shards and state file on open (sizes, headers and shapes are still "
                        "checked; for very large trusted stores)")


def config_from_args(args) -> FeatureConfig:
    """The FeatureConfig of ``--config FILE`` with the config flags that were given on top; a refused field
    is blamed on the flag that set it (``--eps 0: ...``) or on ``--config FILE``."""
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
