"""The package's import graph: data flows one way, so no two top-level parts of dualcontrast
import each other (directly or round a longer loop), and nothing outside the CLI imports
dualcontrast.cli. Imports are read with ast from the source (inside functions too), so a lazy
import cannot hide a cycle."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "dualcontrast"


def _parts(root: Path) -> set[str]:
    """Top-level subpackages and modules: ``models``, ``config``, ``workflow`` ..."""
    return {p.stem for p in root.iterdir() if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}


def _imported_modules(path: Path, module: str) -> list[tuple[str, int]]:
    """``(absolute dotted name, line)`` of every import in ``path`` (module ``module``)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            # `from . import x` / `from .. import x`: x may be a module of that package.
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names]
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, dict[str, list[str]]]:
    """``{part: {imported part: ["file:line", ...]}}`` between the top-level parts of the package."""
    parts = _parts(root)
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        names = list(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        if len(names) < 2:
            continue  # the package's own __init__: the public facade over every part
        src = names[1]
        for target, line in _imported_modules(path, ".".join(names)):
            bits = target.split(".")
            if bits[0] != "dualcontrast" or len(bits) < 2 or bits[1] not in parts or bits[1] == src:
                continue
            graph.setdefault(src, {}).setdefault(bits[1], []).append(f"{path.relative_to(root)}:{line}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of the graph, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        where = [f"{a} -> {b}: {', '.join(graph[a][b][:3])}" for a, b in itertools.pairwise(cycle)]
        pytest.fail("import cycle " + " -> ".join(cycle) + "\n" + "\n".join(where))


def test_nothing_outside_the_cli_imports_it():
    offenders = [f"{part}: {', '.join(files)}" for part, deps in import_graph().items() if part != "cli"
                 for dep, files in deps.items() if dep == "cli"]  # fmt: skip
    for script in sorted((REPO / "benchmarks").rglob("*.py")):
        offenders += [f"{script.relative_to(REPO)}:{line}" for name, line in _imported_modules(script, "benchmarks.x")
                      if name == "dualcontrast.cli" or name.startswith("dualcontrast.cli.")]  # fmt: skip
    assert offenders == []


def test_the_checks_catch_a_cycle_and_a_cli_import(tmp_path):
    pkg = tmp_path / "dualcontrast"
    for name, text in {
        "__init__.py": "",
        "a/__init__.py": "",
        "a/x.py": "def f():\n    from ..b.y import g\n",  # a lazy import counts as much as a top one
        "b/__init__.py": "",
        "b/y.py": "from ..a import x\nfrom dualcontrast.cli import main\n",
        "cli/__init__.py": "",
    }.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    graph = import_graph(pkg)
    assert find_cycle(graph) == ["a", "b", "a"]
    assert "cli" in graph["b"]
