"""The whole Snakefile in a subprocess on a tiny config: every final artifact exists and
holds finite numbers of the expected shape."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import conftest
from kdspectra.paper.claim_rows import COLUMNS as CLAIM_COLUMNS

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny_config.yaml"

pytestmark = pytest.mark.workflow


def run_snakemake(
    workdir: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the repository's Snakefile with ``workdir`` as working directory."""
    proc = conftest.run_snakemake(workdir, *args, timeout=2400)
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


@pytest.mark.parametrize("overlay", [None, "config/demo.yaml"])
def test_paper_and_demo_configs_build_their_dags(tmp_path: Path, overlay: str | None) -> None:
    """The shipped configs plan every job, resources included (requests are input
    functions: a null image_size once crashed the paper config's DAG)."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    extra = ["--configfile", str(REPO / overlay)] if overlay else []
    out = run_snakemake(tmp_path, "-n", "--cores", "8", *extra).stdout
    seeds = 3
    # paper: 5 students on CLIP + 3 on DINOv2; demo: S/M/L on each of its two teachers,
    # which it pretrains itself (and the paper's run never does)
    runs = (5 + 3) * 2 * seeds if overlay is None else 2 * 3 * 2 * seeds
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.MULTILINE))
    assert int(counts["train_student"]) == runs
    assert int(counts.get("pretrain_teacher", 0)) == (0 if overlay is None else 2)
    assert "TBD" not in out.split("Job stats")[-1]


def test_factorial_overlay_plans_both_teachers_on_both_datasets(tmp_path: Path) -> None:
    """config/factorial.yaml on the paper's run: four experiments, each teacher extracted
    on both datasets, the two new cells' 36 distillations beside the paper's 48."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    overlay = str(REPO / "config" / "factorial.yaml")
    out = run_snakemake(tmp_path, "-n", "--cores", "8", "--configfile", overlay).stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.MULTILINE))
    assert int(counts["train_student"]) == (5 + 3 + 3 + 3) * 2 * 3
    assert int(counts["extract_teacher"]) == 2 * 2
    for exp in ("clip_cifar10", "dinov2_cifar100", "clip_cifar100", "dinov2_cifar10"):
        assert f"students/{exp}/cnn_s/cosine/seed2" in out, exp


