"""The mirror dial: the re-colouring map's properties (invertible, target ER, one map per
teacher, the cone), its config expansion, the stage that derives a teacher's files, the
mirror claims on synthetic summaries whose verdicts are known, Figure 6, and the dry-run
of a tiny config with a recolour experiment."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import conftest
from kdspectra import stages
from kdspectra.config import load_schema, validate_config
from kdspectra.dials import Cell, base_teacher, cell_suffix, dial_cells
from kdspectra.errors import ConfigError
from kdspectra.metrics.sanity import mean_pairwise_cosine
from kdspectra.metrics.spectrum import effective_rank
from kdspectra.models.recolour import fit_recolouring
from kdspectra.paper.claim_rows import Run, table
from kdspectra.paper.claims import claims_frame
from kdspectra.paper.mirror_claims import mirror_rows, seed_slopes
from test_tables import make_noise, make_summary

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema()
TINY = yaml.safe_load((REPO / "tests" / "data" / "tiny_config.yaml").read_text())


def teacher(n: int = 400, dim: int = 24, rank: int | None = None, seed: int = 0) -> np.ndarray:
    """Anisotropic rows with an offset, like a real teacher: a decaying spectrum (a few
    directions carry most variance) and a mean far from 0; ``rank`` < dim leaves a
    subspace empty."""
    rng = np.random.default_rng(seed)
    r = rank or dim
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0][:, :r]
    scales = 3.0 * np.arange(1, r + 1) ** -0.8
    return (rng.standard_normal((n, r)) * scales) @ basis.T + 2.0 * rng.standard_normal(dim)


# ---------------------------------------------------------------- the map


@pytest.mark.parametrize("rank", [None, 15])
@pytest.mark.parametrize(("alpha", "cone"), [(0.0, 0.0), (1.0, 3.0), (3.0, 1.0)])
def test_map_is_invertible_by_least_squares(rank: int | None, alpha: float, cone: float) -> None:
    """An affine least-squares fit from T' back to T recovers T (train and unseen test
    rows), also when T lacks directions (rank < D: the map is the identity there, so test
    rows keep what lies outside the train rows' span)."""
    train = teacher(rank=rank)
    test = train[:200] + 0.05 * np.random.default_rng(1).standard_normal((200, 24))
    rc = fit_recolouring(train, alpha=alpha, cone=cone, seed=3)
    for x in (train, test):
        mapped = rc.apply(x)
        design = np.hstack([mapped, np.ones((len(x), 1))])
        coef, *_ = np.linalg.lstsq(design, x, rcond=None)
        residual = np.linalg.norm(design @ coef - x) / np.linalg.norm(x)
        assert residual <= 1e-6, residual
    assert rc.rank == (rank or 24)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_train_spectrum_has_the_target_er(alpha: float) -> None:
    train = teacher()
    rc = fit_recolouring(train, alpha=alpha, cone=2.0)
    assert abs(effective_rank(rc.apply(train)) - rc.target_er) <= 1e-3
    # the targets themselves: isotropic within the rank at alpha 0, falling with alpha
    if alpha == 0.0:
        assert rc.target_er == pytest.approx(rc.rank, abs=1e-9)
    assert rc.target_er <= fit_recolouring(train, alpha=max(alpha - 0.5, 0), cone=0).target_er


def test_train_and_test_share_one_map() -> None:
    """The map is fitted on train and applied row by row: test rows mapped alone equal
    the same rows mapped with train, and a map fitted on test would differ."""
    train, test = teacher(), teacher(seed=1)[:150]
    rc = fit_recolouring(train, alpha=1.5, cone=2.0)
    both = rc.apply(np.vstack([train, test]))
    np.testing.assert_array_equal(both[: len(train)], rc.apply(train))
    np.testing.assert_array_equal(both[len(train) :], rc.apply(test))
    other = fit_recolouring(test, alpha=1.5, cone=2.0)
    assert not np.allclose(other.apply(test), rc.apply(test))
    # the noisy copies' (S × N × D) rows get the same map
    stack = np.stack([test, test + 0.1])
    np.testing.assert_allclose(rc.apply(stack)[1], rc.apply(test + 0.1))


def test_cone_offset_sets_the_mean_and_the_cosines() -> None:
    train = teacher()
    rows = {c: fit_recolouring(train, alpha=0.0, cone=c, seed=5) for c in (0.0, 1.0, 3.0)}
    rms = rows[0.0].rms
    centred = rows[0.0].apply(train)
    assert np.linalg.norm(centred.mean(axis=0)) <= 1e-9 * rms  # c = 0: centred
    cosines = []
    for c, rc in rows.items():
        mapped = rc.apply(train)
        assert np.linalg.norm(mapped.mean(axis=0)) == pytest.approx(c * rms, rel=1e-9)
        # the centred geometry, hence the paper's ER, does not see the offset
        assert effective_rank(mapped) == pytest.approx(effective_rank(centred), rel=1e-9)
        cosines.append(mean_pairwise_cosine(mapped))
    assert abs(cosines[0]) < 0.02 and cosines[0] < cosines[1] < cosines[2]
    assert cosines[2] == pytest.approx(9 / 10, abs=0.03)  # c² / (1 + c²) for c = 3


# ---------------------------------------------------------------- config


def dial_config(**recolour: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(TINY)
    grid = {"alpha": [0, 0.5], "cone": [0, 3]} | recolour
    cfg["experiments"]["mirror"] = {
        "dataset": "digits", "teacher": "clip_small", "students": ["cnn_s"], "recolour": grid,
    }  # fmt: skip
    return cfg


def test_expansion_names_cells_and_derived_teachers() -> None:
    cfg = validate_config(dial_config(), SCHEMA)
    cells = ["mirror_a0_c0", "mirror_a0_c3", "mirror_a0p5_c0", "mirror_a0p5_c3"]
    assert list(cfg["experiments"]) == ["clip_digits", *cells]
    cell = cfg["experiments"]["mirror_a0p5_c3"]
    assert cell["teacher"] == "clip_small_a0p5_c3" and cell["students"] == ["cnn_s"]
    assert cell["objectives"] == ["cosine", "cosine_infonce"] and "recolour" not in cell
    derived = cfg["teachers"]["clip_small_a0p5_c3"]
    assert derived["recolour"] == {"teacher": "clip_small", "alpha": 0.5, "cone": 3, "seed": 0}
    assert derived["model"] == "ViT-S-32"
    found = [(c.experiment, c.alpha, c.cone, c.base) for c in dial_cells(cfg)]
    assert found[-1] == ("mirror_a0p5_c3", 0.5, 3.0, "clip_small")
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", c) for c in [*cfg["experiments"], *cfg["teachers"]])
    # the resolved config validates again as written (no grid left to expand)
    assert validate_config(copy.deepcopy(cfg), SCHEMA) == cfg


def test_suffix_rule() -> None:
    assert cell_suffix(0.5, 3) == "_a0p5_c3"
    assert cell_suffix(2.0, 0.25, seed=7) == "_a2_c0p25_s7"
    assert validate_config(dial_config(seed=7), SCHEMA)["experiments"].get("mirror_a0_c3_s7")


@pytest.mark.parametrize(
    ("grid", "key"),
    [
        ({"alpha": [-1]}, "experiments.mirror.recolour.alpha"),
        ({"alpha": [11]}, "experiments.mirror.recolour.alpha"),
        ({"cone": [5]}, "experiments.mirror.recolour.cone"),
        ({"cone": []}, "experiments.mirror.recolour.cone"),
        ({"alpha": [1, 1]}, "experiments.mirror.recolour.alpha"),
        ({"beta": [1]}, "experiments.mirror.recolour"),
    ],
)
def test_schema_refuses_bad_grids_naming_the_key(grid: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate_config(dial_config(**grid), SCHEMA)


def test_conflicts_are_refused_naming_the_key() -> None:
    clash = dial_config()
    clash["experiments"]["mirror_a0_c3"] = {"dataset": "digits", "teacher": "clip_small"}
    with pytest.raises(ConfigError, match=r"experiments\.mirror\.recolour.*exists already"):
        validate_config(clash, SCHEMA)
    taken = dial_config()
    taken["teachers"]["clip_small_a0_c0"] = {"library": "timm", "model": "vit"}
    with pytest.raises(ConfigError, match=r"clashes with teachers\.clip_small_a0_c0"):
        validate_config(taken, SCHEMA)
    report = dial_config()
    report["report"]["figures"] = "mirror"  # the grid's name is no experiment any more
    with pytest.raises(ConfigError, match=r"report\.figures"):
        validate_config(report, SCHEMA)
    corrupted = dial_config()
    corrupted["evaluation"]["corruptions"] = ["fog"]
    source = {"url": "file:results/fixtures/digits-synthetic-C.tar", "md5": "0" * 32}
    corrupted["datasets"]["digits"]["corruptions"] = source
    with pytest.raises(ConfigError, match=r"evaluation\.corruptions.*re-coloured teachers"):
        validate_config(corrupted, SCHEMA)


def test_a_run_without_a_dial_is_unchanged() -> None:
    cfg = validate_config(copy.deepcopy(TINY), SCHEMA)
    assert list(cfg["experiments"]) == ["clip_digits"] and dial_cells(cfg) == []


# ---------------------------------------------------------------- the stage


def test_stage_derives_every_file_with_one_train_fitted_map(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base, out = tmp_path / "base", tmp_path / "cell"
    base.mkdir()
    train, test = teacher(n=300, dim=12), teacher(n=120, dim=12, seed=1)
    ytr, yte = rng.integers(0, 3, 300), rng.integers(0, 3, 120)
    train[np.arange(300), ytr] += 4.0  # separable classes: the sanity probe learns
    test[np.arange(120), yte] += 4.0
    inputs = {"train_labels": base / "ytr.npy", "test_labels": base / "yte.npy"}
    for name, arr in (("train", train), ("test", test), ("ytr", ytr), ("yte", yte)):
        np.save(base / f"{name}.npy", arr.astype(np.int64 if name[0] == "y" else np.float32))
    np.save(base / "noisy.npy", np.stack([test, test + 0.5]).astype(np.float32))
    (base / "meta.json").write_text(json.dumps({"weights_source": "w.safetensors", "params": 7}))
    inputs |= {k: base / f"{k}.npy" for k in ("train", "test", "noisy")}
    inputs["meta"] = base / "meta.json"
    # teacher_view: same: the cached views (K × N × D) get the map too
    np.save(base / "views.npy", np.stack([train, train * 0.9]).astype(np.float32))
    (base / "views.json").write_text(json.dumps({"teacher_views_k": 2}))
    inputs |= {"views": base / "views.npy", "views_meta": base / "views.json"}
    names = ["train", "test", "train_parquet", "test_parquet", "noisy", "meta", "sanity"]
    outputs = {k: out / f"{k}.out" for k in names} | {"recolour": out / "recolour.json"}
    outputs |= {k: out / f"{k}.npy" for k in ("train", "test", "noisy", "views")}
    outputs["views_meta"] = out / "views_meta.out"
    cell = {"teacher": "base", "alpha": 2.0, "cone": 3.0, "seed": 1}
    probe = {"seed": 0, "Cs": [1.0], "max_iter": 50}
    stages.recolour_teacher(inputs, outputs, {"recolour": cell, "probe": probe, "knn_k": 5})

    rc = fit_recolouring(train.astype(np.float32), alpha=2.0, cone=3.0, seed=1)
    new_test = np.load(out / "test.npy")
    np.testing.assert_allclose(new_test, rc.apply(test.astype(np.float32)), rtol=1e-5, atol=1e-4)
    noisy = np.load(out / "noisy.npy")
    np.testing.assert_array_equal(noisy[0], new_test)  # σ = 0 copy: the same map
    record = json.loads((out / "recolour.json").read_text())
    assert record["alpha"] == 2.0 and record["rank"] == 12 and record["teacher"] == "base"
    assert abs(record["achieved_er_train"] - record["target_er"]) <= 1e-3
    meta = json.loads(outputs["meta"].read_text())
    assert meta["weights_source"] == "w.safetensors" and meta["params"] == 7
    assert meta["recolour"]["cone"] == 3.0
    sanity = json.loads(outputs["sanity"].read_text())
    assert sanity["mean_pairwise_cosine"] > 0.7  # the cone, measured by the guard
    views = np.load(out / "views.npy")
    np.testing.assert_allclose(views[1], rc.apply(0.9 * train.astype(np.float32)), atol=1e-4)
    assert json.loads((out / "views_meta.out").read_text())["recolour"]["alpha"] == 2.0


# ---------------------------------------------------------------- claims

CELLS = [
    Cell(f"m{cell_suffix(a, c)}", f"t{cell_suffix(a, c)}", "t", "digits", a, c, 0)
    for a in (0.0, 1.0, 2.0)
    for c in (0.0, 3.0)
]
TEACHER_ER = {0.0: 40.0, 1.0: 12.0, 2.0: 3.0}


def dial_summary(student_er, infonce_gap: float = 5.0, seeds=(0, 1, 2, 3)) -> pd.DataFrame:
    """Teacher and student rows of every cell; ``student_er(teacher_er, seed)``."""
    rows = []
    for cell in CELLS:
        ter = TEACHER_ER[cell.alpha]
        base = {"experiment": cell.experiment, "dataset": "digits", "teacher": cell.teacher}
        rows.append(base | {"role": "teacher", "student": "", "objective": "", "seed": -1,
                            "effective_rank": ter, "effective_rank_l2": ter + 1})  # fmt: skip
        for k in seeds:
            er = student_er(ter, k)
            for obj, value in (("cosine", er), ("cosine_infonce", er + infonce_gap + 0.3 * k)):
                rows.append(base | {"role": "student", "student": "cnn_s", "objective": obj,
                                    "seed": k, "effective_rank": value,
                                    "effective_rank_l2": value + 1})  # fmt: skip
    return pd.DataFrame(rows)


def judged(summary: pd.DataFrame, cells=CELLS) -> pd.DataFrame:
    run = Run(summary, pd.DataFrame(), "none", "none")
    return table(mirror_rows(run, cells))


def slope_row(frame: pd.DataFrame, measure: str = "raw ER", cone: float = 0.0) -> pd.Series:
    rows = frame[(frame["id"] == "mirror_cosine_tracks_teacher") & (frame["measure"] == measure)]
    if len(rows) > 1:  # one row per cone offset
        rows = rows[rows["quantity"].str.contains(f"c={cone:g})", regex=False)]
    assert len(rows) == 1, rows["quantity"].tolist()
    return rows.iloc[0]


def test_one_slope_per_cone_and_a_guard_stops_only_its_cone() -> None:
    """The raw ER does not see c: cells of one cone offset make one slope over α, and a
    cone whose cosine students learned too little (fidelity guard) leaves the other's
    slope judged."""
    summary = dial_summary(lambda ter, k: ter + k)
    cone = summary["experiment"].map({c.experiment: c.cone for c in CELLS})
    summary["fidelity_gain"] = np.where(cone == 3.0, 0.05, 0.8)
    f = judged(summary)
    assert slope_row(f)["verdict"] == "holds" and "3 cells" in slope_row(f)["note"]
    stopped = slope_row(f, cone=3.0)
    assert stopped["verdict"] == "not tested" and "fidelity_gain 0.05" in stopped["note"]


def test_a_mirroring_student_holds_with_slope_one() -> None:
    noise = {0: 0.3, 1: -0.2, 2: 0.1, 3: -0.4}
    f = judged(dial_summary(lambda ter, k: 0.8 * ter + noise[k] * ter / 10 + k))
    row = slope_row(f)
    assert row["verdict"] == "holds" and row["primary"]
    assert row["ci_low"] < row["ours"] < row["ci_high"]
    assert row["ours"] == pytest.approx(0.8, abs=0.05)
    assert (
        slope_row(f, "L2-row ER")["verdict"] == "holds" and not slope_row(f, "L2-row ER")["primary"]
    )
    exact = slope_row(judged(dial_summary(lambda ter, k: ter + k)))
    assert exact["ours"] == pytest.approx(1.0)


def test_a_student_that_ignores_the_teacher_fails_with_slope_zero() -> None:
    wiggle = {0: 0.5, 1: -0.5, 2: 0.2, 3: -0.1}
    row = slope_row(judged(dial_summary(lambda ter, k: 8.0 + wiggle[k] * (ter > 10) + k)))
    assert abs(row["ours"]) < 0.05 and row["verdict"] == "fails"


def test_slopes_are_per_seed_ols() -> None:
    frame = pd.DataFrame([[1.0, 3.0, 5.0], [0.0, 0.0, 0.0]], index=[0, 1])
    slopes = seed_slopes([1.0, 2.0, 3.0], frame)
    assert slopes.tolist() == pytest.approx([2.0, 0.0])


def test_infonce_above_cosine_at_every_cell_with_holm() -> None:
    f = judged(dial_summary(lambda ter, k: ter / 2 + k))
    rows = f[(f["id"] == "mirror_infonce_above_cosine") & f["primary"]]
    assert len(rows) == len(CELLS) and (rows["verdict"] == "holds").all()
    assert rows["p_holm"].notna().all()  # every cell joins the Holm family
    below = judged(dial_summary(lambda ter, k: ter / 2 + k, infonce_gap=-5.0))
    assert (below.loc[below["id"] == "mirror_infonce_above_cosine", "verdict"] == "fails").all()


def test_no_dial_is_not_tested_and_says_why() -> None:
    f = judged(dial_summary(lambda ter, k: ter), cells=[])
    assert set(f["id"]) == {"mirror_cosine_tracks_teacher", "mirror_infonce_above_cosine"}
    assert (f["verdict"] == "not tested").all()
    assert f["note"].str.contains("no recolour experiment").all()


def test_claims_frame_hooks_the_mirror_rows() -> None:
    """Beside the paper's claims (the fixture of test_claims), the dial's rows are judged;
    without cells they say why not."""
    seeds = (0, 1, 2, 3)
    summary = pd.concat([make_summary(seeds), dial_summary(lambda ter, k: ter + k)])
    opts = {"tables_experiment": "clip_x", "figures_experiment": "dino_x", "chance": 0.01}
    cells = [asdict(c) for c in CELLS]
    f = claims_frame(summary, make_noise(seeds), dial_cells=cells, **opts)
    assert slope_row(f)["verdict"] == "holds"
    assert f.loc[f["id"] == "cosine_far_below_teacher", "verdict"].ne("not tested").any()
    none = claims_frame(summary, make_noise(seeds), **opts)
    assert slope_row(none)["verdict"] == "not tested" and "no recolour" in slope_row(none)["note"]


# ---------------------------------------------------------------- Figure 6


def test_fig6_draws_the_dial(tmp_path: Path) -> None:
    from kdspectra.report.figures_mirror import fig6, fig6_data

    data = fig6_data(dial_summary(lambda ter, k: 0.5 * ter + k), CELLS)
    assert len(data) == len(CELLS) * 2 and data["n_seeds"].eq(4).all()
    assert data["effective_rank_std"].gt(0).all()
    png, pdf = tmp_path / "fig6.png", tmp_path / "fig6.pdf"
    fig6(data, png=png, pdf=pdf)
    assert png.stat().st_size > 10_000 and pdf.stat().st_size > 1_000


# ---------------------------------------------------------------- workflow


@pytest.mark.workflow
def test_dry_run_plans_the_recolour_jobs(tmp_path: Path) -> None:
    """A tiny config with a 2 × 2 dial: one recolour job per cell (no extraction of the
    derived teachers), the cells' students and Figure 6."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(dial_config()))
    proc = conftest.run_snakemake(tmp_path, "-n", "--cores", "2", timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.MULTILINE))
    assert int(counts["recolour_teacher"]) == 4
    assert int(counts["extract_teacher"]) == 1 and int(counts["fig6_mirror"]) == 1
    assert int(counts["train_student"]) == 5 * 2 + 4 * 2
    for cell in ("a0_c0", "a0_c3", "a0p5_c0", "a0p5_c3"):
        assert f"embeddings/digits/clip_small_{cell}/recolour.json" in proc.stdout


def with_dial(
    summary: pd.DataFrame, slope: float, gap: float
) -> tuple[pd.DataFrame, None, dict[str, Any]]:
    """``summary`` plus a dial whose cosine students' ER moves ``slope`` × the teacher's
    (with a seed-dependent wobble) and whose InfoNCE students sit ``gap`` above cosine,
    with the cells as :func:`claims_frame`'s option (for tests/test_claims.py)."""
    seeds = tuple(sorted(summary.loc[summary["role"] == "student", "seed"].unique()))
    dial = dial_summary(lambda ter, k: slope * ter + 10 + 0.3 * k * ter / 40, gap, seeds)
    return pd.concat([summary, dial], ignore_index=True), None, {"dial_cells": DIAL_CELLS}


DIAL_CELLS = [asdict(c) for c in CELLS]


def test_a_cell_name_too_long_for_a_folder_is_refused() -> None:
    cfg = dial_config()
    cfg["experiments"]["m" * 60] = cfg["experiments"].pop("mirror")
    with pytest.raises(ConfigError, match=r"experiments\.m+\.recolour.*at most 64"):
        validate_config(cfg, SCHEMA)


def test_base_teacher_stands_for_its_cells() -> None:
    cfg = validate_config(dial_config(), SCHEMA)
    assert base_teacher(cfg, "clip_small_a0p5_c3") == "clip_small"
    assert base_teacher(cfg, "clip_small") == "clip_small"
