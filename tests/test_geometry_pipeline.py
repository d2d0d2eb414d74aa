"""Every geometry metric and the kNN accuracy, through the pipeline's stages and reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdspectra import stages
from kdspectra.data.embeddings import save_embeddings
from kdspectra.errors import ArtifactError
from kdspectra.io import save_json, save_npy
from kdspectra.metrics.geometry import geometry_metrics
from kdspectra.metrics.probe import fit_probe, knn_accuracy, noise_accuracy
from kdspectra.paper import claims
from kdspectra.paper import comparison as paper
from kdspectra.report import tables
from test_tables import RANDOM, make_noise, make_summary

PROBE = {"seed": 0, "Cs": [1.0], "max_iter": 100}


def _emb(rng: np.random.Generator, n: int, d: int, labels: np.ndarray) -> np.ndarray:
    centres = np.random.default_rng(7).normal(size=(labels.max() + 1, d))
    return (centres[labels] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


@pytest.fixture
def spectrum_files(tmp_path: Path) -> dict[str, Path]:
    """A teacher and a student (130 × 24 test embeddings, 4 classes), labels, meta."""
    rng = np.random.default_rng(0)
    labels = np.arange(130) % 4
    teacher = _emb(rng, 130, 24, labels)
    student = (teacher @ rng.normal(size=(24, 24)) + 3.0).astype(np.float32)  # offset: RankMe
    save_embeddings(tmp_path / "t.npy", tmp_path / "t.parquet", teacher, labels, "test")
    save_embeddings(tmp_path / "s.npy", tmp_path / "s.parquet", student, labels, "test")
    save_npy(tmp_path / "y.npy", labels.astype(np.int64))
    save_json(tmp_path / "meta.json", {"feature_width": 16})
    return {"t": tmp_path / "t.npy", "s": tmp_path / "s.npy", "y": tmp_path / "y.npy"} | {
        "meta": tmp_path / "meta.json",
        "dir": tmp_path,
    }


def _spectrum(files: dict[str, Path], student: bool, params: dict) -> dict:
    inputs = {"test": files["s" if student else "t"], "labels": files["y"]}
    if student:
        inputs |= {"teacher": files["t"], "meta": files["meta"]}
    out = {"values": files["dir"] / "v.parquet", "stats": files["dir"] / "v.json"}
    stages.measure_model(inputs, out, params)
    return json.loads(out["stats"].read_text())


def test_spectrum_json_holds_every_metric_of_geometry_metrics(spectrum_files) -> None:
    f = spectrum_files
    stats = _spectrum(f, True, {"alpha_req_fit": [2, 20]})
    student, teacher = np.load(f["s"]), np.load(f["t"])
    want = geometry_metrics(student, np.load(f["y"]), teacher, alpha_fit=(2, 20))
    want["cos_to_teacher"] = want.pop("cos_to_reference")
    for name, value in want.items():
        assert stats[name] == value, name  # the stage is geometry_metrics, bit for bit
    assert stats["alpha_req_fit"] == [2, 20] and stats["alpha_req_points"] == 18
    assert stats["uniformity_subsample"] is None  # 130 rows: exact
    # cos_to_teacher is still the row-paired cosine of the saved arrays
    a, b = student.astype(np.float64), teacher.astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert stats["cos_to_teacher"] == pytest.approx(cos.mean(), rel=1e-12)
    assert set(stages.SPECTRUM_KEYS) <= set(stats)


def test_teacher_spectrum_has_no_alignment_and_default_alpha_fit(spectrum_files) -> None:
    stats = _spectrum(spectrum_files, False, {})
    assert math.isnan(stats["cos_to_teacher"]) and math.isnan(stats["linear_cka"])
    assert stats["alpha_req_fit"] == [10, 100]
    teacher = np.load(spectrum_files["t"])
    assert stats["rankme"] == geometry_metrics(teacher)["rankme"]
    assert stats["per_class_effective_rank"] > 0


@pytest.mark.parametrize(
    ("fit", "window", "reason"),
    [
        ([2, 20], [2, 20], None),  # inside the rank (24): fitted as asked
        ([10, 100], [10, 25], "window [10, 100) clipped to [10, 25) at rank 24"),
        ([22, 60], [22, 25], "3 eigenvalue(s) in the window, fewer than 5"),  # α not reported
    ],
)
def test_spectrum_json_records_the_fitted_window_and_why(
    spectrum_files, fit, window, reason
) -> None:
    """Beside α: the window asked for, the one fitted after clipping at the rank, and the
    reason when it was clipped or α is NaN (null when the whole window was fitted)."""
    stats = _spectrum(spectrum_files, False, {"alpha_req_fit": fit})
    assert stats["alpha_req_fit"] == fit and stats["alpha_req_window"] == window
    if reason is None:
        assert stats["alpha_req_reason"] is None and math.isfinite(stats["alpha_req"])
    else:
        assert reason in stats["alpha_req_reason"]
    assert math.isnan(stats["alpha_req"]) == (stats["alpha_req_points"] < 5)


@pytest.mark.parametrize("fit", [[20, 10], [0, 5], [10], [1.5, 9]])
def test_bad_alpha_fit_names_the_config_key(spectrum_files, fit) -> None:
    with pytest.raises(ArtifactError, match=r"evaluation\.alpha_req_fit"):
        _spectrum(spectrum_files, False, {"alpha_req_fit": fit})


def test_noise_stage_knn_columns_are_knn_accuracy_on_the_saved_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    ytr, yte = np.arange(150) % 3, np.arange(45) % 3
    save_npy(tmp_path / "ytr.npy", ytr.astype(np.int64))
    save_npy(tmp_path / "yte.npy", yte.astype(np.int64))
    xtr = _emb(rng, 150, 6, ytr)
    save_embeddings(tmp_path / "tr.npy", tmp_path / "tr.parquet", xtr, ytr, "train")
    clean = _emb(rng, 45, 6, yte)
    noisy = np.stack([clean, clean + 3 * rng.normal(size=clean.shape)]).astype(np.float32)
    save_npy(tmp_path / "noisy.npy", noisy)
    inputs = {"train": tmp_path / "tr.npy", "noisy": tmp_path / "noisy.npy"}
    inputs |= {"train_labels": tmp_path / "ytr.npy", "test_labels": tmp_path / "yte.npy"}
    params = {"sigmas": [0.0, 0.5], "probe": PROBE, "knn_k": [5, 200], "knn_temperature": 0.1}
    stages.measure_model(inputs, {"accuracy": tmp_path / "n.parquet"}, params)
    curve = pd.read_parquet(tmp_path / "n.parquet")
    for k in (5, 200):  # 200 > 150 train rows: every train row votes
        want = [knn_accuracy(xtr, ytr, block, yte, k=k, temperature=0.1) for block in noisy]
        assert curve[f"knn{k}_accuracy"].tolist() == want
    assert curve["knn5_accuracy"].iloc[0] > curve["knn5_accuracy"].iloc[1]
    probe = noise_accuracy(fit_probe(xtr, ytr, **PROBE), noisy, yte, [0.0, 0.5])
    assert curve["accuracy"].tolist() == probe["accuracy"].tolist()  # the probe is unchanged
    # Without knn params the stage uses the schema's defaults, k = 20 and 200
    stages.measure_model(
        inputs, {"accuracy": tmp_path / "d.parquet"}, {"sigmas": [0.0, 0.5], "probe": PROBE}
    )
    default = pd.read_parquet(tmp_path / "d.parquet")
    assert default["knn20_accuracy"].iloc[0] == knn_accuracy(xtr, ytr, clean, yte, k=20)
    assert "knn200_accuracy" in default.columns


def test_collect_carries_geometry_and_clean_knn(tmp_path: Path) -> None:
    spec = {m: 0.5 for m in stages.SPECTRUM_KEYS} | {"uniformity_subsample": None}
    save_json(tmp_path / "spec.json", spec | {"rankme": 7.5})
    save_json(tmp_path / "meta.json", {"params": 10})
    curve = pd.DataFrame(
        {"sigma": [0.0, 0.3], "accuracy": [0.8, 0.5], "knn20_accuracy": [0.7, 0.4]}
    )
    curve.to_parquet(tmp_path / "noise.parquet")
    rec = {"experiment": "e", "dataset": "d", "teacher": "t", "model": "teacher"}
    rec |= {"spectrum": tmp_path / "spec.json", "noise": tmp_path / "noise.parquet"}
    out = {"summary": tmp_path / "s.parquet", "noise": tmp_path / "l.parquet"}
    stages.collect({}, out, {"records": [rec | {"meta": tmp_path / "meta.json"}]})
    summary = pd.read_parquet(out["summary"])
    assert summary.loc[0, "rankme"] == 7.5 and summary.loc[0, "clean_knn20_accuracy"] == 0.7
    assert math.isnan(summary.loc[0, "uniformity_subsample"])
    assert pd.read_parquet(out["noise"])["knn20_accuracy"].tolist() == [0.7, 0.4]
    save_json(tmp_path / "spec.json", {k: v for k, v in spec.items() if k != "rankme"})
    with pytest.raises(ArtifactError, match="rankme"):  # written before the geometry suite
        stages.collect({}, out, {"records": [rec | {"meta": tmp_path / "meta.json"}]})


def geometry_summary(seeds=(0, 1, 2)) -> pd.DataFrame:
    """The tables' synthetic summary plus the geometry columns: RankMe = raw ER + 1."""
    s = make_summary(seeds)
    rng = np.random.default_rng(0)
    s["rankme"] = s["effective_rank"] + 1.0
    for m in ("participation_ratio", "stable_rank", "alpha_req", "alpha_req_r2", "uniformity"):
        s[m] = rng.uniform(0.1, 5.0, len(s))
    s["per_class_effective_rank"] = s["effective_rank"] / 2
    s["linear_cka"] = np.where(s["role"] == "teacher", np.nan, 0.8)
    s["clean_knn20_accuracy"] = 0.7
    s["mean_pairwise_cosine"], s["centred_energy_share"] = 0.3, 0.6  # the guards' cone numbers
    return s


