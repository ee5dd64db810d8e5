"""The floors of docs/architecture.md, read from the source: imports run one way, downward, in no circle.

Every import of a workbench module counts, at module level or inside a function, except those
under `if TYPE_CHECKING:` (annotations only; never executed). A function-level import hides a
circle from Python's import machinery but not from this graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "workbench"

# Module (or package prefix) -> floor; the longest matching prefix decides. From the floor table
# of docs/architecture.md, with two refinements: `tracing.spans`/`recorder`/`redaction` are the
# recording side the runner, agents and stages call, so they sit on the stages' floor, while the
# trace store and its readers keep floor 5 (the package hands its store to `spans.use_store`).
FLOORS: dict[str, int] = {
    # 1 base
    "types": 1, "results": 1, "io": 1, "sqlite": 1, "stats": 1,
    # 2 inputs
    "validation": 2, "sections": 2, "config": 2, "registry": 2, "datasets": 2, "documents": 2, "uploads": 2,
    "metrics": 2, "prices": 2, "tokens": 2,
    # 3 stages
    "resources": 3, "chunking": 3, "embedding": 3, "vectorstores": 3, "retrieval": 3, "reranking": 3, "routing": 3,
    "generation": 3, "costs": 3, "levers": 3, "response_cache": 3, "budget": 3, "batches": 3,
    "tracing.spans": 3, "tracing.recorder": 3, "tracing.redaction": 3,
    # 4 orchestration
    "agents": 4, "experiment": 4, "synthetic": 4, "conversation": 4,
    # 5 keeping
    "store": 5, "tracing": 5, "sweep": 5, "executors": 5, "export": 5, "ingest": 5, "runs": 5,
    # 6 studies
    "evaluation": 6,
    # 7 faces
    "plots": 7, "columns": 7, "cli": 7, "__main__": 7, "": 7,  # "" is workbench/__init__.py
}


# Upward imports known when this test was written, each with who is moving it. An entry that no
# longer exists fails `test_pending_violations_still_exist` (delete it); nothing else may be added.
PENDING: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor_of(module: str) -> int | None:
    for prefix in sorted(FLOORS, key=len, reverse=True):
        if module == prefix or (prefix and module.startswith(prefix + ".")):
            return FLOORS[prefix]
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The workbench modules an import statement loads (names relative to the package)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = importer.split(".") if importer else []
            if not is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            stem = ".".join(["workbench", *base, *([node.module] if node.module else [])])
        else:
            stem = node.module or ""
        # `from pkg import submodule` loads the submodule; `from pkg import function`, the package
        names = [f"{stem}.{a.name}" if _known(f"{stem}.{a.name}") else stem for a in node.names]
    found = []
    for name in names:
        if name != "workbench" and not name.startswith("workbench."):
            continue
        name = name.removeprefix("workbench").removeprefix(".")
        while name not in MODULES and "." in name:  # `import workbench.pkg.function`-like paths
            name = name.rsplit(".", 1)[0]
        if name in MODULES and name != importer:
            found.append(name)
    return found


def _known(dotted: str) -> bool:
    return dotted.removeprefix("workbench").removeprefix(".") in MODULES


def imports() -> list[tuple[str, str, int]]:
    """(importer, imported, line) for every executed import of a workbench module."""
    edges = []
    for module, path in MODULES.items():
        is_package = path.name == "__init__.py"

        def walk(node: ast.AST) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    for stmt in child.orelse:
                        walk(stmt)
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in dict.fromkeys(_resolve(module, is_package, child)):
                        edges.append((module, target, child.lineno))
                walk(child)

        walk(ast.parse(path.read_text(encoding="utf-8")))
    return edges


EDGES = imports()


def test_the_graph_sees_known_imports():
    # the walker itself: module-level, relative, function-level and TYPE_CHECKING imports
    pairs = {(a, b) for a, b, _ in EDGES}
    assert ("experiment", "config") in pairs and ("costs", "prices") in pairs and ("chunking", "tokens") in pairs
    assert ("evaluation.reranker_training", "evaluation.reranker_evaluation") in pairs
    assert {b for a, b in pairs if a == "results"} == {"types"}  # config only for annotations


def test_every_module_has_a_floor():
    missing = sorted(m for m in MODULES if floor_of(m) is None)
    assert not missing, f"add these modules to FLOORS (and docs/architecture.md's table): {missing}"


def test_no_import_reaches_a_higher_floor():
    upward = [
        f"workbench/{MODULES[a].relative_to(PACKAGE)}:{line} imports {b} (floor {floor_of(a)} -> {floor_of(b)})"
        for a, b, line in _upward()
        if (a, b) not in PENDING
    ]
    assert not upward, "lower floors never import higher ones outside TYPE_CHECKING:\n" + "\n".join(upward)


def _upward() -> list[tuple[str, str, int]]:
    return [(a, b, line) for a, b, line in EDGES
            if floor_of(a) is not None and floor_of(b) is not None and floor_of(b) > floor_of(a)]


def test_pending_violations_still_exist():
    fixed = set(PENDING) - {(a, b) for a, b, _ in _upward()}
    assert not fixed, f"fixed, so delete from PENDING: {sorted(fixed)}"


def find_cycle(edges: list[tuple[str, str, int]]) -> list[str] | None:
    graph: dict[str, set[str]] = {}
    for a, b, _ in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle([("a", "b", 1), ("b", "c", 1)]) is None
    assert find_cycle([("a", "b", 1), ("b", "c", 1), ("c", "a", 9)]) == ["a", "b", "c", "a"]


def test_no_import_circle():
    cycle = find_cycle(EDGES)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", ["results", "prices", "tokens"])
def test_floor_one_and_two_modules_import_no_stage(module):
    assert all(floor_of(b) <= 2 for a, b, _ in EDGES if a == module)
