"""Every benchmark runs under ``make test`` in its smoke mode: tiny sizes, one repeat.

A benchmark that only ``make bench`` runs breaks unseen (``bench_train.py`` failed with a
``TypeError`` after a refactor of the training loop and nobody noticed). These tests check
that each ``benchmarks/bench_*.py`` (found by glob, so a new one is covered without editing
this file) and ``benchmarks/paper_scale.py --smoke`` complete and return their rows in the
shape ``run_all.py`` reports. They are not timed: the numbers of a smoke run mean nothing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
ROW_KEYS = ("name", "unit", "ours", "baseline", "ratio", "repeats")  # run_all.py's columns


@pytest.fixture(scope="module")
def run_all():
    """benchmarks/run_all.py as a module: its loader is the one ``make bench`` uses."""
    sys.path.insert(0, str(BENCH))
    try:
        import run_all as module
    finally:
        sys.path.remove(str(BENCH))
    return module


@pytest.fixture
def one_thread():
    """Smoke sizes run fastest on one thread; restore the process's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in BENCH.glob("bench_*.py")))
def test_benchmark_smoke_mode_returns_its_rows(run_all, one_thread, name: str) -> None:
    module = run_all.load_module(name, BENCH / f"{name}.py")
    rows = module.run(quick=True, device="cpu", smoke=True)
    assert rows, f"{name}: no rows"
    for row in rows:
        assert set(ROW_KEYS) <= set(row), f"{name}: {row}"
        assert row["ours"] > 0 and row["baseline"] > 0, row
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, row


@pytest.mark.slow
def test_paper_scale_smoke_writes_its_report(tmp_path: Path) -> None:
    """The documented command, as a user runs it (its own process, its own arguments)."""
    out = tmp_path / "paper_scale.json"
    overlay = tmp_path / "one_seed.yaml"
    overlay.write_text("seeds: [0]\n")
    command = [
        sys.executable, str(BENCH / "paper_scale.py"), "--smoke", "--device", "cpu",
        "--threads", "1", "--configfile", str(overlay), "--max-steps", "2", "--max-probes", "1",
        "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["jobs"] and all(job["seconds"] > 0 for job in report["jobs"])
    assert {"train", "probe"} <= {row["stage"] for row in report["stages"]}
    assert out.with_suffix(".md").is_file()
