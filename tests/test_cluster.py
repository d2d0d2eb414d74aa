"""The workflow on a real SLURM cluster, through the user's own command.

``snakemake --profile slurm`` (the repository's profile, with the CI overlay
``tests/data/ci_slurm_overlay.yaml`` layered on top as a second ``--profile``) runs the
tiny config end to end — trimmed to one teacher and two students, see
``_write_config``; ``KDSPECTRA_SLURM_FULL=1`` runs it untrimmed — every non-local rule as
its own SLURM job, with the rules' own memory requests (the node advertises 16 GB); and
a training job cancelled with ``scancel`` (in a copy of that run's directory, so only
training is left to do) fails the run, after which the rerun resumes from the exact
batch it stopped at and completes.

Needs a running cluster: CI starts a single-node one with ``.ci/slurm/start.sh`` (root)
and stops it with ``.ci/slurm/stop.sh``. Without one these tests are skipped; with
``KDSPECTRA_REQUIRE_SLURM=1`` (set by CI) they fail instead, so CI cannot pass by
skipping them. The tests run snakemake from a temporary working directory and name the
profile by its path (``--profile <repo>/slurm``); a user at the repository root types
``--profile slurm``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_snakemake, snakemake_command

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny_config.yaml"
PROFILE = REPO / "slurm"
OVERLAY = REPO / "tests" / "data" / "ci_slurm_overlay.yaml"
REQUIRE = "KDSPECTRA_REQUIRE_SLURM"
FULL = "KDSPECTRA_SLURM_FULL"


def _slurm_test(test):
    """Marks of the tests that need SLURM (not module-wide: the switch test runs anywhere)."""
    return pytest.mark.cluster(pytest.mark.slow(test))


# What the rule files promise: these run on the submit host, everything else on SLURM.
LOCAL_RULES = {
    "all",
    "download",
    "resolved_config",
    "collect",
    "table",
    "data_table",
    "geometry_table",
    "fig4_data",
    "paper_comparison",
    "claims",
    "figure",
    "fig6_mirror",
    "fig7_tradeoff",
    # the report's HTML tables and its verdict summary: file conversions, seconds each
    "table_html",
    "verdict_summary",
}
SLURM_RULES = {
    "prepare_dataset",
    "extract_teacher",
    "extract_teacher_noisy",
    "train_student",
    "measure_model",
}
GPU_RULES = {"extract_teacher", "extract_teacher_noisy", "train_student"}

HEADER = re.compile(r"^(local)?rule (\w+):\n(?:[ \t]+.*\n)*?[ \t]+jobid: (\d+)$", re.MULTILINE)
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")


# ---------------------------------------------------------------- the cluster


def _cluster_problem() -> str | None:
    """Why the tests cannot run here, or None when a SLURM cluster answers."""
    if shutil.which("sinfo") is None:
        return "sinfo is not on PATH: no SLURM here (start a local one: sudo .ci/slurm/start.sh)"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "no SLURM cluster responds (sinfo timed out after 30 s)"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"no SLURM cluster responds (sinfo: {last}); start one: sudo .ci/slurm/start.sh"
    states = proc.stdout.split()
    if not any(s.rstrip("*~#").startswith(("idle", "mixed", "allocated")) for s in states):
        return f"no SLURM node is up (sinfo node states: {states})"
    return None


def _required(env: Mapping[str, str]) -> bool:
    """KDSPECTRA_REQUIRE_SLURM as a switch: 1/true/yes require a cluster, 0/false/no/unset
    do not (a bare truthiness test made "0" mean "required")."""
    value = env.get(REQUIRE, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise pytest.UsageError(f"{REQUIRE}={env[REQUIRE]!r}: expected 1/true/yes or 0/false/no")


@pytest.mark.parametrize(
    ("value", "required"),
    [("1", True), ("true", True), ("0", False), ("false", False), ("", False), (None, False)],
)
def test_require_slurm_is_a_switch(value: str | None, required: bool) -> None:
    env = {} if value is None else {REQUIRE: value}
    assert _required(env) is required


@pytest.fixture(scope="module")
def cluster() -> dict[str, int]:
    """The node's CPUs and GPUs; skips (or fails under KDSPECTRA_REQUIRE_SLURM) without SLURM."""
    problem = _cluster_problem()
    if problem:
        if _required(os.environ):
            pytest.fail(f"{problem} ({REQUIRE} is set, so a cluster is required)")
        pytest.skip(problem)
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-o", "%c|%G"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    cpus, gres = out.split("|")
    gpus = re.search(r"gpu(?::[^:,()]+)?:(\d+)", gres)
    return {"cpus": int(cpus), "gpus": int(gpus.group(1)) if gpus else 0}


