"""The library's layering, read from the imports themselves (lazy imports included).

``docs/architecture.md`` states the import order in one line (``Import order (bottom → top):
a → b → …``); these tests hold the code to it: a module imports only modules of its own
layer or of layers below, the module graph has no cycle, and a subpackage's
``__init__.py`` holds a docstring only (``common.smk`` imports parts of the library when
the Snakefile is parsed; a re-export that pulled in torch would cost every job its
start-up). The graph reader is ``tools/imports.py`` (shared with ``make diagrams``).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports():
    spec = importlib.util.spec_from_file_location("kd_imports", ROOT / "tools" / "imports.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["kd_imports"] = module
    spec.loader.exec_module(module)
    return module


imports = _imports()


def test_architecture_states_every_folder_once() -> None:
    order = imports.layer_order()
    assert len(order) == len(set(order)), f"a layer is named twice: {order}"
    missing = {*imports.folders(), imports.GROUND, imports.ENTRY} - set(order)
    assert not missing, f"docs/architecture.md's import order misses {sorted(missing)}"


def test_every_import_points_down_or_sideways() -> None:
    bad = imports.violations(imports.graph(), imports.layer_order())
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles_lazy_imports_included() -> None:
    cycle = imports.find_cycle(imports.graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_reader_sees_lazy_and_from_package_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "def f():\n"
        "    from kdspectra.report import tables\n"
        "    import kdspectra.metrics.geometry as g\n"
        "from kdspectra.errors import ConfigError\n",
        encoding="utf-8",
    )
    known = {"report.tables", "metrics.geometry", "errors", "report.render"}
    assert imports.imports_of([source], known) == {"report.tables", "metrics.geometry", "errors"}


def test_an_upward_import_is_a_violation() -> None:
    order = imports.layer_order()
    edges = {"metrics.probe": {"report.tables", "errors"}, "report.tables": {"metrics.probe"}}
    assert imports.violations(edges, order) == [
        "metrics.probe (metrics) imports report.tables (report)"
    ]


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert imports.find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert imports.find_cycle({"a": {"b"}, "b": set()}) is None


INITS = sorted((ROOT / "src" / "kdspectra").glob("*/__init__.py"))


@pytest.mark.parametrize("init", INITS, ids=lambda p: p.parent.name)
def test_subpackage_init_is_docstring_only(init: Path) -> None:
    if init.parent.name == "stages":
        pytest.skip("stages/__init__ is the rule registry (rule name -> stage), by design")
    body = ast.parse(init.read_text(encoding="utf-8")).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr), f"{init}: docstring only"
    assert isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)


# One concern per module: past this a module has grown a second concern (docs/architecture.md).
MAX_MODULE_LINES = 450


def test_no_module_is_over_the_line_limit() -> None:
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in (ROOT / "src" / "kdspectra").rglob("*.py")
    }
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}
