"""Shared test helpers: the one Snakemake runner, and one summary line per fault-injection
scenario (issue 8).

Every test that runs the workflow builds its command with :func:`snakemake_command` and
runs it with :func:`run_snakemake` (or ``subprocess.Popen`` for a run it signals), so the
Snakefile, working directory and interpreter are chosen in one place.

Tests mark themselves ``@pytest.mark.scenario("<id> <what is injected> -> <what must
happen>")``. After the run, the terminal summary prints one line per scenario with its
outcome and number of cases, so ``make faults`` (and any CI log) shows which failure
modes are covered and whether they still hold without reading test names. A test may add
a short note to its line with ``record_property("detail", "...")``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The snakemake of the interpreter running the tests (the project's venv or conda env).
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake_command(workdir: Path, *args: str, prefix: Sequence[str] = ()) -> list[str]:
    """The repository's Snakefile run in ``workdir``; ``prefix`` wraps it (e.g. ``timeout``)."""
    return [
        *prefix,
        *(str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir)),
        *args,
    ]


def run_snakemake(
    workdir: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
    prefix: Sequence[str] = (),
    merge_output: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the workflow in ``workdir`` and wait for it; the caller checks the outcome.

    ``merge_output`` sends stderr into stdout (one console, in order).
    """
    return subprocess.run(
        snakemake_command(workdir, *args, prefix=prefix),
        cwd=workdir,
        env=env,
        text=True,
        timeout=timeout,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
    )


_SCENARIO: dict[str, str] = {}  # nodeid -> scenario title
_OUTCOME: dict[str, str] = {}  # nodeid -> "passed" | "failed" | "skipped"
_DETAILS: dict[str, list[str]] = {}  # scenario title -> notes recorded by its tests


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "scenario(title): fault-injection scenario this test belongs to (summary)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("scenario")
        if marker is not None:
            _SCENARIO[item.nodeid] = str(marker.args[0])


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    title = _SCENARIO.get(report.nodeid)
    if title is None:
        return
    if report.failed:
        _OUTCOME[report.nodeid] = "failed"
    elif report.skipped and _OUTCOME.get(report.nodeid) != "failed":
        _OUTCOME[report.nodeid] = "skipped"
    elif report.when == "call" and report.passed:
        _OUTCOME.setdefault(report.nodeid, "passed")
    if report.when == "call":
        notes = _DETAILS.setdefault(title, [])
        notes += [
            str(v) for k, v in report.user_properties if k == "detail" and str(v) not in notes
        ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _OUTCOME:
        return
    by_title: dict[str, list[str]] = {}
    for nodeid, outcome in _OUTCOME.items():
        by_title.setdefault(_SCENARIO[nodeid], []).append(outcome)
    terminalreporter.section("fault-injection scenarios")
    for title in sorted(by_title, key=_order):
        outcomes = by_title[title]
        status = "FAIL" if "failed" in outcomes else "SKIP" if "skipped" in outcomes else "PASS"
        counts = f"{outcomes.count('passed')}/{len(outcomes)} cases"
        notes = "; ".join(_DETAILS.get(title, []))
        terminalreporter.write_line(
            f"{status}  {title}  [{counts}]" + (f"  ({notes})" if notes else "")
        )


def _order(title: str) -> tuple[tuple[int, ...], str]:
    """Sort "1.2 ..." before "1.10 ..." (numeric ids), untagged titles last."""
    head = title.split(maxsplit=1)[0]
    parts = head.split(".")
    if all(part.isdigit() for part in parts):
        return tuple(int(part) for part in parts), title
    return (10**6,), title


def distillation_data(n: int = 64, d: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images and teacher rows that share a mean direction (so a student can
    learn them): the training tests' common input, one definition for all of them."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    teacher = (rng.standard_normal(d) + 0.5 * rng.standard_normal((n, d))).astype(np.float32)
    return images, teacher
