"""``gpu-features doctor``: what this interpreter can run, and why not."""
from __future__ import annotations

import json

from ..errors import GpuFeaturesError
from .common import console


def cmd_doctor(args) -> int:
    from .. import doctor

    report = doctor.collect()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        doctor.render(report, console)
    if report["problem"]:
        raise GpuFeaturesError(report["problem"])
    return 0


def add_parser(sub) -> None:
    """The ``doctor`` command."""
    doc = sub.add_parser("doctor", help="interpreter, packages, CUDA device, engines that run here and why not",
                         description="Report what this interpreter can run: package versions (and the extra "
                                     "to install for each missing one), CUDA devices, which engines run and "
                                     "why not, what --engine auto picks, the C++ compiler and the kernel "
                                     "cache. Exit 2 when a required package is missing.")
    doc.add_argument("--json", action="store_true", help="print the report as JSON")
    doc.set_defaults(func=cmd_doctor)
