"""The CI cluster's start script (.ci/slurm/start.sh), helpers only: sourced in bash with
fake ``srun``/``sinfo``/``squeue`` on PATH, so no daemon starts and no root is needed.

Once, on a loaded machine, srun printed "job queued and waiting for resources" into the
value the smoke test compared, and CI failed before any test ran.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START = REPO / ".ci" / "slurm" / "start.sh"
QUEUED = "srun: job 2 queued and waiting for resources"


def helpers(tmp_path: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in bash after sourcing start.sh (its helpers; nothing is started)."""
    state = tmp_path / "state"
    (state / "log").mkdir(parents=True, exist_ok=True)
    full_env = {
        **{k: v for k, v in os.environ.items() if k != "KDSPECTRA_SLURM_MEM_MB"},
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SLURM_CI_DIR": str(state),
        **env,
    }
    cmd = ["bash", "-c", f'source "{START}"; HOST=node1; {script}']
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=full_env)


def fake(tmp_path: Path, name: str, body: str) -> None:
    """Put an executable ``name`` (a bash script) first on the helpers' PATH."""
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)


@pytest.mark.parametrize(
    ("text", "line"),
    [("0", "0"), ("0\n", "0"), ("0\r\n", "0"), ("node1\n", "node1"), ("", None),
     (f"{QUEUED}\n0", None), (f"0\n{QUEUED}", None)],
)  # fmt: skip
def test_one_line_accepts_exactly_one_line(tmp_path: Path, text: str, line: str | None) -> None:
    proc = helpers(tmp_path, 'one_line "$TEXT"', TEXT=text)
    assert (proc.returncode, proc.stdout) == ((0, f"{line}\n") if line else (1, ""))


def test_srun_value_ignores_the_scheduler_on_stderr(tmp_path: Path) -> None:
    """srun writes its chatter to stderr: the value is stdout alone, and srun is --quiet."""
    fake(tmp_path, "srun", f'[ "$1" = --quiet ] || echo "{QUEUED}" >&2; echo 0')
    proc = helpers(tmp_path, "srun_value -n1 --gpus=1 printenv CUDA_VISIBLE_DEVICES")
    assert (proc.returncode, proc.stdout) == (0, "0\n"), proc.stderr
    # The capture it replaces (`$(srun ... 2>&1)`) read the chatter as part of the value:
    fake(tmp_path, "srun", f'echo "{QUEUED}" >&2; echo 0')
    old = helpers(tmp_path, 'out=$(srun -n1 printenv CUDA_VISIBLE_DEVICES 2>&1); echo "$out"')
    assert old.stdout != "0\n"


def test_srun_value_refuses_extra_lines_on_stdout(tmp_path: Path) -> None:
    fake(tmp_path, "srun", f'echo "{QUEUED}"; echo 0')
    proc = helpers(tmp_path, "srun_value -n1 printenv CUDA_VISIBLE_DEVICES")
    assert proc.returncode != 0
    assert "expected one line on stdout" in proc.stderr and QUEUED in proc.stderr


def test_srun_value_names_a_failed_srun(tmp_path: Path) -> None:
    fake(tmp_path, "srun", 'echo "srun: error: Unable to allocate resources" >&2; exit 1')
    proc = helpers(tmp_path, "srun_value -n1 hostname")
    assert proc.returncode != 0
    assert "exit 1" in proc.stderr and "Unable to allocate resources" in proc.stderr


def test_wait_idle_waits_for_the_queue_to_drain(tmp_path: Path) -> None:
    """The node reads idle while an earlier job still completes: the smoke test waits."""
    count = tmp_path / "squeue.calls"
    fake(tmp_path, "sinfo", "echo idle")
    fake(
        tmp_path,
        "squeue",
        f'echo x >>"{count}"; [ "$(wc -l <"{count}")" -gt 2 ] || echo "7 COMPLETING"',
    )
    proc = helpers(tmp_path, "wait_idle 20 && echo ready")
    assert (proc.returncode, proc.stdout) == (0, "ready\n"), proc.stderr
    assert len(count.read_text().splitlines()) == 3


def test_wait_idle_gives_up_naming_state_and_queue(tmp_path: Path) -> None:
    fake(tmp_path, "sinfo", "echo mixed")
    fake(tmp_path, "squeue", 'echo "7 RUNNING"')
    proc = helpers(tmp_path, "wait_idle 1")
    assert proc.returncode != 0
    assert "'mixed'" in proc.stderr and "7 RUNNING" in proc.stderr


@pytest.mark.parametrize(
    ("real", "cap", "advertised"),
    [(24105, None, 16384), (8000, None, 8000), (24105, "12000", 12000), (4000, "12000", 4000)],
)
def test_node_memory_is_capped_by_kdspectra_slurm_mem_mb(
    tmp_path: Path, real: int, cap: str | None, advertised: int
) -> None:
    env = {"KDSPECTRA_SLURM_MEM_MB": cap} if cap else {}
    proc = helpers(tmp_path, f"advertised_mem {real}", **env)
    assert (proc.returncode, proc.stdout) == (0, f"{advertised}\n"), proc.stderr


@pytest.mark.parametrize("cap", ["16G", "0", "-1", "1e4"])
def test_bad_memory_cap_is_named(tmp_path: Path, cap: str) -> None:
    proc = helpers(tmp_path, "advertised_mem 24105", KDSPECTRA_SLURM_MEM_MB=cap)
    assert proc.returncode != 0
    assert "KDSPECTRA_SLURM_MEM_MB" in proc.stderr and f"'{cap}'" in proc.stderr
