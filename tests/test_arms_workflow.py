"""A λ sweep with the projector through Snakemake's planner: a tiny config whose
`training.infonce` lists two λ and both projector settings builds one training job per
student × arm × seed, at the arms' folders, with Figure 7 and without the artifacts that
need the paper's single `cosine_infonce` arm."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from test_workflow import REPO, TINY, run_snakemake

pytestmark = pytest.mark.workflow

ARMS = [
    "cosine_infonce_w0",
    "cosine_infonce_w0_mlp",
    "cosine_infonce_w0.3",
    "cosine_infonce_w0.3_mlp",
]


@pytest.mark.parametrize("where", ["training", "experiment"])
def test_a_sweep_with_the_projector_plans_one_job_per_arm(tmp_path: Path, where: str) -> None:
    """The sweep set for the whole run (training.infonce) or for the one experiment
    (experiments.<e>.infonce) plans the same jobs."""
    shutil.copy(TINY, tmp_path / "config.yaml")
    overlay = tmp_path / "sweep.yaml"
    sweep = {"infonce": {"weight": [0, 0.3], "projector": ["none", "mlp"]}}
    scoped = {
        "training": {"training": sweep},
        "experiment": {"experiments": {"clip_digits": sweep}},
    }[where]
    overlay.write_text(yaml.safe_dump(scoped))
    out = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(overlay)).stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.MULTILINE))
    students = yaml.safe_load(TINY.read_text())["students"]
    assert int(counts["train_student"]) == len(students) * (1 + len(ARMS))
    assert int(counts["measure_model"]) == 1 + len(students) * (1 + len(ARMS))
    for student in students:
        for arm in ("cosine", *ARMS):
            assert f"students/clip_digits/{student}/{arm}/seed0/model.safetensors" in out
    assert "/cosine_infonce/seed0" not in out  # no arm keeps the plain name in a sweep
    assert int(counts["fig7_tradeoff"]) == 1 and "figures/fig7_tradeoff.png" in out
    assert "tables/table2.csv" not in out and "tables/table1.csv" in out


def test_the_paper_config_without_a_sweep_plans_no_figure_7(tmp_path: Path) -> None:
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    out = run_snakemake(tmp_path, "-n", "--cores", "8").stdout
    assert "fig7_tradeoff" not in out and "/cosine_infonce/seed0" in out
