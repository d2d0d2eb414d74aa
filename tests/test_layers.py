"""The library's layering, read from the imports themselves (lazy imports included).

``docs/architecture.md`` states the import order in one line (``Import order (bottom → top):
a → b → …``); this test holds the code to it: a module imports only modules of its own
layer or of layers below, the module graph has no cycle, and a subpackage's
``__init__.py`` holds a docstring only (``common.smk`` imports parts of the library when
the Snakefile is parsed; a re-export that pulled in torch would cost every job its
start-up).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "kdspectra"
ORDER_LINE = re.compile(r"^Import order \(bottom → top\): (.+)$", re.M)
GROUND = "ground"  # the package's top-level modules other than the entry points
ENTRY = "cli"  # the entry points: cli.py and __main__.py


def layer_order() -> list[str]:
    """The layers, bottom first, as ``docs/architecture.md`` states them."""
    found = ORDER_LINE.search((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert found, "docs/architecture.md must state 'Import order (bottom → top): a → b → …'"
    return [name.strip(" `") for name in found.group(1).split("→")]


def module_of(path: Path) -> str:
    """Dotted module name of a source file (``kdspectra.metrics.geometry``)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    """``kdspectra.<folder>.*`` → folder; top-level modules → ground, or cli for entry points."""
    parts = module.split(".")
    if len(parts) > 2 or (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return ENTRY if parts[1] in ("cli", "__main__") else GROUND


def sources() -> dict[str, Path]:
    return {module_of(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Package modules imported anywhere in ``path`` (module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("kdspectra"):
                continue
            for alias in node.names:  # `from kdspectra.report import tables` is a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("kdspectra."))
    return {m for m in found if m in known and m != "kdspectra"}


def graph() -> dict[str, set[str]]:
    src = sources()
    known = set(src)
    return {mod: imports_of(path, known) - {mod} for mod, path in src.items()}


def test_architecture_states_every_folder_once() -> None:
    order = layer_order()
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert len(order) == len(set(order))
    assert folders | {GROUND, ENTRY} <= set(order), "a folder is missing from the order"


def test_every_import_points_down_or_sideways() -> None:
    rank = {name: i for i, name in enumerate(layer_order())}
    bad = [
        f"{mod} ({layer_of(mod)}) imports {dep} ({layer_of(dep)})"
        for mod, deps in graph().items()
        for dep in sorted(deps)
        if rank[layer_of(dep)] > rank[layer_of(mod)]
    ]
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
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


def test_no_import_cycles_lazy_imports_included() -> None:
    cycle = _find_cycle(graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize(
    "init", sorted(PACKAGE.glob("*/__init__.py")), ids=lambda p: p.parent.name
)
def test_subpackage_init_is_docstring_only(init: Path) -> None:
    if init.parent.name == "stages":  # the stage registry: rule name -> stage function
        pytest.skip("stages/__init__ maps rule names to stages (lazy imports)")
    body = ast.parse(init.read_text(encoding="utf-8")).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr), f"{init}: docstring only"
    assert isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)
