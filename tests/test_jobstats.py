"""A job measures itself: wall time from its process start, its own peak memory and CPU,
in Snakemake's benchmark format, written only when the job succeeds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from kdspectra.runtime.jobstats import COLUMNS, JobStats, process_age_s
from kdspectra.runtime.logs import job
from kdspectra.runtime.stagetimes import read_jobs, stage_times

pytestmark = pytest.mark.skipif(process_age_s() is None, reason="needs /proc (Linux)")


def test_the_wall_time_starts_with_the_process_not_with_the_measurement() -> None:
    """A job's import time is part of what its user waits for."""
    code = (
        "import time; time.sleep(0.6)\n"
        "from kdspectra.runtime.jobstats import JobStats\n"
        "print(JobStats().row()['s'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0.6 <= float(out.stdout) < 30


def test_a_row_holds_the_jobs_own_memory_cpu_and_time() -> None:
    stats = JobStats()
    before = stats.row()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:  # 0.3 s of CPU
        pass
    row = stats.row()
    assert list(row) == list(COLUMNS)
    assert row["max_rss"] >= 64 and row["max_rss"] >= before["max_rss"]
    assert row["cpu_time"] >= before["cpu_time"] + 0.3 - 0.02
    assert row["s"] >= before["s"] + 0.3 - 0.02 and row["max_pss"] == "NA"
    del block


def test_job_writes_its_times_on_success_only(tmp_path: Path) -> None:
    bench = tmp_path / "results" / "demo" / "benchmarks"
    ok, failed = bench / "train" / "a" / "seed0.tsv", bench / "train" / "a" / "seed1.tsv"
    with job(tmp_path / "ok.log", times=ok):
        pass
    with pytest.raises(RuntimeError), job(tmp_path / "failed.log", times=failed):
        raise RuntimeError("boom")
    assert ok.is_file() and not failed.exists()
    assert not list(ok.parent.glob(".*tmp*"))  # written atomically
    jobs = read_jobs(tmp_path / "results" / "demo")
    assert jobs["rule"].tolist() == ["train"] and jobs["job"].tolist() == ["train/a/seed0"]
    assert stage_times(tmp_path / "results" / "demo")["jobs"].tolist() == [1]


def test_a_forked_child_does_not_double_the_peak() -> None:
    """A child forked from a big process counts the parent's pages as its own: the row
    takes the larger peak, never the sum."""
    code = (
        "import subprocess, numpy as np\n"
        "from kdspectra.runtime.jobstats import JobStats\n"
        "stats = JobStats()\n"
        "block = np.ones(256 * 2**20 // 8)\n"
        "subprocess.run(['true'], check=True)\n"
        "print(stats.row()['max_rss'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 256 <= float(out.stdout) < 256 + 200
