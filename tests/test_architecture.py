"""The architecture as written down: no module uses another module's private names, docs/ARCHITECTURE.md names
every module (and no module that is gone), and the ingest and command-line modules stay short.

The layers themselves are import-linter's contracts (pyproject.toml), run by ``make test``.
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gpu_features", "train")
SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SOURCES}


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved against ``path``)."""
    if not node.level:
        return node.module or ""
    base = _module_name(path).split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_uses(path: Path) -> list[str]:
    """``file:line name`` of every private name (``_x``, not ``__x__``) this file takes from another module of ours:
    imported by name, or read as an attribute of an imported module of ours."""
    tree = ast.parse(path.read_text())
    found, module_aliases = [], set()

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(path, node)
            if not source.split(".")[0] in PACKAGES:
                continue
            for alias in node.names:
                if private(alias.name):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {source}.{alias.name}")
                elif f"{source}.{alias.name}" in MODULES:
                    module_aliases.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    if any(private(part) for part in alias.name.split(".")):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}")
                    module_aliases.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases \
                and private(node.attr):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    found = [use for path in SOURCES for use in private_uses(path)]
    assert found == [], "private names used across modules (make them public or keep them in their module):\n" + \
        "\n".join(found)


def test_the_private_name_check_finds_each_kind_of_use(tmp_path, monkeypatch):
    """The check itself: a private name imported by name, read from a module imported relatively, or absolutely."""
    pkg = tmp_path / "gpu_features"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _hidden():\n    pass\n")
    (pkg / "b.py").write_text("from .a import _hidden\nfrom . import a\nimport gpu_features.a as aa\n"
                              "a._hidden()\naa._hidden()\nprint(a.__name__)\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "MODULES", {"gpu_features": pkg / "__init__.py", "gpu_features.a": pkg / "a.py",
                                               "gpu_features.b": pkg / "b.py"})
    assert [use.split(" ", 1)[1] for use in private_uses(pkg / "b.py")] == [
        "gpu_features.a._hidden", "a._hidden", "aa._hidden"]


def test_architecture_md_names_every_module_and_no_missing_one():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"\b([a-z_]+\.py)\b", text))
    files = {p.name for p in SOURCES if p.name not in ("__init__.py", "__main__.py")}
    assert files - named == set(), f"modules missing from docs/ARCHITECTURE.md: {sorted(files - named)}"
    existing = {p.name for top in PACKAGES + ("tests", "bench") for p in (ROOT / top).rglob("*.py")}
    assert named - existing == set(), f"docs/ARCHITECTURE.md names files that do not exist: {sorted(named - existing)}"


LIMITS = {"gpu_features/ingest": 400, "gpu_features/cli": 300}  # lines per module


@pytest.mark.parametrize("path", [p for p in SOURCES if str(p.parent.relative_to(ROOT)) in LIMITS],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_ingest_and_command_line_modules_stay_short(path):
    limit = LIMITS[str(path.parent.relative_to(ROOT))]
    n = len(path.read_text().splitlines())
    assert n <= limit, f"{path.relative_to(ROOT)} has {n} lines (at most {limit}): split it by concern"
