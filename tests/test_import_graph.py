"""The package stays layered: no import cycle in `spot/`, between modules or between its
packages, counting imports inside functions too (a lazy import is still a dependency).

The graph comes from the source with `ast` (nothing is imported), so a cycle fails here even
when no test happens to import the modules in the order that would break.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "spot"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `root` (a package folder)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same top-level package it imports (anywhere in the file)."""
    modules = module_names(root)
    top = root.name
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base_name = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_name = node.module or ""
                # `from pkg import mod` depends on pkg.mod when that is a module, else on pkg.
                targets = [f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in modules
                           else base_name for a in node.names]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` -> the longest module
                    target = target.rpartition(".")[0]
                if target.split(".")[0] == top and target != name:
                    graph[name].add(target)
    return graph


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Collapse modules to their first-level room (`spot.data.local` -> `spot.data`)."""
    def room(name: str) -> str:
        return ".".join(name.split(".")[:2])

    out: dict[str, set[str]] = defaultdict(set)
    for a, targets in graph.items():
        for b in targets:
            if room(a) != room(b):
                out[room(a)].add(room(b))
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    nodes = sorted(set(graph) | {b for bs in graph.values() for b in bs})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_cycles():
    assert cycles(import_graph(ROOT)) == []


def test_no_package_cycles():
    assert cycles(package_graph(import_graph(ROOT))) == []


# The rooms in the order of docs/concepts.md "The code layout": each may import only rooms
# before it. A new room goes where its imports put it.
LAYERS = (
    ("spot.errors", "spot.quiet"),
    ("spot.fileio",),
    ("spot.model",),
    ("spot.config",),
    ("spot.data",),
    ("spot.train", "spot.retrieval"),
    ("spot.library", "spot.analysis"),
    ("spot.workflows",),
    ("spot.bench",),
    ("spot.commands",),
    ("spot.cli",),
    ("spot.clidoc", "spot.__main__", "spot"),
)


def test_rooms_import_only_rooms_below_them():
    level = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
    graph = package_graph(import_graph(ROOT))
    unplaced = sorted(set(graph) - set(level))
    assert not unplaced, f"rooms missing from LAYERS: {unplaced}"
    upward = sorted((a, b) for a, targets in graph.items() for b in targets
                    if a != "spot" and level[b] >= level[a])
    assert upward == [], f"imports of a room at the same level or above: {upward}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_checker_finds_module_cycles_through_lazy_and_relative_imports(tmp_path):
    # The shape of the old data.local <-> data.registry cycle: one side imports lazily.
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/data/__init__.py": "",
        "pkg/data/local.py": "def f():\n    from pkg.data import registry\n",
        "pkg/data/registry.py": "from .local import f\n",
        "pkg/data/other.py": "import pkg.data.local\n",
    })
    assert cycles(import_graph(pkg)) == [["pkg.data.local", "pkg.data.registry"]]


def test_checker_finds_package_cycles(tmp_path):
    # The shape of the old library <-> retrieval cycle: no module cycle, a package one.
    pkg = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/library/__init__.py": "",
        "pkg/library/store.py": "from pkg.retrieval import similarity\n",
        "pkg/retrieval/__init__.py": "",
        "pkg/retrieval/similarity.py": "import numpy\n",
        "pkg/retrieval/benchmark.py": "def run():\n    from pkg.library.store import x\n",
    })
    graph = import_graph(pkg)
    assert cycles(graph) == []
    assert cycles(package_graph(graph)) == [["pkg.library", "pkg.retrieval"]]
