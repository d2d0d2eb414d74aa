"""``make lint``: the conda env file pins the same versions as ``pyproject.toml``.

The project pins every runtime dependency twice: ``pyproject.toml`` for ``pip install``
(``make install``, CI) and ``envs/kdspectra.yaml`` for the rules' jobs under
``snakemake --use-conda``. If the two drift, the tests pass in one environment while the
pipeline's numbers are produced in another. This script fails, naming the package and
both versions, when a package is pinned differently, pinned in only one of them, or not
pinned exactly (``==``) in ``pyproject.toml``.

It also fails when a module under ``src/`` imports a third-party package that
``pyproject.toml`` does not pin (lazy imports inside functions included): such a package
works on the machine that happens to have it and breaks a clean install (``pip install``
and ``--use-conda`` install only what is pinned).

    python tools/check_pins.py [--pyproject pyproject.toml] [--env envs/kdspectra.yaml]
                               [--src src]

Needs Python 3.11+ (``tomllib``), the project's floor.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Runtime dependencies of the workflow engine itself, which runs from the project's venv
# and starts the rules' jobs: they are not needed inside the jobs' environment.
NOT_IN_JOB_ENV = frozenset({"snakemake", "snakemake-executor-plugin-slurm"})
# Conda entries that are the environment's interpreter and installer, not pinned packages.
CONDA_TOOLS = frozenset({"python", "pip"})
# Import names whose distribution (what pyproject pins) is spelled differently.
DISTRIBUTION_OF = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "open_clip": "open-clip-torch",
    "PIL": "pillow",
}
# The project's own package: imported everywhere, pinned by being this checkout.
OWN_PACKAGES = frozenset({"kdspectra"})
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(==?)\s*([^\s;,]+)\s*$")


class PinError(ValueError):
    """A file's dependency list cannot be read as exact pins."""


def normalize(name: str) -> str:
    """PEP 503 name: ``open_clip_torch`` and ``Open-CLIP.torch`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(spec: str, where: str, operators: tuple[str, ...]) -> tuple[str, str]:
    match = _PIN.match(spec)
    if not match or match[2] not in operators:
        expected = " or ".join(f"name{op}version" for op in operators)
        raise PinError(f"{where}: expected an exact pin ({expected}), found {spec!r}")
    return normalize(match[1]), match[3]


def pyproject_pins(path: Path) -> dict[str, str]:
    """``[project].dependencies`` of a pyproject file as {name: version}."""
    data = tomllib.loads(Path(path).read_text())
    deps = data.get("project", {}).get("dependencies")
    if not isinstance(deps, list):
        raise PinError(f"{path}: expected a [project] dependencies list, found {deps!r}")
    return dict(_parse(d, f"{path} [project].dependencies", ("==",)) for d in deps)


def _env_specs(deps: list[Any], where: str) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(spec, where, allowed operators) of every pinned entry, conda and pip alike."""
    for entry in deps:
        if isinstance(entry, Mapping):
            for spec in entry.get("pip", []):
                yield str(spec), f"{where} pip", ("==",)
        elif str(entry).split("=")[0].strip() not in CONDA_TOOLS:
            yield str(entry), where, ("=", "==")


def env_pins(path: Path) -> dict[str, str]:
    """Pinned packages of a conda env file (its conda and its ``pip:`` entries)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    deps = data.get("dependencies")
    if not isinstance(deps, list):
        raise PinError(f"{path}: expected a 'dependencies' list, found {deps!r}")
    return dict(_parse(*spec) for spec in _env_specs(deps, f"{path} dependencies"))


def disagreements(project: Mapping[str, str], env: Mapping[str, str]) -> list[str]:
    """One line per package whose pins differ or that only one file pins."""
    problems = []
    for name in sorted(set(project) | set(env)):
        ours, theirs = project.get(name), env.get(name)
        if ours is not None and theirs is not None and ours != theirs:
            problems.append(f"{name}: pyproject.toml pins {ours}, the env file pins {theirs}")
        elif ours is None:
            problems.append(f"{name}: the env file pins {theirs}, pyproject.toml does not list it")
        elif theirs is None and name not in NOT_IN_JOB_ENV:
            problems.append(f"{name}: pyproject.toml pins {ours}, the env file does not list it")
    return problems


def _top_level_imports(path: Path) -> set[str]:
    """First component of every absolute import in one Python file (lazy ones too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def unpinned_imports(src: Path, pinned: Mapping[str, str]) -> list[str]:
    """One line per third-party import under ``src`` whose distribution is not pinned."""
    problems = []
    for path in sorted(Path(src).rglob("*.py")):
        third_party = _top_level_imports(path) - set(sys.stdlib_module_names) - OWN_PACKAGES
        for name in sorted(third_party):
            dist = normalize(DISTRIBUTION_OF.get(name, name))
            if dist not in pinned:
                problems.append(
                    f"{path}: imports {name!r}, but pyproject.toml does not pin {dist!r} "
                    f"(add {dist}==<version> to [project].dependencies and the env file, "
                    "or map the import name in DISTRIBUTION_OF)"
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when the pins agree, 1 (with one line per problem) when they do not."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    parser.add_argument("--env", type=Path, default=ROOT / "envs" / "kdspectra.yaml")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="imports checked here")
    args = parser.parse_args(argv)
    try:
        project, env = pyproject_pins(args.pyproject), env_pins(args.env)
        problems = disagreements(project, env) + unpinned_imports(args.src, project)
    except (OSError, SyntaxError, PinError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        print(f"check_pins: {exc}", file=sys.stderr)
        return 1
    for line in problems:
        print(f"check_pins: {line}", file=sys.stderr)
    if not problems:
        print(
            f"check_pins: {args.env} and {args.pyproject} agree on {len(env)} pins; "
            f"every third-party import under {args.src} is pinned"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
