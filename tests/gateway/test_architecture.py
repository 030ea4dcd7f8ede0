"""``gateway/`` is layered: no import cycles, and imports point down the layers.

Every import counts — at module level, inside functions (the CLI's lazy imports) and under
``TYPE_CHECKING`` — because each is a dependency a reader has to follow. The layers, bottom to
top (DESIGN.md): common < journal < sinks, notify < pipeline < transport, bridge, history,
fleet, lake < ops < cli. ``gateway/settings.py`` assembles every package's settings section, so
it sits at the ops level. A package may import its own modules and any package on a lower
level; imports between packages on one level are listed below with their reason.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"

LEVELS: dict[str, int] = {
    "common": 0,
    "journal": 1,
    "sinks": 2,
    "notify": 2,
    "pipeline": 3,
    "transport": 4,
    "bridge": 4,
    "history": 4,
    "fleet": 4,
    "lake": 4,
    "ops": 5,
    "cli": 6,
}

# Imports between packages of one level, (importer, imported) -> why.
SAME_LEVEL: dict[tuple[str, str], str] = {
    ("notify", "sinks"): "notification targets ship through the Kinesis sink and dead-letter "
    "with the local sink's files",
}

# Imports that point up, (importing module, imported module) -> why. Each is a move still to
# make; none may be added. None left.
UPWARD: dict[tuple[str, str], str] = {}

# Module cycles still being taken apart. None: the MQTT listener <-> protocol cycle is gone.
CYCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(GATEWAY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in GATEWAY.rglob("*.py")}


def imported(module: str, path: Path) -> Iterator[str]:
    """The gateway modules ``module`` imports, wherever the import statement is."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from gateway.ops import logs` imports the module gateway.ops.logs
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        yield from (name for name in names if name in MODULES and name != module)


GRAPH = {module: set(imported(module, path)) for module, path in MODULES.items()}


def package(module: str) -> str:
    """The layer package of a module; ``gateway.settings`` counts as ops."""
    parts = module.split(".")
    return "ops" if parts[1:] == ["settings"] else parts[1] if len(parts) > 1 else ""


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_gateway_package_has_a_level() -> None:
    packages = {package(m) for m in MODULES} - {""}
    assert packages <= set(LEVELS), sorted(packages - set(LEVELS))


def test_the_import_graph_sees_function_level_and_type_checking_imports() -> None:
    assert "gateway.common.sink" in GRAPH["gateway.cli.main"]  # in _user_error
    assert "gateway.notify.service" in GRAPH["gateway.pipeline.accept"]  # TYPE_CHECKING


def test_cycles_are_found_through_any_number_of_modules() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [{"a", "b", "c"}]


def test_no_import_cycles() -> None:
    unexpected = [sorted(c) for c in cycles(GRAPH) if frozenset(c) not in CYCLES]
    assert unexpected == []


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for module, targets in GRAPH.items():
        here = package(module)
        for target in targets:
            there = package(target)
            if not here or here == there or (module, target) in UPWARD:
                continue
            if LEVELS[there] > LEVELS[here] or (
                LEVELS[there] == LEVELS[here] and (here, there) not in SAME_LEVEL
            ):
                wrong.append(f"{module} -> {target}")
    assert sorted(wrong) == []


def test_the_listed_exceptions_are_still_needed() -> None:
    """An exception whose import is gone must leave the lists, so none outlives its reason."""
    packages = {(package(m), package(t)) for m, ts in GRAPH.items() for t in ts}
    assert set(SAME_LEVEL) <= packages
    assert all(target in GRAPH[module] for module, target in UPWARD)
    assert {frozenset(c) for c in cycles(GRAPH)} >= CYCLES