def _command(workdir: Path, timeout_s: int, *args: str) -> list[str]:
    """``snakemake --profile slurm --profile <overlay>`` under ``timeout``: a hung status
    query must not hang CI. SIGINT, because on SIGINT snakemake scancels its jobs (on
    SIGTERM it waits for them)."""
    return snakemake_command(
        workdir,
        *("--profile", str(PROFILE), "--profile", str(OVERLAY)),
        *args,
        prefix=("timeout", "-s", "INT", "-k", "60", str(timeout_s)),
    )


def _cancel_leftovers(output: str) -> None:
    """scancel whatever a run left in the queue (its jobs carry the run's UUID as name)."""
    for run_id in set(re.findall(r"SLURM run ID: (\S+)", output)):
        subprocess.run(["scancel", "--name", run_id], check=False)


def _run(workdir: Path, *args: str, timeout_s: int = 900) -> subprocess.CompletedProcess[str]:
    proc = run_snakemake(
        workdir,
        *("--profile", str(PROFILE), "--profile", str(OVERLAY)),
        *args,
        timeout=None,
        prefix=("timeout", "-s", "INT", "-k", "60", str(timeout_s)),
        merge_output=True,
    )
    _cancel_leftovers(proc.stdout)
    return proc


def _write_config(workdir: Path, cluster: dict[str, int], **training: int) -> dict:
    """The tiny config, trimmed for SLURM unless KDSPECTRA_SLURM_FULL=1.

    Every SLURM job pays a few seconds of Snakemake and PyTorch start-up. The trimmed
    run keeps every rule, both objectives and every table and figure with the fewest
    students that fill them: Student-S and the Hybrid (the ablation needs two), 17 SLURM
    jobs instead of the 23 of the three CNNs, which also left the ablation out. The
    science of the untrimmed tiny config is tested locally by test_workflow.py.
    """
    cfg = yaml.safe_load(TINY.read_text())
    if not os.environ.get(FULL):
        students = ["cnn_s", "hybrid"]
        cfg["experiments"]["clip_digits"]["students"] = students
        cfg["report"].update(
            figures="clip_digits", table_students=students, ablation_students=students
        )
    # `device: auto` makes the GPU rules ask SLURM for a GPU (--gpus=1). The CI node's
    # GPUs are fake, so torch finds no CUDA; the overlay's allow_cpu_fallback lets the
    # jobs compute on the CPU instead of failing (and their meta.json says so).
    cfg["device"] = "auto" if cluster["gpus"] else "cpu"
    cfg["training"].update(training)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def _enabled(cfg: dict) -> dict[str, dict]:
    return {k: e for k, e in cfg["experiments"].items() if e.get("enabled", True)}


def _slurm_jobs() -> dict[str, dict[str, str]]:
    """Every job slurmctld still knows (MinJobAge), as ``scontrol show job`` fields."""
    out = subprocess.run(
        ["scontrol", "-o", "show", "job"], capture_output=True, text=True, check=True
    ).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def _tail(text: str, n: int = 6000) -> str:
    return text[-n:]


# ---------------------------------------------------------------- (a) end to end


@pytest.fixture(scope="module")
def slurm_run(cluster: dict[str, int], tmp_path_factory: pytest.TempPathFactory):
    """The tiny config through the SLURM profile, once for the module."""
    workdir = tmp_path_factory.mktemp("slurm_tiny")
    cfg = _write_config(workdir, cluster)
    start = time.monotonic()
    proc = _run(workdir)
    elapsed = time.monotonic() - start
    print(f"snakemake --profile slurm on the tiny config: {elapsed:.0f} s")
    if proc.returncode != 0:
        pytest.fail(f"snakemake --profile slurm failed ({proc.returncode}):\n{_tail(proc.stdout)}")
    return workdir, cfg, proc.stdout


