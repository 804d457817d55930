"""``gpu-features doctor``: what this interpreter can run here, and what to install for the rest.

:func:`collect` gathers a JSON-ready report (interpreter, package versions, CUDA
devices, engines and why one cannot run, compiler, kernel cache); :func:`render`
prints it; :func:`problem` is the one sentence that makes the command exit 2
(a required package missing). Nothing here installs, builds or writes anything.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import site
import sys
from pathlib import Path

# (module, required, how to install it when missing). Optional ones name their extra (pyproject).
PACKAGES = (
    ("numpy", True, "pip install gpu-features"),
    ("pyarrow", True, "pip install gpu-features"),
    ("safetensors", True, "pip install gpu-features"),
    ("rich", True, "pip install gpu-features"),
    ("torch", False, "pip install 'gpu-features[train]' (make train installs torch 2.13.0 CPU)"),
    ("cupy", False, "pip install 'gpu-features[gpu]'"),
    ("cudf", False, "pip install 'gpu-features[cudf]'"),
    ("matplotlib", False, "pip install 'gpu-features[plot]'"),
    ("dask", False, "pip install 'gpu-features[distributed]'"),
)
PARENT_PTH = "gpu-features-parent.pth"  # written into .venv by the Makefile (README: Set up)


def interpreter() -> dict:
    """sys.executable, its kind (venv, conda or base) and prefixes, and the parent a .venv was made from."""
    prefix = Path(sys.prefix)
    is_venv = sys.prefix != getattr(sys, "real_prefix", sys.base_prefix)
    is_conda = (prefix / "conda-meta").is_dir()
    parent = None
    for d in site.getsitepackages() if is_venv else []:
        pth = Path(d) / PARENT_PTH
        if pth.is_file():
            first = (pth.read_text().splitlines() or [""])[0]
            parent = first.split("the packages of", 1)[-1].split("(written", 1)[0].strip() or None
    return {"executable": sys.executable, "version": sys.version.split()[0], "prefix": sys.prefix,
            "base_prefix": sys.base_prefix, "kind": "venv" if is_venv else "conda" if is_conda else "base",
            "venv": is_venv, "conda": is_conda, "parent_python": parent}


def package(module: str, required: bool, install: str) -> dict:
    """Import ``module``; its version, or why it is not usable. torch adds its CUDA build and state."""
    row = {"name": module, "required": required, "version": None, "install": install, "error": None}
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return row
    except Exception as err:  # present but broken (ABI mismatch, missing CUDA library): say so
        row["error"] = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
        return row
    try:
        row["version"] = str(getattr(mod, "__version__", None) or importlib.metadata.version(module))
    except importlib.metadata.PackageNotFoundError:  # distribution named otherwise (cupy-cuda13x...)
        row["version"] = "unknown"
    if module == "torch":
        row["cuda"] = mod.version.cuda
        try:
            row["cuda_available"] = bool(mod.cuda.is_available())
        except Exception:
            row["cuda_available"] = False
    return row


def devices() -> dict:
    """CUDA devices seen through CuPy, else torch: name, memory, compute capability; or why none."""
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        found = []
        for i in range(n):
            p = cupy.cuda.runtime.getDeviceProperties(i)
            name = p["name"].decode() if isinstance(p["name"], bytes) else str(p["name"])
            found.append({"index": i, "name": name, "memory_bytes": int(p["totalGlobalMem"]),
                          "compute_capability": f"{p['major']}.{p['minor']}"})
        return {"via": "cupy", "devices": found, "reason": None if found else "CuPy sees no CUDA device"}
    except Exception as err:
        cupy_why = f"CuPy: {type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
    try:
        import torch

        if not torch.cuda.is_available():
            return {"via": None, "devices": [], "reason": f"{cupy_why}; torch sees no CUDA device"}
        found = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            found.append({"index": i, "name": p.name, "memory_bytes": int(p.total_memory),
                          "compute_capability": f"{p.major}.{p.minor}"})
        return {"via": "torch", "devices": found, "reason": None}
    except Exception as err:
        return {"via": None, "devices": [], "reason": f"{cupy_why}; torch: {type(err).__name__}"}


def _writable(path: Path) -> bool:
    """Whether ``path`` can be written, or created (its nearest existing parent is writable)."""
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


def engines_report() -> dict:
    """Which engines run here and why not, the compiler, the kernel cache and what ``auto`` picks."""
    from .engines import gpu, host, resolve

    cxx = host.compiler()
    version = (host.compiler_version(cxx).splitlines() or [None])[0] if cxx else None
    cache = host.cache_dir()
    writable = _writable(cache)
    if cxx is None:
        wanted = f"CXX={os.environ['CXX']} was not found" if os.environ.get("CXX") else "no C++ compiler found"
        host_why = f"{wanted} (install g++, or set CXX)"
    elif not writable:
        host_why = f"the kernel cache {cache} is not writable: the first build will fail (set GPU_FEATURES_CACHE)"
    else:
        host_why = None
    gpu_runs = gpu.available()
    runs = {
        "reference": {"runs": True, "why_not": None},
        "host": {"runs": host.available(), "why_not": host_why},
        "gpu": {"runs": gpu_runs, "why_not": None if gpu_runs else gpu.unavailable_reason()},
    }
    return {"engines": runs, "auto": resolve("auto"),
            "compiler": {"path": cxx, "version": version},
            "cache": {"path": str(cache), "exists": cache.is_dir(), "writable": writable}}


def collect() -> dict:
    """The whole report, JSON-ready."""
    import gpu_features

    report = {"interpreter": interpreter(),
              "gpu_features": {"version": gpu_features.__version__,
                               "path": str(Path(gpu_features.__file__).resolve().parent)},
              "packages": [package(*p) for p in PACKAGES],
              "cuda": devices()}
    report.update(engines_report())
    report["problem"] = problem(report)
    report["ok"] = report["problem"] is None
    return report


def problem(report: dict) -> str | None:
    """One sentence naming the required packages that are missing or broken, or None."""
    bad = [p for p in report["packages"] if p["required"] and p["version"] is None]
    if not bad:
        return None
    names = ", ".join(p["name"] + (f" ({p['error']})" if p["error"] else "") for p in bad)
    return (f"required package(s) missing or broken in {report['interpreter']['executable']}: {names}; "
            "install them with `pip install gpu-features` (or run make precompute, which installs what is missing).")


def render(report: dict, console) -> None:
    """Print the report as tables; every value is escaped, so ``[gpu]`` and paths print as they are."""
    from rich.markup import escape
    from rich.table import Table

    it = report["interpreter"]
    kind = {"venv": "virtual environment", "conda": "conda environment", "base": "base installation"}[it["kind"]]
    console.print(f"[bold]interpreter[/] {escape(it['executable'])} (Python {escape(it['version'])}, {kind}, "
                  f"prefix {escape(it['prefix'])})")
    if it["parent_python"]:
        console.print(f"  also sees the packages of {escape(it['parent_python'])} (.pth written by make)")
    gf = report["gpu_features"]
    console.print(f"[bold]gpu-features[/] {escape(gf['version'])} from {escape(gf['path'])}")

    table = Table(title="packages")
    for col in ("package", "version", "note"):
        table.add_column(col, overflow="fold")
    for p in report["packages"]:
        if p["version"] is not None:
            note = ""
            if p["name"] == "torch":
                note = (f"CUDA build {p['cuda']}, " if p["cuda"] else "CPU build, ") + \
                       ("CUDA available" if p["cuda_available"] else "CUDA not available")
            table.add_row(escape(p["name"]), f"[green]{escape(p['version'])}[/]", escape(note))
        else:
            state = "[red]missing[/]" if p["required"] else "[yellow]missing[/]"
            if p["error"]:
                state = ("[red]" if p["required"] else "[yellow]") + "broken[/]"
            note = (f"{p['error']}; " if p["error"] else "") + p["install"] + ("" if p["required"] else " (optional)")
            table.add_row(escape(p["name"]), state, escape(note))
    console.print(table)

    cuda = report["cuda"]
    if cuda["devices"]:
        for d in cuda["devices"]:
            console.print(f"[bold]CUDA device {d['index']}[/] {escape(d['name'])}, "
                          f"{d['memory_bytes'] / 2**30:.1f} GiB, compute capability {d['compute_capability']} "
                          f"(via {cuda['via']})")
    else:
        console.print(f"[bold]CUDA device[/] none: {escape(cuda['reason'] or '')}")

    table = Table(title="engines")
    for col in ("engine", "runs here", "why not"):
        table.add_column(col, overflow="fold")
    for name, e in report["engines"].items():
        mark = "[green]yes[/]" if e["runs"] else "[red]no[/]"
        table.add_row(name, mark, escape(e["why_not"] or ""))
    console.print(table)
    console.print(f"[bold]--engine auto[/] picks [bold]{report['auto']}[/]")
    cxx = report["compiler"]
    console.print(f"[bold]C++ compiler[/] " + (escape(f"{cxx['path']} ({cxx['version'] or 'version unknown'})")
                                              if cxx["path"] else "[red]none[/]"))
    c = report["cache"]
    state = ("writable" if c["writable"] else "[red]not writable[/]") + ("" if c["exists"] else ", not created yet")
    console.print(f"[bold]kernel cache[/] {escape(c['path'])} ({state})")
