"""Imports point one way: each top-level package or module of ``claude_bridge`` sits on a layer,
and imports only from its own layer or the layers below. No two packages import each other,
however indirectly.

Every import counts, also one inside a function (moving an import into a function hides a cycle,
it does not remove one); only imports under ``if TYPE_CHECKING:`` are left out of the package
checks, since they never run. Between single files none may close a circle, not even those.
A new top-level module must be given a layer here.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "claude_bridge"
ROOT = "claude_bridge"
"""The package's own ``__init__`` (``__version__``), as a node."""

LAYERS: list[set[str]] = [
    # Entry points: the command line, and the programs it runs.
    {"__main__", "cli"},
    {
        "app",
        "doctor",
        "provision",
        "devenv",
        "installer",
        "runner",
        "export_markdown",
        "mcp_server",
    },
    # What the composition root attaches for operators: /health, /metrics, the threads API.
    {"ops", "api"},
    # The flows: a hook event in, delivered to Matrix; Matrix events back to the session.
    {"hooks", "delivery", "control"},
    # Where an event goes and what has been shown; catch-up fills gaps from the transcript.
    {"router", "spaces", "catchup", "history", "coalesce", "ownership", "retention"},
    # The homeserver's side: its client, the appservice listener, the inbound queue. It hands
    # Matrix events up through callbacks, so it never imports a flow.
    {"matrix"},
    # How events look in Matrix, and what is stored.
    {"render", "store", "permissions", "token_access", "room_policy", "room_state", "registration"},
    {"worker", "slots"},
    # The vocabulary everything shares.
    {
        "events",
        "config",
        "metrics",
        "ids",
        "log",
        "errors",
        "files",
        "shim",
        "host_files",
        "identicon",
        "event_loop",
        "collector",
        ROOT,
    },
]

ALLOWED_CYCLES: list[set[str]] = []
"""Package cycles still to be broken. It may only shrink; empty, the test is strict."""
ALLOWED_FILE_CYCLES: list[set[str]] = []
"""Modules that import each other, still to be untangled; it may only shrink."""


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module (the submodule, for ``from package import submodule``)
    where: str  # file:line
    typing_only: bool  # under ``if TYPE_CHECKING:``


@functools.cache
def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[dotted.removesuffix(".__init__")] = path
    return found


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` bodies."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for stmt in node.body:
                skip.update(id(n) for n in ast.walk(stmt))
    return skip


def _imported(node: ast.AST, modules: Collection[str]) -> list[str]:
    """The modules ``node`` imports."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        names = [f"{node.module}.{a.name}" for a in node.names]
        return [n if n in modules else node.module for n in names]
    return []


@functools.cache
def imports() -> list[Import]:
    modules = _modules()
    found = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        typing_only = _type_checking_only(tree)
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', 0)}"
            assert not (isinstance(node, ast.ImportFrom) and node.level), (
                f"{where}: relative import; write it absolute so this test sees it"
            )
            for target in dict.fromkeys(_imported(node, modules)):
                if target in modules and target != source:
                    found.append(Import(source, target, where, id(node) in typing_only))
    return found


def node(module: str) -> str:
    """The top-level package or module: ``claude_bridge.a.b`` → ``a``; ``claude_bridge`` → the
    package's own ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def nodes() -> set[str]:
    return {node(m) for m in _modules()}


def cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return found


def package_imports() -> list[Import]:
    """The imports that run, between top-level packages."""
    return [
        Import(node(i.source), node(i.target), i.where, False)
        for i in imports()
        if not i.typing_only and node(i.source) != node(i.target)
    ]


def _check_cycles(found: list[Import], allowed: list[set[str]]) -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for imp in found:
        edges[imp.source].add(imp.target)
    remaining = cycles(edges)
    unexpected = [c for c in remaining if c not in allowed]
    detail = [
        f"{imp.where}: {imp.source} → {imp.target}"
        for c in unexpected
        for imp in found
        if imp.source in c and imp.target in c
    ]
    assert unexpected == [], "import cycles:\n" + "\n".join(detail)
    gone = [c for c in allowed if c not in remaining]
    assert gone == [], f"these cycles are broken now; take them off the allowed list: {gone}"


def test_no_package_imports_another_that_imports_it_back() -> None:
    _check_cycles(package_imports(), ALLOWED_CYCLES)


def test_no_two_files_import_each_other() -> None:
    """Within packages too, and for types only too: two files that need each other are one
    thing to understand, whatever the import says."""
    _check_cycles(imports(), ALLOWED_FILE_CYCLES)


def test_every_package_has_one_layer() -> None:
    placed = [n for layer in LAYERS for n in layer]
    assert len(placed) == len(set(placed)), "a package is on two layers"
    assert nodes() - set(placed) == set(), "give these a layer in LAYERS"
    assert set(placed) - nodes() == set(), "these are gone; take them off LAYERS"


def test_imports_point_down_the_layers() -> None:
    level = {n: i for i, layer in enumerate(LAYERS) for n in layer}
    upward = [
        f"{imp.where}: {imp.source} (layer {level[imp.source]}) imports {imp.target} "
        f"(layer {level[imp.target]})"
        for imp in package_imports()
        if level[imp.target] < level[imp.source]
    ]
    assert upward == [], "imports from a higher layer:\n" + "\n".join(upward)


def test_the_checks_see_what_they_must() -> None:
    """The checks can fail: a cycle is found, a function-level import counts, and an import
    under TYPE_CHECKING does not."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from claude_bridge.app import Bridge\n"
        "def f():\n    from claude_bridge.store import Outbox\n"
    )
    skip = _type_checking_only(tree)
    modules = _modules()
    seen = [m for n in ast.walk(tree) if id(n) not in skip for m in _imported(n, modules)]
    assert seen == ["typing", "claude_bridge.store"]
    assert ["claude_bridge.render.events"] == _imported(
        ast.parse("from claude_bridge.render import events").body[0], modules
    )
    by_source = {imp.source for imp in package_imports() if imp.target == "cli"}
    assert by_source == {"__main__"}  # claude_bridge/__main__.py: from claude_bridge.cli import …
