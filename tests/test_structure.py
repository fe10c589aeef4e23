"""The layout rules: no import cycles among kernelmagic's modules (function-level imports
included), and the library never imports IPython (only the magics do)."""

from __future__ import annotations

import ast
from pathlib import Path

import kernelmagic

PACKAGE = Path(kernelmagic.__file__).parent
# The IPython glue; everything else is the library, usable from plain Python.
FRONT_ENDS = {"magics"}
MAX_LINES = 450


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(kernelmagic modules imported, top-level packages imported) anywhere in the file."""
    internal, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from .x import y
                if node.module:
                    internal.add(node.module.split(".")[0])
                else:
                    internal.update(alias.name for alias in node.names)
            elif node.module and node.module.split(".")[0] == "kernelmagic":
                rest = node.module.split(".")[1:]
                internal.update(rest[:1] or [a.name for a in node.names])
            elif node.module:
                external.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                (internal.add(parts[1]) if parts[0] == "kernelmagic" else external.add(parts[0]))
    return internal, external


def _graph() -> dict[str, tuple[set[str], set[str]]]:
    modules = {p.stem: p for p in PACKAGE.glob("*.py")}
    graph = {}
    for name, path in modules.items():
        internal, external = _imports(path)
        graph[name] = ({m for m in internal if m in modules and m != name}, external)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    graph = {name: internal for name, (internal, _) in _graph().items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_checker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_library_modules_never_import_ipython():
    offenders = {
        name
        for name, (_, external) in _graph().items()
        if name not in FRONT_ENDS and "IPython" in external
    }
    assert not offenders


def test_no_module_is_over_the_size_limit():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}
