"""Imports point one way: core -> models, data -> train, parallel -> the capabilities -> cli.

Every ``import`` in ``src/luminary`` is read with ``ast`` (those inside
functions too: a lazy import is still a dependency). A package may import
its own layer or a lower one, never a higher one; no two packages import each
other, and no two modules either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "luminary"
LAYER = {"core": 0, "models": 1, "data": 1, "train": 2, "parallel": 2, "cli": 4}
CAPABILITY = 3  # every other package: pretrain, release, merge, scorer, ctc, rl, ...


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported luminary module, line) for every import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(n, node.lineno) for n in names if n.split(".")[0] == "luminary"]
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    """module -> {luminary module it imports: line}, resolved to modules that exist."""
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        for target, line in imports_of(path):
            while target not in modules and "." in target:  # `from pkg.mod import name` -> pkg.mod
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                edges.setdefault(name, {})[target] = line
    return edges


def package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (ROOT / parts[1]).is_dir()) else None


def test_no_package_imports_a_higher_layer(graph):
    upward = []
    for src, targets in graph.items():
        for dst, line in targets.items():
            a, b = package(src), package(dst)
            if a and b and a != b and LAYER.get(a, CAPABILITY) < LAYER.get(b, CAPABILITY):
                upward.append(f"{src}:{line} imports {dst}")
    assert upward == []


def test_no_two_packages_import_each_other(graph):
    pairs = {(package(s), package(d)) for s, ts in graph.items() for d in ts}
    cycles = sorted(f"{a} <-> {b}" for a, b in pairs if a and b and a < b and (b, a) in pairs)
    assert cycles == []


def test_no_two_modules_import_each_other(graph):
    def inside(module: str, pkg: str) -> bool:  # a package's __init__ and its own modules may meet
        return module.startswith(pkg + ".")

    cycles = sorted(f"{a} <-> {b}" for a, ts in graph.items() for b in ts
                    if a < b and a in graph.get(b, {}) and not inside(a, b) and not inside(b, a))
    assert cycles == []


def test_the_check_sees_a_violation(tmp_path):
    """The reader finds lazy imports inside functions (what an upward import usually is)."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from luminary.cli.app import main\n")
    assert imports_of(f) == [("luminary.cli.app", 2), ("luminary.cli.app.main", 2)]
