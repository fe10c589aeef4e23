"""The layout rules, over every module of every subpackage: the layers of docs/design.md
import only downwards, no import cycles (function-level imports included), only the IPython
glue imports IPython, no module over the size limit, and few of the package's own imports
hidden inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import kernelmagic

PACKAGE = Path(kernelmagic.__file__).parent
# The IPython glue; everything else is the library, usable from plain Python.
FRONT_ENDS = {"__init__", "frontends.magics", "frontends.ipython_extension"}
# Modules are sized by idea, not by a cap (issue 32): this is only the bound past which a
# module surely holds two ideas, the one ../shared/tools/structure_check.py uses too.
MAX_LINES = 900
MAX_IMPORTS_IN_FUNCTIONS = 15

# The layers of docs/design.md and the layers each may import besides itself: data flows
# down. The rules (domain) touch no storage; storage may use the rules' plain types and
# checks. Nothing below the front ends imports `commands` (issue 32: one module per command,
# above the operations) or `frontends`. `base` is what every layer may use.
BASE = {"errors", "version", "reading", "jobs"}
PUBLIC = {"specs", "server"}  # the library's public faces, over the operations
ENTRY = {"__init__", "__main__"}  # what %load_ext and `python -m kernelmagic` start
MAY_IMPORT = {
    "base": set(),
    "domain": {"base"},
    "storage": {"base", "domain"},
    "batch": {"base"},
    "restart": {"base", "domain"},
    "settings": {"base", "domain"},
    "options": {"base", "domain", "storage"},
    "operations": {"base", "domain", "storage", "settings", "options", "restart"},
    "commands": {
        *("base", "domain", "storage", "settings", "options", "restart", "batch", "operations"),
    },
    "public": {
        *("base", "domain", "storage", "settings", "options", "restart", "operations", "commands"),
    },
}
UNRESTRICTED = {"frontends", "entry"}
# Imports against the layers that are known and dated; each names why and when it goes.
# (module, what it imports) pairs allowed against the layers, each with its reason.
EXCEPTIONS: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _owner(name: str, modules: set[str]) -> str | None:
    """The module ``name`` is, or the package module it lies in."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


class _Imports(ast.NodeVisitor):
    """The package's own modules a file imports (and how many inside functions), and
    whether it imports IPython."""

    def __init__(self, current: str, is_package: bool, modules: set[str]) -> None:
        self.current, self.is_package, self.modules = current, is_package, modules
        self.found: set[str] = set()
        self.lines: list[tuple[str, int]] = []  # (imported module, line), for messages
        self.in_functions = 0
        self.ipython = False
        self._depth = 0

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def _own(self, dotted: str, line: int) -> None:
        target = _owner(dotted, self.modules)
        if target and target != self.current:
            self.found.add(target)
            if (target, line) not in self.lines:  # one line may import several names
                self.lines.append((target, line))
            self.in_functions += bool(self._depth)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.ipython |= alias.name.split(".")[0] == "IPython"
            if alias.name.startswith("kernelmagic."):
                self._own(alias.name.removeprefix("kernelmagic."), node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self.ipython |= node.level == 0 and module.split(".")[0] == "IPython"
        if node.level:
            base = self.current.split(".") if self.current != "__init__" else []
            base = base if self.is_package else base[:-1]
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            module = ".".join([*base, *([node.module] if node.module else [])])
        elif module == "kernelmagic" or module.startswith("kernelmagic."):
            module = module.removeprefix("kernelmagic").lstrip(".")
        else:
            return
        for alias in node.names:
            sub = f"{module}.{alias.name}" if module else alias.name
            self._own(sub if sub in self.modules else module or "__init__", node.lineno)


def _graph() -> dict[str, _Imports]:
    modules = _modules()
    names = set(modules)
    graph = {}
    for name, path in modules.items():
        visitor = _Imports(name, path.name == "__init__.py", names)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[name] = visitor
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
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


def test_every_subpackage_is_walked():
    names = set(_modules())
    assert {"frontends.cli", "commands.install", "domain.policy", "storage.atomic"} <= names


def test_no_import_cycles():
    # A package's __init__ naming its own children is no cycle of ideas.
    graph = {
        name: {d for d in v.found if not (v.is_package and d.startswith(name + "."))}
        for name, v in _graph().items()
    }
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_checker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_library_modules_never_import_ipython():
    offenders = {n for n, v in _graph().items() if v.ipython and n not in FRONT_ENDS}
    assert not offenders


def test_few_own_imports_hide_inside_functions():
    assert sum(v.in_functions for v in _graph().values()) <= MAX_IMPORTS_IN_FUNCTIONS


def test_no_module_is_over_the_size_limit():
    sizes = {n: len(p.read_text().splitlines()) for n, p in _modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


def _layer(module: str) -> str:
    top = module.split(".")[0]
    if top in BASE:
        return "base"
    if top in PUBLIC:
        return "public"
    if top in ENTRY:
        return "entry"
    return top


def _layer_violations(imports: dict[str, list[tuple[str, int]]]) -> list[str]:
    """``module:line imports other`` for each import that points up or sideways."""
    found = []
    for module, lines in sorted(imports.items()):
        layer = _layer(module)
        if layer in UNRESTRICTED:
            continue
        if layer not in MAY_IMPORT:
            found.append(f"{module} is in no layer: add it to MAY_IMPORT and docs/design.md")
            continue
        allowed = MAY_IMPORT[layer] | {layer}
        for target, line in lines:
            if _layer(target) not in allowed and (module, target) not in EXCEPTIONS:
                found.append(
                    f"kernelmagic.{module} (line {line}) imports kernelmagic.{target}: "
                    f"{layer} may import only {', '.join(sorted(allowed))}"
                )
    return found


def test_layers_import_only_downwards():
    found = _layer_violations({name: v.lines for name, v in _graph().items()})
    assert not found, "\n".join(found)


def test_every_exception_to_the_layers_is_still_needed():
    graph = _graph()
    stale = {(m, t) for m, t in EXCEPTIONS if t not in graph[m].found}
    assert not stale, f"no longer imported, drop from EXCEPTIONS: {sorted(stale)}"


def test_the_layer_check_names_an_import_that_points_up():
    found = _layer_violations(
        {
            "domain.policy": [("storage.atomic", 7), ("errors", 3)],
            "storage.atomic": [("domain.policy", 9)],
            "operations.install": [("commands.install", 12), ("frontends.cli", 14)],
            "commands.install": [("operations.install", 5)],
            "newlayer.x": [],
        }
    )
    assert found == [
        "kernelmagic.domain.policy (line 7) imports kernelmagic.storage.atomic: domain may "
        "import only base, domain",
        "newlayer.x is in no layer: add it to MAY_IMPORT and docs/design.md",
        "kernelmagic.operations.install (line 12) imports kernelmagic.commands.install: "
        "operations may import only base, domain, operations, options, restart, settings, storage",
        "kernelmagic.operations.install (line 14) imports kernelmagic.frontends.cli: "
        "operations may import only base, domain, operations, options, restart, settings, storage",
    ]
