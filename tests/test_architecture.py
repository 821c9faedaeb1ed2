"""The package's import graph: no cycles between modules, and the layers point one way (docs/design.md §2.1).

Imports are read with ``ast`` from every file, those inside functions included (a cycle hidden in a
function still ties two modules together).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "facebias"


def module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the facebias modules it imports (a name imported from a module counts as that module)."""
    files = {module_of(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                wanted = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                wanted = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            for target in wanted:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and not files[target].name == "__init__.py":
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, iterators = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            nxt = next(iterators[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iterators.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                iterators.append(iter(sorted(graph[nxt])))
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_src():
    graph = import_graph()
    assert len(graph) > 40
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# A package may import from the packages listed for it (and from itself), nothing else of facebias.
ALLOWED = {
    "metrics": set(),
    "faces": {"data"},  # the dictionary reads landmarks off a FaceTable; data uses faces.concepts/geometry
    "data": {"faces"},
    "reporting": set(),
    "usercode": set(),  # the one loader of user code (a user generator's, a user model's)
    "models": {"data", "metrics", "usercode"},
    "generators": {"data", "faces", "models", "runs", "usercode"},
    "runs": {"reporting", "data", "results", "models"},  # models: a user model (runs.locate_user_model)
    "results": set(),
    "training": {"data", "models", "metrics", "runs", "reporting", "results", "debias"},
    "debias": {"data", "generators", "models", "metrics", "runs", "reporting"},
    "evaluation": {"metrics", "reporting"},
    "dissect": {"data", "faces", "models", "reporting"},
    "explain": {"data", "dissect", "faces", "reporting"},
    "counterfactual": {"data", "faces", "generators", "reporting"},
}


def layer(module: str) -> str:
    """facebias.<layer>.x -> <layer> (a top-level module such as facebias.runs is its own layer)."""
    return (module.split(".") + [""])[1]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layers_point_one_way(package):
    graph = import_graph()
    allowed = ALLOWED[package] | {package, "resolvers"}
    wrong = sorted((name, target) for name, targets in graph.items() if layer(name) == package
                   for target in targets if layer(target) not in allowed)
    assert not wrong, f"{package} imports outside its layer: {wrong}"
