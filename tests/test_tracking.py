"""Geometry tracked during training (training.track_every) and Figure 4.

Tiny runs as in test_train.py (64 random images, Student-S at width 0.25, 4 steps per
epoch): tracking must leave the weights bit-identical, fill the tracked epochs only, agree
with the geometry module on the saved weights, survive a kill, and feed Figure 4.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import distillation_data
from kdspectra.errors import ArtifactError, ConfigError
from kdspectra.metrics import geometry
from kdspectra.models.inference import embed_images, load_student
from kdspectra.report.dynamics import fig4_data
from kdspectra.report.figures import build, fig4
from kdspectra.training.loop import METRIC_COLUMNS, TrainConfig, train_student
from kdspectra.training.tracking import (
    TRACK_COLUMNS,
    resolve_track_every,
    track_indices,
    tracked_epochs,
)

N, D, STUDENT = 64, 24, "cnn_s"
CFG = TrainConfig(
    objective="cosine_infonce",
    epochs=3,
    batch_size=16,
    lr=3e-3,
    warmup_epochs=0.5,
    width_mult=0.25,
    track_every=2,
    track_samples=40,
)
# Columns that measure time, not numbers: they differ between any two runs.
TIMING = ("images_per_s", "seconds", "track_seconds")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return distillation_data(N, D)


def train(data: Any, root: Path, cfg: TrainConfig = CFG, **kw: Any) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "weights_out": root / "model.safetensors",
        "metrics_out": root / "metrics.csv",
        "meta_out": root / "meta.json",
        "checkpoint": root / "ckpt.pt",
    }
    images, teacher = data
    train_student(
        STUDENT, images, teacher, cfg, device=torch.device("cpu"), progress_bar=False, **paths, **kw
    )
    return paths


@pytest.fixture(scope="module")
def tracked(data: Any, tmp_path_factory: Any) -> dict[str, Path]:
    return train(data, tmp_path_factory.mktemp("tracked"))


def test_default_records_five_points_over_a_paper_run() -> None:
    every = resolve_track_every(None, 30)
    assert tracked_epochs(every, 30) == [6, 12, 18, 24, 30]
    assert tracked_epochs(resolve_track_every(None, 4), 4) == [1, 2, 3, 4]
    assert tracked_epochs(resolve_track_every(None, 3), 3) == [1, 2, 3]
    assert tracked_epochs(2, 3) == [2, 3]  # the last epoch always
    assert tracked_epochs(resolve_track_every(0, 30), 30) == []


def test_subset_is_fixed_whatever_the_run_and_clipped_to_n() -> None:
    a, b = track_indices(1000, 100), track_indices(1000, 100)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100
    assert np.array_equal(track_indices(50, 2048), np.arange(50))


def test_bad_track_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"training\.track_every"):
        dataclasses.replace(CFG, track_every=-1)
    with pytest.raises(ConfigError, match=r"training\.track_samples"):
        dataclasses.replace(CFG, track_samples=1)


def test_tracking_leaves_the_weights_bit_identical(
    data: Any, tracked: dict[str, Path], tmp_path: Path
) -> None:
    off = train(data, tmp_path / "off", dataclasses.replace(CFG, track_every=0))
    a, b = load_file(str(tracked["weights_out"])), load_file(str(off["weights_out"]))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    plain = pd.read_csv(off["metrics_out"])
    assert plain[list(TRACK_COLUMNS)].isna().all().all()  # off: the columns, all NaN
    assert json.loads(off["meta_out"].read_text())["tracking"] is None
    on = pd.read_csv(tracked["metrics_out"])
    same = [c for c in METRIC_COLUMNS if c not in TRACK_COLUMNS and c not in TIMING]
    pd.testing.assert_frame_equal(on[same], plain[same])


def test_metrics_hold_the_tracked_epochs_and_nan_elsewhere(tracked: dict[str, Path]) -> None:
    metrics = pd.read_csv(tracked["metrics_out"])
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    filled = metrics[list(TRACK_COLUMNS)].notna().all(axis=1)
    assert metrics.loc[filled, "epoch"].tolist() == [2, 3]
    assert metrics.loc[~filled, list(TRACK_COLUMNS)].isna().all().all()
    row = metrics.iloc[-1]
    assert 1 <= row["track_effective_rank"] <= D and 1 <= row["track_rankme"] <= D
    assert -4 <= row["track_uniformity"] <= 0 and -1 <= row["track_cos_to_teacher"] <= 1
    meta = json.loads(tracked["meta_out"].read_text())["tracking"]
    assert meta["every"] == 2 and meta["epochs"] == [2, 3] and meta["samples"] == 40


def test_final_tracked_metrics_match_the_saved_weights(data: Any, tracked: dict[str, Path]) -> None:
    images, teacher = data
    rows = track_indices(N, CFG.track_samples)
    model = load_student(
        tracked["weights_out"], STUDENT, D, width_mult=0.25, device=torch.device("cpu")
    )
    emb = embed_images(model, images[rows], device=torch.device("cpu")).astype(np.float64)
    last = pd.read_csv(tracked["metrics_out"]).iloc[-1]
    expect = {
        "track_effective_rank": geometry.effective_rank(emb),
        "track_effective_rank_l2": geometry.effective_rank_l2(emb),
        "track_rankme": geometry.rankme(emb),
        "track_uniformity": geometry.uniformity(emb),
        "track_cos_to_teacher": geometry.cos_to_teacher(emb, teacher[rows].astype(np.float64)),
    }
    for col, value in expect.items():
        assert last[col] == pytest.approx(value, rel=1e-5, abs=1e-6), col
    meta = json.loads(tracked["meta_out"].read_text())["tracking"]
    assert meta["teacher_effective_rank"] == pytest.approx(geometry.effective_rank(teacher[rows]))


class Killed(Exception):
    """Stands in for kill -9: only files on disk survive."""


def test_resume_after_a_kill_gives_the_same_metrics(
    data: Any, tracked: dict[str, Path], tmp_path: Path
) -> None:
    def die(epoch: int, step: int) -> None:
        if (epoch, step) == (3, 2):  # after the tracked epoch 2 was checkpointed
            raise Killed

    with pytest.raises(Killed):
        train(data, tmp_path, callback=die)
    resumed = train(data, tmp_path)
    keep = [c for c in METRIC_COLUMNS if c not in TIMING]
    a, b = pd.read_csv(resumed["metrics_out"]), pd.read_csv(tracked["metrics_out"])
    pd.testing.assert_frame_equal(a[keep], b[keep])


def test_same_view_training_tracks_against_the_clean_teacher(data: Any, tmp_path: Path) -> None:
    images, teacher = data
    views = np.stack([teacher, teacher[::-1].copy()])  # K=2 stand-in view targets
    cfg = dataclasses.replace(CFG, teacher_view="same", epochs=1, track_every=1)
    paths = train((images, views), tmp_path / "same", cfg, track_teacher=teacher)
    assert np.isfinite(pd.read_csv(paths["metrics_out"])["track_cos_to_teacher"]).all()
    with pytest.raises(ArtifactError, match="64 rows"):
        train((images, views), tmp_path / "bad", cfg, track_teacher=teacher[:10])


# --------------------------------------------------------------------------- Figure 4


def synthetic_fig4() -> pd.DataFrame:
    records = [
        {"role": "teacher", "model": "teacher", "effective_rank": 9.0, "effective_rank_l2": 8.0}
    ]
    for student, params in (("cnn_s", 50_000), ("cnn_m", 200_000)):
        for obj, drift in (("cosine", -1.0), ("cosine_infonce", 1.0)):
            for epoch in (2, 4, 6):
                er = 6 + drift * epoch / 3
                records.append(
                    {
                        "role": "student",
                        "student": student,
                        "model": student,
                        "params": params,
                        "objective": obj,
                        "epoch": epoch,
                        "effective_rank": er,
                        "effective_rank_std": 0.3,
                        "effective_rank_l2": er - 0.5,
                        "effective_rank_l2_std": 0.2,
                    }
                )
    return pd.DataFrame.from_records(records)


def test_fig4_draws_a_panel_per_student_with_the_teacher_line(tmp_path: Path) -> None:
    fig = fig4(synthetic_fig4(), teacher="clip_vit_b32", png=tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 10_000
    panels = [ax for ax in fig.axes if ax.get_xlabel() == "epoch"]
    assert len(panels) == 2
    labels = {line.get_label() for line in panels[0].get_lines()}
    assert "Teacher-CLIP, ER (raw)" in labels and "Teacher-CLIP, ER (L2 rows)" in labels
    # per objective a raw (solid) and an L2 (dashed) curve: 2 × 2, plus 2 teacher lines
    styles = [line.get_linestyle() for line in panels[0].get_lines()]
    assert styles.count("-") == 2 and styles.count("--") == 2


def test_fig4_from_tiny_runs(data: Any, tracked: dict[str, Path], tmp_path: Path) -> None:
    other = train(data, tmp_path / "seed1", dataclasses.replace(CFG, seed=1))
    runs = [tracked, other]
    frame = fig4_data([r["metrics_out"] for r in runs], [r["meta_out"] for r in runs])
    students = frame[frame["role"] == "student"]
    assert students["epoch"].tolist() == [2, 3] and (students["n_seeds"] == 2).all()
    seeds = [pd.read_csv(r["metrics_out"]).iloc[-1]["track_effective_rank"] for r in runs]
    assert students["effective_rank"].iloc[-1] == pytest.approx(np.mean(seeds))
    assert (frame["role"] == "teacher").sum() == 1
    frame.to_csv(tmp_path / "fig4.csv", index=False)
    out = {"png": tmp_path / "f.png", "pdf": tmp_path / "f.pdf"}
    build("fig4_dynamics", {"table": tmp_path / "fig4.csv"}, **out)
    assert (tmp_path / "f.png").exists() and (tmp_path / "f.pdf").exists()


def test_fig4_data_refuses_runs_without_tracking(data: Any, tmp_path: Path) -> None:
    off = train(data, tmp_path / "off", dataclasses.replace(CFG, track_every=0, epochs=1))
    with pytest.raises(ArtifactError, match="track_every"):
        fig4_data([off["metrics_out"]], [off["meta_out"]])


def test_fig4_is_planned_only_when_training_tracks() -> None:
    import copy

    import yaml

    from kdspectra.config import load_schema, validate_config
    from kdspectra.report.plan import plan_report

    repo = Path(__file__).resolve().parents[1]
    schema = load_schema(repo / "src" / "kdspectra" / "config.schema.yaml")
    paper = yaml.safe_load((repo / "config.yaml").read_text())
    plan = plan_report(validate_config(paper, schema))
    assert plan.include["fig4"]["objectives"] == ["cosine", "cosine_infonce"]
    off = copy.deepcopy(paper)
    off.setdefault("training", {})["track_every"] = 0
    plan = plan_report(validate_config(off, schema))
    assert "fig4" not in plan.include
    assert any("fig4" in n and "track_every" in n for n in plan.omitted)


def test_fig4_stage_writes_the_table_and_its_provenance(
    data: Any, tracked: dict[str, Path], tmp_path: Path
) -> None:
    from kdspectra import stages
    from kdspectra.report.provenance import Provenance

    prov = Provenance(commit="abc123", config_hash="f00", teacher_weights={"t": "random-init"})
    out = {"csv": tmp_path / "fig4.csv", "provenance": tmp_path / "fig4.provenance.json"}
    inputs = {"metrics": [tracked["metrics_out"]], "meta": [tracked["meta_out"]]}
    params = {"options": {"experiment": "x"}, "provenance": prov.to_dict()}
    stages.fig4_data(inputs, out, params)
    assert pd.read_csv(out["csv"])["epoch"].dropna().tolist() == [2, 3]
    assert json.loads(out["provenance"].read_text())["commit"] == "abc123"
