"""``make diagrams``: the two pictures of ``docs/architecture.md``, made from the code.

* ``docs/rulegraph.{dot,svg}``: Snakemake's rule graph of the paper's run with every
  optional stage switched on (``config.yaml`` + ``config/corruptions.yaml`` +
  ``teacher_view: same`` + ``infonce.projector: [none, mlp]``), so every rule of
  ``workflow/rules/`` appears once.
* ``docs/modules.{dot,svg}``: which ``kdspectra`` module imports which, read from the
  source with :mod:`ast` (``tools/imports.py``; no import, so torch is not loaded), one
  cluster per layer in the order ``docs/architecture.md`` states.

Hand-drawn diagrams drift from the code; these are regenerated, and
``tests/test_docs.py`` fails when a rule or module is missing from them. Rendering needs
Graphviz's ``dot`` (Debian/Ubuntu: ``apt install graphviz``); without it the ``.dot``
files are still written.

    python tools/diagrams.py [--skip-rulegraph]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "kdspectra"
DOCS = ROOT / "docs"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import imports  # noqa: E402  (tools/imports.py: the graph reader shared with the tests)

# Imported by nearly every module: drawn as nodes, their edges left out.
UBIQUITOUS = frozenset({"errors", "io"})
# They call into every layer (the rule table of docs/architecture.md says what each stage
# uses): drawn as nodes, their edges left out, or they would hide the library's shape.
ENTRY_POINTS = frozenset({"stages", "cli", "__main__"})


def module_names() -> list[str]:
    """Every module of the package, dotted and relative (``metrics.geometry``)."""
    return sorted(imports.sources())


def module_dot() -> str:
    """The import graph as Graphviz source, one cluster per layer. Edges into ``errors``
    and ``io`` (imported by nearly everything) and out of the entry points (which import
    nearly everything) are left out: the picture would be all edges."""
    edges = imports.graph()
    names = sorted(edges)
    lines = [
        "digraph modules {",
        "  rankdir=LR; newrank=true; ranksep=0.9;",
        '  node [shape=box, style=rounded, fontname="Helvetica", fontsize=10];',
        '  edge [color="#888888", arrowsize=0.5];',
    ]
    for i, layer in enumerate(imports.layer_order()):
        members = [n for n in names if imports.layer_of(n) == layer]
        if not members:
            continue
        lines.append(f'  subgraph cluster_{i} {{ label="{layer}"; style=rounded; color="#bbbbbb";')
        lines += [f'    "{n}";' for n in members]
        lines.append("  }")
    for name in [n for n in names if n not in ENTRY_POINTS]:
        for target in sorted(edges[name] - UBIQUITOUS):
            lines.append(f'  "{name}" -> "{target}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def rulegraph_dot() -> str:
    """Snakemake's ``--rulegraph`` of the paper run with every optional stage on."""
    overlay = DOCS / ".rulegraph-overlay.yaml"
    # The projector arm beside the plain one makes Figure 7's rule part of the graph.
    text = "training: {teacher_view: same, infonce: {projector: [none, mlp]}}\n"
    overlay.write_text(text, encoding="utf-8")
    try:
        out = subprocess.run(
            [
                str(Path(sys.executable).with_name("snakemake")),
                "--rulegraph",
                "--configfile",
                "config.yaml",
                "config/corruptions.yaml",
                str(overlay),
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        overlay.unlink()
    return out[out.index("digraph") :]


def write(name: str, dot: str) -> None:
    """``docs/<name>.dot``, and ``docs/<name>.svg`` when Graphviz is installed."""
    (DOCS / f"{name}.dot").write_text(dot, encoding="utf-8")
    if shutil.which("dot") is None:
        print(f"docs/{name}.dot written; install Graphviz to render docs/{name}.svg")
        return
    svg = subprocess.run(
        ["dot", "-Tsvg"], input=dot, check=True, capture_output=True, text=True
    ).stdout
    (DOCS / f"{name}.svg").write_text(svg, encoding="utf-8")
    print(f"docs/{name}.dot, docs/{name}.svg written")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-rulegraph", action="store_true", help="modules only")
    args = parser.parse_args(argv)
    write("modules", module_dot())
    if not args.skip_rulegraph:
        write("rulegraph", rulegraph_dot())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
