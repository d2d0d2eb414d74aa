"""The library's import graph and layer order, read from the source (no import, no torch).

One reader for ``tests/test_layers.py`` (which holds the code to the order) and
``tools/diagrams.py`` (which draws it). The order itself is stated once, in
``docs/architecture.md``, on the line ``Import order (bottom → top): a → b → …``.

Module names are dotted and relative to the package (``metrics.geometry``, ``config``);
``stages`` counts as one module (the glue layer: one function per rule).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "kdspectra"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
ORDER_LINE = re.compile(r"^Import order \(bottom → top\): (.+)$", re.M)
GROUND = "ground"  # the package's top-level modules other than the entry points
ENTRY = "cli"  # the entry points: cli.py and __main__.py
COLLAPSED = frozenset({"stages"})  # folders drawn and checked as one module


def layer_order(path: Path = ARCHITECTURE) -> list[str]:
    """The layers, bottom first, as ``docs/architecture.md`` states them."""
    found = ORDER_LINE.search(path.read_text(encoding="utf-8"))
    if not found:
        raise ValueError(f"{path}: no line 'Import order (bottom → top): a → b → …'")
    return [name.strip(" `") for name in found.group(1).split("→")]


def folders() -> list[str]:
    """The package's subpackages (one per layer)."""
    return sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def module_of(path: Path) -> str:
    """Relative dotted name of a source file: ``metrics/geometry.py`` → ``metrics.geometry``;
    anything under ``stages/`` is ``stages``; "" for an ``__init__.py`` of a layer folder
    (docstring only: not a module of the graph)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[0] in COLLAPSED:
        return parts[0]
    return "" if parts[-1] == "__init__" else ".".join(parts)


def layer_of(module: str) -> str:
    """``metrics.geometry`` → ``metrics``; top-level modules → ground, or cli for entry points."""
    head = module.split(".")[0]
    if head in folders():
        return head
    return ENTRY if head in ("cli", "__main__") else GROUND


def sources() -> dict[str, list[Path]]:
    """Every module's source files (several for a collapsed folder)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_of(path)
        if name:  # __init__ files of the package and its layers hold no code
            found.setdefault(name, []).append(path)
    return found


def _resolve(dotted: str, known: set[str]) -> str | None:
    """``kdspectra.metrics.geometry[.attr]`` → the longest known module it names."""
    parts = dotted.split(".")[1:]
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if name in known:
            return name
    return None


def imports_of(paths: list[Path], known: set[str]) -> set[str]:
    """Package modules imported anywhere in ``paths`` (module level or inside functions)."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] != "kdspectra":
                    continue
                for alias in node.names:  # `from kdspectra.report import tables`
                    target = _resolve(f"{node.module}.{alias.name}", known)
                    if target:
                        found.add(target)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("kdspectra."):
                        target = _resolve(alias.name, known)
                        if target:
                            found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    """Module → the package modules it imports (itself excluded)."""
    src = sources()
    known = set(src)
    return {name: imports_of(paths, known) - {name} for name, paths in src.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def violations(edges: dict[str, set[str]], order: list[str]) -> list[str]:
    """Every import that points to a layer above its own module's."""
    rank = {name: i for i, name in enumerate(order)}
    return [
        f"{mod} ({layer_of(mod)}) imports {dep} ({layer_of(dep)})"
        for mod, deps in sorted(edges.items())
        for dep in sorted(deps)
        if rank[layer_of(dep)] > rank[layer_of(mod)]
    ]