@_slurm_test
def test_every_non_local_rule_ran_as_a_slurm_job(slurm_run) -> None:
    workdir, cfg, out = slurm_run
    jobs = {int(j): (rule, bool(local)) for local, rule, j in HEADER.findall(out)}
    submitted = {int(j): (slurm_id, Path(log)) for j, slurm_id, log in SUBMITTED.findall(out)}
    assert jobs, f"no job headers in the snakemake output:\n{_tail(out)}"

    remote = {j for j, (_, local) in jobs.items() if not local}
    assert {jobs[j][0] for j in remote} == SLURM_RULES
    assert {rule for rule, local in jobs.values() if local} <= LOCAL_RULES
    assert set(submitted) == remote, "every non-local job, and only those, went to sbatch"

    slurm = _slurm_jobs()
    logdir = (workdir / ".snakemake" / "slurm_logs").resolve()
    per_rule: dict[str, int] = {}
    for j, (slurm_id, log) in submitted.items():
        rule = jobs[j][0]
        per_rule[rule] = per_rule.get(rule, 0) + 1
        # The plugin's log for this job, kept by the overlay's slurm-keep-successful-logs.
        assert log.is_file(), log
        assert log.name == f"{slurm_id}.log" and log.is_relative_to(logdir / f"rule_{rule}")
        # slurmctld's own record: the job ran and completed, for this rule.
        info = slurm[slurm_id]
        assert info["JobState"] == "COMPLETED", (rule, info["JobState"])
        assert info["Comment"].startswith(f"rule_{rule}"), info["Comment"]
        assert info["Partition"] == "debug"
        gpu = "gpu" in info.get("TresPerJob", "")
        assert gpu == (rule in GPU_RULES and cfg["device"] != "cpu"), (rule, info.get("TresPerJob"))
    for rule, n in per_rule.items():
        assert len(list((logdir / f"rule_{rule}").rglob("*.log"))) == n, rule

    experiments = _enabled(cfg)
    n_students = sum(len(e["students"]) * len(e["objectives"]) for e in experiments.values())
    assert per_rule["train_student"] == n_students  # trains, then embeds in the same job
    assert per_rule["measure_model"] == n_students + len(experiments)


@_slurm_test
def test_final_tables_and_figures_exist(slurm_run) -> None:
    workdir, cfg, _ = slurm_run
    run = workdir / "results" / cfg["name"]
    for table in ("table1", "table2", "ablation"):
        frame = pd.read_csv(run / "tables" / f"{table}.csv")
        assert len(frame) > 0 and frame["effective_rank"].notna().all(), table
        assert (run / "tables" / f"{table}.md").stat().st_size > 0
    for table in ("teachers", "fig2", "fig3"):
        assert len(pd.read_csv(run / "tables" / f"{table}.csv")) > 0, table
    assert (run / "tables" / "paper_comparison.md").stat().st_size > 0
    for fig in ("fig1_spectrum", "fig2_effective_rank", "fig3_noise_robustness"):
        assert (run / "figures" / f"{fig}.png").stat().st_size > 5000, fig
    summary = pd.read_parquet(run / "summary.parquet")
    experiments = _enabled(cfg)
    assert len(summary) == sum(
        1 + len(e["students"]) * len(e["objectives"]) for e in experiments.values()
    )


@_slurm_test
def test_rerun_submits_nothing(slurm_run) -> None:
    workdir, _, _ = slurm_run
    proc = _run(workdir, "-n", timeout_s=300)
    assert proc.returncode == 0, _tail(proc.stdout)
    assert "Nothing to be done" in proc.stdout


@_slurm_test
def test_gpu_jobs_record_their_device_and_allocation(slurm_run) -> None:
    """A GPU job that computed on the CPU must be visible: its meta.json names the device
    and the GPU SLURM bound (the CI node's GPUs are fake, so every job fell back, as the
    overlay's allow_cpu_fallback allows)."""
    workdir, cfg, _ = slurm_run
    run = workdir / "results" / cfg["name"]
    metas = {
        "extract_teacher": sorted(run.glob("embeddings/*/*/meta.json")),
        "train_student": sorted(run.glob("students/*/*/*/*/meta.json")),
    }
    experiments = _enabled(cfg)
    assert len(metas["extract_teacher"]) == len(experiments)
    assert len(metas["train_student"]) == sum(
        len(e["students"]) * len(e["objectives"]) for e in experiments.values()
    )
    for rule, paths in metas.items():
        for path in paths:
            meta = json.loads(path.read_text())
            assert meta["device"] == "cpu", (rule, path, meta["device"])
            visible = meta["cuda_visible_devices"]
            if cfg["device"] == "auto":  # SLURM bound one (fake) GPU to the job
                assert visible not in (None, "", "-1", "NoDevFiles"), (rule, path, visible)
                assert "," not in visible, "one GPU per job"
            assert "slurm_job_gpus" in meta, (rule, path)


# ---------------------------------------------------------------- (b) scancel and resume