def test_geometry_table_one_row_per_model_with_every_metric() -> None:
    s = geometry_summary()
    frame = tables.build("geometry", s)
    models = s[["experiment", "role", "student", "objective"]].drop_duplicates()
    assert len(frame) == len(models)
    shown = (*tables.GEOMETRY_TABLE_METRICS, *tables.GEOMETRY_GUARDS, "clean_accuracy")
    for m in (*shown, "clean_knn20_accuracy"):
        assert m in frame.columns and f"{m}_std" in frame.columns
    first = frame.iloc[0]
    assert first["model"].startswith("Teacher-") and first["objective"] == ""
    students = s[(s["role"] == "student") & (s["experiment"] == first["experiment"])]
    one = students[(students["student"] == "cnn_m") & (students["objective"] == "cosine")]
    row = frame[(frame["model"] == "Student-M") & (frame["objective"] == "cosine")]
    row = row[row["experiment"] == first["experiment"]].iloc[0]
    assert row["rankme"] == pytest.approx(one["rankme"].mean())
    assert row["rankme_std"] == pytest.approx(one["rankme"].std(ddof=1))
    assert row["n_seeds"] == 3
    with pytest.raises(ArtifactError, match="rankme"):  # an old summary
        tables.build("geometry", make_summary((0,)))


