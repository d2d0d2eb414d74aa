"""The whole Snakefile in a subprocess on a tiny config: every final artifact exists and
holds finite numbers of the expected shape."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TINY = REPO / "tests" / "data" / "tiny_config.yaml"

pytestmark = pytest.mark.workflow


def run_snakemake(
    workdir: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the repository's Snakefile with ``workdir`` as working directory."""
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2400)
    if check and proc.returncode != 0:
        pytest.fail(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the tiny config once for every test in this module."""
    workdir = tmp_path_factory.mktemp("tiny")
    shutil.copy(TINY, workdir / "config.yaml")
    run_snakemake(workdir, "--cores", "2")
    return workdir / "results" / "tiny"


def _finite(frame: pd.DataFrame, column: str) -> None:
    values = frame[column].to_numpy(dtype=float)
    assert np.isfinite(values).all(), f"{column} not finite: {values}"


def test_dry_run_lists_whole_dag(tmp_path: Path) -> None:
    shutil.copy(TINY, tmp_path / "config.yaml")
    out = run_snakemake(tmp_path, "-n", "--cores", "1").stdout
    for rule in (
        "prepare_dataset",
        "extract_teacher",
        "extract_teacher_noisy",
        "train_student",
        "embed_student",
        "spectrum",
        "noise",
        "collect",
        "table",
        "figure",
    ):
        assert rule in out, rule


def test_tables_have_expected_rows(tiny_run: Path) -> None:
    config = yaml.safe_load(TINY.read_text())
    expected = {"table1": 4, "table2": 3, "ablation": 3}
    for name, rows in expected.items():
        frame = pd.read_csv(tiny_run / "tables" / f"{name}.csv")
        assert len(frame) == rows, name
        assert {"model", "params", "effective_rank"} <= set(frame.columns)
        _finite(frame, "effective_rank")
        assert (frame["params"] > 0).all()
        md = (tiny_run / "tables" / f"{name}.md").read_text()
        assert "random-init" in md
        assert (tiny_run / "tables" / f"{name}.tex").stat().st_size > 0
    teachers = pd.read_csv(tiny_run / "tables" / "teachers.csv")
    assert set(teachers["teacher"]) == set(config["teachers"])
    _finite(teachers, "effective_rank")


def test_effective_ranks_within_bounds(tiny_run: Path) -> None:
    summary = pd.read_parquet(tiny_run / "summary.parquet")
    assert len(summary) == 1 + 10
    dims = {"clip_digits": 384}
    for _, row in summary.iterrows():
        assert 1.0 <= row["effective_rank"] <= dims[row["experiment"]]


def test_noise_curves_cover_every_sigma(tiny_run: Path) -> None:
    fig3 = pd.read_csv(tiny_run / "tables" / "fig3.csv")
    _finite(fig3, "accuracy")
    assert set(np.round(fig3["sigma"], 6)) == {0.0, 0.2, 0.5}
    assert fig3["accuracy"].between(0, 1).all()
    fig2 = pd.read_csv(tiny_run / "tables" / "fig2.csv")
    _finite(fig2, "effective_rank")


def test_figures_and_comparison_exist(tiny_run: Path) -> None:
    for fig in ("fig1_spectrum", "fig2_effective_rank", "fig3_noise_robustness"):
        for ext in ("png", "pdf"):
            assert (tiny_run / "figures" / f"{fig}.{ext}").stat().st_size > 5000, fig
    comparison = (tiny_run / "tables" / "paper_comparison.md").read_text()
    assert "88.68" in comparison and "random-init" in comparison
    resolved = yaml.safe_load((tiny_run / "config.resolved.yaml").read_text())
    assert resolved["training"]["epochs"] == 1 and resolved["evaluation"]["probe"] == "linear"


def test_embeddings_keep_row_order_and_shape(tiny_run: Path) -> None:
    labels = np.load(tiny_run.parents[0] / "data" / "digits" / "test_labels.npy")
    teacher = np.load(tiny_run / "embeddings" / "digits" / "clip_small" / "test.npy")
    student = np.load(
        tiny_run / "students" / "clip_digits" / "cnn_s" / "cosine" / "seed0" / "test.npy"
    )
    noisy = np.load(
        tiny_run / "students" / "clip_digits" / "cnn_s" / "cosine" / "seed0" / "test_noisy.npy"
    )
    assert teacher.shape == student.shape == (len(labels), 384)
    assert noisy.shape == (3, len(labels), 384)
    np.testing.assert_allclose(noisy[0], student, rtol=1e-4, atol=1e-4)
    sidecar = pd.read_parquet(tiny_run / "embeddings" / "digits" / "clip_small" / "test.parquet")
    np.testing.assert_array_equal(sidecar["label"].to_numpy(), labels)


def test_rerun_is_a_no_op(tiny_run: Path) -> None:
    out = run_snakemake(tiny_run.parents[1], "-n", "--cores", "1")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_snakemake_report_renders(tiny_run: Path) -> None:
    report = tiny_run / "report.html"
    run_snakemake(tiny_run.parents[1], "--report", str(report))
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000 and "fig1_spectrum.png" in html
