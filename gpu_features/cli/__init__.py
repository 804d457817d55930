"""``gpu-features``: precompute | verify | inspect | export | plot | doctor | stream: the command line over the library.

One module per command group: :mod:`.build` (precompute, with :mod:`.summary`
printing what a write did), :mod:`.check` (verify, inspect), :mod:`.output`
(export, plot), :mod:`.doctor`, :mod:`.stream` (live bars from standard input);
:mod:`.common` holds what they share.

Every command has ``--help``. Exit status: 0 success; 1 verification failed
(only ``verify``); 2 bad input or environment (one line saying what, where,
which rule and how to fix it: a bad file or flag, a store that fails its
checks, a full disk, a folder that cannot be written, another writer holding
the store); 3 internal error (a bug: one line naming the file the traceback
was written to, please report it); 130 interrupted (:mod:`gpu_features.guard`).
Output that is not a terminal (logs, CI) is printed at
:data:`~gpu_features.guard.LOG_WIDTH` columns, so lines never break mid-phrase.
"""
from __future__ import annotations

from ..guard import guarded
from ..options import OneLineParser
from . import build, check, doctor, output, stream
from .common import HelpFormatter, err_console


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="gpu-features", formatter_class=HelpFormatter,
                      description="GPU-native relativity-10 features for intraday futures bars.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build.add_parser(sub)
    check.add_parsers(sub)
    output.add_parsers(sub)
    stream.add_parser(sub)
    doctor.add_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(lambda: args.func(args), err_console, "interrupted; nothing half-written was left behind")