def test_geometry_table_stage_writes_notice_footer_and_sidecar(tmp_path: Path) -> None:
    geometry_summary().to_parquet(tmp_path / "summary.parquet")
    make_noise((0, 1, 2)).to_parquet(tmp_path / "noise.parquet")
    inputs = {"summary": tmp_path / "summary.parquet", "noise": tmp_path / "noise.parquet"}
    out = {"csv": tmp_path / "geometry.csv", "md": tmp_path / "geometry.md"}
    out["provenance"] = tmp_path / "geometry.provenance.json"
    stages.table(inputs, out, {"options": {}, "provenance": RANDOM.to_dict()})
    md = out["md"].read_text()
    assert RANDOM.notice() in md and RANDOM.footer() in md and "RankMe" in md
    assert json.loads(out["provenance"].read_text())["random_init"] is True
    assert len(pd.read_csv(out["csv"])) == len(tables.build("geometry", geometry_summary()))


def test_claims_judge_every_er_claim_on_rankme_too() -> None:
    s = geometry_summary()
    opts = {"tables_experiment": "clip_x", "figures_experiment": "dino_x"}
    f = claims.claims_frame(s, make_noise((0, 1, 2)), **opts)
    rank = f[f["measure"] == "RankMe"]
    raw = f[(f["measure"] == "raw ER") & (f["n_seeds"] > 0)]
    multi = {cid for cid in raw["id"] if (f.loc[f["id"] == cid, "measure"] == "L2-row ER").any()}
    assert set(rank["id"]) == multi  # every ER id judged on L2 rows is judged on RankMe too
    assert rank["quantity"].str.endswith("RankMe").all() and rank["paper"].isna().all()
    assert not rank["primary"].any() and rank["p_holm"].isna().all()
    # RankMe = ER + 1 here, so every paired gap is the raw ER's: same raw verdicts
    for cid in ("infonce_raises_er", "dino_infonce_raises_er"):
        ours, base = rank[rank["id"] == cid], raw[raw["id"] == cid]
        assert ours["verdict_raw"].tolist() == base["verdict_raw"].tolist()
        assert ours["ours"].to_numpy() == pytest.approx(base["ours"].to_numpy())
    no_rankme = claims.claims_frame(make_summary((0, 1, 2)), make_noise((0, 1, 2)), **opts)
    assert not (no_rankme["measure"] == "RankMe").any()


def test_paper_comparison_has_a_beyond_the_paper_section() -> None:
    opts = {"tables_experiment": "clip_x", "figures_experiment": "dino_x"}
    text = paper.paper_comparison(geometry_summary(), make_noise((0, 1, 2)), **opts)
    beyond = text.split("## Beyond the paper", 1)[1]
    for header in ("RankMe", "α-ReQ", "Uniformity", "CKA to teacher", "kNN-20 acc."):
        assert header in beyond, header
    assert "ER (raw, paper)" not in beyond  # the paper's own number is in its sections
    assert "## Beyond the paper" not in paper.paper_comparison(make_summary(), **opts)
