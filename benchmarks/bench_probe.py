"""Evaluation-stage costs found by profiling the demo on a 2-core CPU, before vs after.

The demo's evaluation jobs (spectrum, noise: 36 of its jobs) were its second-largest
cost after training. Profiling them (py-spy and ``python -X importtime``) showed two
things, both fixed; this module measures each fix against the code path it replaced,
alternately in the same run:

* **probe fit** — lbfgs's BLAS products on all cores (before) vs on one thread (after,
  :data:`kdspectra.metrics.probe.BLAS_THREADS`), for a probe the size of the paper's
  selection subsample (5000×768 features, 100 classes).
* **job start-up** — the time from a fresh interpreter to a job ready to work, for a job
  that never uses torch (spectrum, noise, collect, tables, figures): importing torch at
  start-up because :mod:`kdspectra.runtime.device` imported it at module level (before) vs the
  lazy import now (after). Each is a real subprocess, as a Snakemake ``script:`` job is.

Rates are fits/s and jobs/s (higher is better), so ratio = after ÷ before is the
speed-up.

    PYTHONPATH=src python benchmarks/bench_probe.py [--full]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdspectra.metrics.probe import fit_probe

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/common.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_main

SRC = Path(__file__).resolve().parents[1] / "src"
JOB_START = (
    "from kdspectra.runtime.logs import job\n"
    "from kdspectra.stages import measure_model\n"
    "with job(None, 1):\n"
    "    pass\n"
)


def probe_data(n: int, dim: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian class clusters: separable enough to converge, hard enough to iterate."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = centers[y] * 0.3 + rng.normal(size=(n, dim)).astype(np.float32)
    return x, y


def alternate(after: Callable[[], None], before: Callable[[], None], repeats: int) -> tuple:
    """Median rates (1/s) of both, timed alternately after one untimed call each."""
    after()
    before()
    rates: dict[str, list[float]] = {"after": [], "before": []}
    for _ in range(repeats):
        for name, fn in (("after", after), ("before", before)):
            start = time.perf_counter()
            fn()
            rates[name].append(1.0 / (time.perf_counter() - start))
    return statistics.median(rates["after"]), statistics.median(rates["before"])


def start_job(eager_torch: bool) -> Callable[[], None]:
    """A fresh interpreter that starts a non-torch job, optionally importing torch first."""
    code = ("import torch\n" if eager_torch else "") + JOB_START
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }

    def run() -> None:
        subprocess.run([sys.executable, "-c", code], check=True, env=env)

    return run


def _row(name: str, unit: str, after: float, before: float, repeats: int) -> dict:
    return {
        "name": name,
        "unit": unit,
        "ours": round(after, 3),
        "baseline": round(before, 3),
        "ratio": round(after / before, 2),
        "repeats": repeats,
    }


def run(*, quick: bool = True, device: str = "cpu", smoke: bool = False) -> list[dict]:
    """Both fixes against what they replaced; ``device`` is unused (CPU-only stages).
    ``smoke`` (CI): 300 × 64 rows of 10 classes, once: the code path, not the speed."""
    del device
    repeats = 1 if smoke else 3 if quick else 7
    n = 300 if smoke else 2000 if quick else 5000
    dim, classes = (64, 10) if smoke else (768, 100)
    x, y = probe_data(n, dim, classes)
    cores = os.cpu_count() or 1
    fit = dict(max_iter=100, Cs=(0.1, 1.0))
    after, before = alternate(
        lambda: fit_probe(x, y, **fit),
        lambda: fit_probe(x, y, blas_threads=cores, **fit),
        repeats,
    )
    name = f"probe_fit_{n}x{dim}_{classes}cls_blas1_vs_{cores}"
    rows = [_row(name, "fits/s", after, before, repeats)]
    after, before = alternate(start_job(False), start_job(True), repeats)
    rows.append(_row("job_startup_lazy_vs_eager_torch", "jobs/s", after, before, repeats))
    return rows


def main() -> None:
    bench_main(run, __doc__, "5000-row probe, 7 repeats")


if __name__ == "__main__":
    main()