@pytest.mark.parametrize(
    ("base", "overlay"),
    [("config/demo.yaml", "config/mirror-demo.yaml"), (None, "config/mirror.yaml")],
)
def test_mirror_configs_plan_the_dial_and_the_sweep(
    tmp_path: Path, base: str | None, overlay: str
) -> None:
    """Both mirror configs (offline and paper scale): 6 re-coloured teachers derived from
    one extraction, 6 cells x 2 objectives + 7 arms (cosine; 3 lambdas x 2 projector
    settings), 3 seeds each, and Figures 6 and 7. A dry run needs no network."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    files = [str(REPO / f) for f in (base, overlay) if f]
    out = run_snakemake(tmp_path, "-n", "--cores", "8", "--configfile", *files).stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.MULTILINE))
    assert int(counts["train_student"]) == (6 * 2 + 7) * 3
    assert int(counts["recolour_teacher"]) == 6 and int(counts["extract_teacher"]) == 1
    assert int(counts["fig6_mirror"]) == 1 and int(counts["fig7_tradeoff"]) == 1
    for arm in ("cosine_infonce_w0.1_mlp", "cosine_infonce_w1"):
        assert f"students/tradeoff_clip/cnn_m/{arm}/seed2" in out, arm
    assert "students/mirror_clip_a3_c3/cnn_m/cosine_infonce/seed0" in out


def test_dry_run_lists_whole_dag(tmp_path: Path) -> None:
    shutil.copy(TINY, tmp_path / "config.yaml")
    out = run_snakemake(tmp_path, "-n", "--cores", "1").stdout
    for rule in (
        "prepare_dataset",
        "extract_teacher",
        "extract_teacher_noisy",
        "train_student",
        "measure_model",
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


def _mean_row_cosine(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean cosine of matching rows, and of all mismatched pairs (the expectation over
    row shuffles, without a shuffle's noise)."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    matched = (a * b).sum(axis=1)
    n = len(a)
    mismatched = (a.sum(axis=0) @ b.sum(axis=0) - matched.sum()) / (n * (n - 1))
    return float(matched.mean()), float(mismatched)


def test_every_student_run_is_consistent(tiny_run: Path) -> None:
    """Per student x objective: InfoNCE is off exactly for `cosine`, the spectrum stage's
    ER and cos_to_teacher are those of the saved embeddings paired row by row, and the
    tables quote the trained model's size. Across the run the students are closer to
    their own teacher rows than to shuffled ones. (Not per student: after the tiny
    config's 11 steps at 1/8 width, 2 of the 10 are at chance, gaps -1e-6 to +4e-4.)"""
    from kdspectra.metrics.spectrum import effective_rank
    from kdspectra.report.tables import ABLATION_NAMES, STUDENT_NAMES

    resolved = yaml.safe_load((tiny_run / "config.resolved.yaml").read_text())
    exp, report = resolved["experiments"]["clip_digits"], resolved["report"]
    teacher = np.load(tiny_run / "embeddings" / "digits" / "clip_small" / "test.npy")
    tables = {  # table -> (its objective, its students, their display names)
        "table1": ("cosine", report["table_students"], STUDENT_NAMES),
        "table2": ("cosine_infonce", report["table_students"], STUDENT_NAMES),
        "ablation": ("cosine", report["ablation_students"], ABLATION_NAMES),
    }
    expected_rows = sum(len(students) for _, students, _ in tables.values())
    quoted, gaps = 0, []
    for student in exp["students"]:
        for objective in exp["objectives"]:
            unit = f"clip_digits/{student}/{objective}/seed0"
            run = tiny_run / "students" / unit
            metrics = pd.read_csv(run / "metrics.csv")
            assert ((metrics["loss_infonce"] == 0).all()) == (objective == "cosine"), unit
            stats = json.loads((tiny_run / "spectra" / f"{unit}.json").read_text())
            test = np.load(run / "test.npy")
            assert stats["effective_rank"] == pytest.approx(effective_rank(test), rel=1e-9), unit
            matched, shuffled = _mean_row_cosine(test, teacher)
            assert np.isfinite(stats["cos_to_teacher"]), unit
            assert stats["cos_to_teacher"] == pytest.approx(matched, abs=1e-5), unit
            gaps.append(matched - shuffled)
            params = json.loads((run / "meta.json").read_text())["params"]
            for table, (table_objective, students, names) in tables.items():
                if table_objective != objective or student not in students:
                    continue
                frame = pd.read_csv(tiny_run / "tables" / f"{table}.csv")
                (row,) = frame.index[frame["model"] == names[student]]
                assert int(frame.loc[row, "params"]) == params, (table, unit)
                quoted += 1
    assert quoted == expected_rows, "every student row of table1, table2 and ablation checked"
    assert np.mean(gaps) > 0, f"students no closer to their own teacher rows: {gaps}"


def test_rerun_is_a_no_op(tiny_run: Path) -> None:
    out = run_snakemake(tiny_run.parents[1], "-n", "--cores", "1")
    assert "Nothing to be done" in out.stdout + out.stderr


def test_snakemake_report_renders(tiny_run: Path) -> None:
    report = tiny_run / "report.html"
    run_snakemake(tiny_run.parents[1], "--report", str(report))
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 100_000 and "fig1_spectrum.png" in html
    # The landing page describes the run, and every table is an HTML page shown inline.
    assert "kdspectra: run" in html and "System Message" not in html
    assert "table1.html" in html and "claims.html" in html and "Table files" in html
    # Snakemake's report finds a row's file by its label values joined with commas: a
    # comma inside a value made "The paper's tables" a blank page in Chromium.
    results = json.loads(re.search(r"^\s*var results = (\{.*\});$", html, re.M).group(1))
    labels = [str(v) for r in results.values() for v in (r.get("labels") or {}).values()]
    assert labels and not [v for v in labels if "," in v]


def test_claims_both_ers_and_provenance_sidecars(tiny_run: Path) -> None:
    claims = pd.read_csv(tiny_run / "tables" / "claims.csv")
    assert tuple(claims.columns) == CLAIM_COLUMNS  # the file keeps its declared contract
    assert set(claims["verdict"]) <= {
        "holds",
        "fails",
        "inconclusive",
        "underpowered",
        "not tested",
    }
    assert claims["primary"].any()  # every claim declares its primary measure
    assert "holds" not in set(claims["verdict"])  # one seed: at most inconclusive
    assert claims["note"].str.contains("random-init").all()
    assert "Decision rule" in (tiny_run / "tables" / "claims.md").read_text()
    table1 = pd.read_csv(tiny_run / "tables" / "table1.csv")
    _finite(table1, "effective_rank_l2")
    assert (table1["rank_ceiling"] >= table1["effective_rank"]).all()
    for name in ("table1", "table2", "ablation", "teachers", "fig2", "fig3", "claims"):
        sidecar = yaml.safe_load((tiny_run / "tables" / f"{name}.provenance.json").read_text())
        assert sidecar["random_init"] is True and sidecar["commit"], name
    comparison = (tiny_run / "tables" / "paper_comparison.md").read_text()
    assert comparison.index("Choices the paper leaves open") < comparison.index("## Table I")


def test_single_objective_experiment_runs_without_what_it_cannot_fill(tmp_path: Path) -> None:
    config = yaml.safe_load(TINY.read_text())
    config["experiments"]["clip_digits"]["objectives"] = ["cosine"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = run_snakemake(tmp_path, "-n", "--cores", "1")
    out = proc.stdout + proc.stderr
    assert "left out table2: experiment 'clip_digits' runs no cosine_infonce" in out
    assert "tables/table1.csv" in out and "tables/claims.md" in out
    assert "tables/table2.csv" not in out and "fig3_noise_robustness" not in out