def _clone_run(source: Path, dest: Path, unit: str, run_name: str) -> None:
    """The finished cluster run's directory without one student's outputs: its data,
    teacher embeddings and Snakemake records are reused, so the cancel test submits the
    training job at once instead of redoing prepare and extraction on SLURM first."""
    shutil.copytree(
        source, dest, dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("slurm_logs", "locks", "incomplete"),
    )  # fmt: skip
    run = dest / "results" / run_name
    shutil.rmtree(run / "students" / unit)
    (run / "logs" / "train" / f"{unit}.log").unlink()


def _global_step(epoch: int, step: int, steps_per_epoch: int) -> int:
    return epoch * steps_per_epoch + step


@_slurm_test
def test_cancelled_training_fails_then_resumes_from_checkpoint(
    cluster: dict[str, int], slurm_run, tmp_path: Path
) -> None:
    # Long enough to cancel after the first epoch's checkpoint, short enough for CI.
    epochs = 8
    unit = "clip_digits/cnn_s/cosine/seed0"
    _clone_run(slurm_run[0], tmp_path, unit, slurm_run[1]["name"])
    cfg = _write_config(tmp_path, cluster, epochs=epochs)
    run = tmp_path / "results" / cfg["name"]
    outdir = run / "students" / unit
    target = str((outdir / "model.safetensors").relative_to(tmp_path))
    checkpoint = run / "checkpoints" / f"{unit}.pt"
    train_log = run / "logs" / "train" / f"{unit}.log"
    train_images = next((tmp_path / "results" / "data").glob("*/train_images.npy"))
    steps_per_epoch = len(np.load(train_images, mmap_mode="r")) // cfg["training"]["batch_size"]

    # 1. Start the run (only training is left to do); scancel the training job as soon as
    #    its first checkpoint exists.
    console = tmp_path / "first_run.txt"
    with console.open("w") as fh:
        proc = subprocess.Popen(
            _command(tmp_path, 600, target),
            cwd=tmp_path,
            text=True,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    job_id = None
    try:
        deadline = time.monotonic() + 480
        while job_id is None:
            if proc.poll() is not None:
                pytest.fail(
                    f"snakemake ended ({proc.returncode}) before training could be cancelled "
                    f"(raise `epochs` if training was too quick):\n{_tail(console.read_text())}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no training job with a checkpoint:\n{_tail(console.read_text())}")
            if checkpoint.exists():
                job_id = next(
                    (
                        i
                        for i, info in _slurm_jobs().items()
                        if info["JobState"] == "RUNNING"
                        and info["Comment"].startswith("rule_train_student")
                    ),
                    None,
                )
            time.sleep(0.5)
        subprocess.run(["scancel", job_id], check=True)
        returncode = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
        _cancel_leftovers(console.read_text())
    first = console.read_text()

    # 2. Snakemake reports the cancelled job and fails; the checkpoint survives.
    assert returncode != 0, _tail(first)
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'" in first, _tail(first)
    assert _slurm_jobs()[job_id]["JobState"] == "CANCELLED"
    assert checkpoint.is_file(), "the checkpoint must outlive the failed job"
    assert not (tmp_path / target).exists()
    log = train_log.read_text()
    assert "received SIGTERM" in log, _tail(log, 2000)
    stopped = re.search(r"preempted by SIGTERM at epoch (\d+), step (\d+)", log)
    assert stopped, _tail(log, 2000)
    # "at epoch E" counts the epoch in progress from 1; "resuming after epoch E" counts
    # finished epochs, so both name the same batch as (E - 1) * steps + step.
    stopped_at = _global_step(int(stopped[1]) - 1, int(stopped[2]), steps_per_epoch)

    # 3. The same command again: training resumes from the checkpoint and completes.
    second = _run(tmp_path, target, timeout_s=600)
    assert second.returncode == 0, _tail(second.stdout)
    assert re.search(r"Job \d+ has been submitted with SLURM jobid \d+", second.stdout)
    log = train_log.read_text()
    resumed = re.search(r"resuming after epoch (\d+), step (\d+)", log)
    assert resumed, _tail(log, 2000)
    assert _global_step(int(resumed[1]), int(resumed[2]), steps_per_epoch) == stopped_at, (
        stopped[0],
        resumed[0],
    )
    meta = json.loads((outdir / "meta.json").read_text())
    assert meta["resumed_from"] == {"epoch": int(resumed[1]), "step": int(resumed[2])}
    assert meta["epochs"] == epochs
    assert len(pd.read_csv(outdir / "metrics.csv")) == epochs
    assert not checkpoint.exists(), "a finished training removes its checkpoint"
