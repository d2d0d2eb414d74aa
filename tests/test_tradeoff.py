"""The λ sweep and projector in the report: Figure 7's data and drawing, the report plan
(Figure 7 only with more than one InfoNCE arm; the paper's cosine_infonce artifacts left
out of a sweep), arm labels and colours, and the claim expansion_survives_projector on
synthetic summaries whose verdicts are known by construction."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdspectra.config import validate_config
from kdspectra.paper import claims
from kdspectra.report.figures_style import OBJECTIVE_COLOURS, OBJECTIVE_LABELS
from kdspectra.report.figures_tradeoff import fig7, fig7_data
from kdspectra.report.options import tradeoff_options
from kdspectra.report.plan import plan_report
from kdspectra.report.render import objective_label
from test_config import PAPER, SCHEMA
from test_tables import make_noise, make_summary

SEEDS = (0, 1, 2)
OPTS = {"tables_experiment": "clip_x", "figures_experiment": "dino_x", "chance": 0.01}
STUDENTS = ("cnn_s", "cnn_m", "cnn_l")


def with_arms(
    summary: pd.DataFrame, gains: dict[str, float], experiment: str = "clip_x"
) -> pd.DataFrame:
    """``summary`` plus, per CNN student of ``experiment``, one copy of its cosine rows per
    arm in ``gains`` with ER = cosine ER + gain (+ 0.5·seed for arms with the head, so the
    paired differences have a spread); cos_to_teacher falls with the gain."""
    base = summary[
        (summary["experiment"] == experiment)
        & (summary["objective"] == "cosine")
        & summary["student"].isin(STUDENTS)
    ]
    extra = []
    for arm, gain in gains.items():
        spread = 0.5 * base["seed"] if arm.endswith("_mlp") else 0.0
        extra.append(
            base.assign(
                objective=arm,
                effective_rank=base["effective_rank"] + gain + spread,
                effective_rank_l2=base["effective_rank_l2"] + gain + spread,
                cos_to_teacher=base["cos_to_teacher"] - 0.01 * gain,
            )
        )
    return pd.concat([summary, *extra], ignore_index=True)


def judged(summary: pd.DataFrame) -> pd.DataFrame:
    return claims.claims_frame(summary, make_noise(SEEDS), **OPTS)


def projector_rows(f: pd.DataFrame) -> pd.DataFrame:
    return f[f["id"] == "expansion_survives_projector"]


# --------------------------------------------------------------------------- the claim

SWEEP = {
    "cosine_infonce_w0": 0.0,
    "cosine_infonce_w0_mlp": 0.0,
    "cosine_infonce_w0.3": 12.0,
    "cosine_infonce_w0.3_mlp": 8.0,
}


def test_the_gain_with_the_head_holds_per_student_and_lambda() -> None:
    f = projector_rows(judged(with_arms(make_summary(SEEDS), SWEEP)))
    primary = f[f["primary"]]
    assert len(primary) == 3  # λ = 0 skipped: it adds no InfoNCE
    assert set(primary["verdict_raw"]) == {"holds"}
    assert primary["quantity"].str.contains("λ=0.3 (MLP)", regex=False).all()
    s = primary[primary["quantity"].str.contains("Student-S")].iloc[0]
    assert s["ours"] == pytest.approx(8.0 + 0.5) and s["test"].startswith("paired t")
    assert "without the head (cosine_infonce_w0.3): gain +12; head − no head -3.5" in s["note"]
    assert set(f.loc[~f["primary"], "measure"]) == {"L2-row ER"}


def test_a_head_that_removes_the_gain_fails() -> None:
    gains = {"cosine_infonce_mlp": -3.0}  # one λ, [none, mlp]: the fixture's arm is "none"
    f = projector_rows(judged(with_arms(make_summary(SEEDS), gains)))
    primary = f[f["primary"]]
    assert len(primary) == 3 and set(primary["verdict_raw"]) == {"fails"}
    assert primary["quantity"].str.contains("cosine + InfoNCE (MLP)", regex=False).all()


def test_not_tested_without_a_projector_arm_and_says_why() -> None:
    f = projector_rows(judged(make_summary(SEEDS)))
    assert list(f["verdict"]) == ["not tested"]
    assert "no arm with a projector head" in f["note"].iloc[0]
    only_head = with_arms(make_summary(SEEDS), {"cosine_infonce_w0.3_mlp": 5.0})
    f = projector_rows(judged(only_head))  # no λ = 0.3 without the head to compare with
    assert list(f["verdict"]) == ["not tested"]


# --------------------------------------------------------------------------- labels, colours


def test_arms_are_labelled_and_coloured_apart() -> None:
    names = ["cosine", "cosine_infonce", *SWEEP]
    labels = [OBJECTIVE_LABELS[n] for n in names]
    assert labels[-1] == "cosine + InfoNCE λ=0.3 (MLP)" == objective_label(names[-1])
    assert len(set(labels)) == len(set(OBJECTIVE_COLOURS[n] for n in names)) == len(names)
    assert OBJECTIVE_COLOURS["cosine_infonce"] == "#DD8452"  # the registered colour
    assert OBJECTIVE_LABELS.get("mse", "mse") == "mse" and objective_label("mse") == "mse"


# --------------------------------------------------------------------------- Figure 7


def test_fig7_data_has_one_row_per_student_and_arm() -> None:
    s = with_arms(make_summary(SEEDS), SWEEP)
    arms = ["cosine", *SWEEP, "cosine_infonce_w9"]  # an arm the run lacks is skipped
    d = fig7_data(s, "clip_x", list(STUDENTS), arms)
    assert len(d) == 3 * 5 and list(dict.fromkeys(d["objective"])) == arms[:-1]
    r = d[(d["student"] == "cnn_m") & (d["objective"] == "cosine_infonce_w0.3_mlp")].iloc[0]
    cos = s[
        (s["experiment"] == "clip_x") & (s["student"] == "cnn_m") & (s["objective"] == "cosine")
    ]
    er = cos["effective_rank"].to_numpy() + 8.0 + 0.5 * cos["seed"].to_numpy()
    assert r["effective_rank"] == pytest.approx(er.mean())
    assert r["effective_rank_std"] == pytest.approx(np.std(er, ddof=1))
    assert (r["weight"], r["projector"], r["n_seeds"], r["infonce"]) == (0.3, "mlp", 3, True)
    assert math.isnan(d[d["objective"] == "cosine"]["weight"].iloc[0])


def test_fig7_renders_png_and_pdf(tmp_path: Path) -> None:
    d = fig7_data(with_arms(make_summary(SEEDS), SWEEP), "clip_x", list(STUDENTS),
                  ["cosine", *SWEEP])  # fmt: skip
    fig = fig7(d, experiment="clip_x", png=tmp_path / "f.png", pdf=tmp_path / "f.pdf")
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").stat().st_size > 0
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts[:2] == ["cosine", "cosine + InfoNCE λ=0"] and "Student-L" in texts
    assert [ax.get_xlabel() for ax in fig.axes] == [
        "cosine to the teacher (test)",
        "linear-probe accuracy (clean test)",
    ]


# --------------------------------------------------------------------------- the plan


def planned(**infonce: object) -> tuple[dict, object]:
    cfg = copy.deepcopy(PAPER)
    cfg["training"]["infonce"] |= infonce
    cfg = validate_config(cfg, SCHEMA)
    return cfg, plan_report(cfg)


def test_figure_7_only_with_more_than_one_infonce_arm() -> None:
    cfg, plan = planned()
    assert not plan.has("fig7") and tradeoff_options(cfg, plan) == {}
    cfg, plan = planned(weight=[0, 0.3], projector=["none", "mlp"])
    opts = tradeoff_options(cfg, plan)
    assert opts["experiment"] == "dinov2_cifar100" and opts["teacher"] == "dinov2_vitb14"
    assert opts["objectives"] == [
        "cosine",
        "cosine_infonce_w0",
        "cosine_infonce_w0_mlp",
        "cosine_infonce_w0.3",
        "cosine_infonce_w0.3_mlp",
    ]
    assert plan.include["fig2"]["objectives"] == opts["objectives"]
    # a sweep names no arm cosine_infonce: the paper's artifacts that need it are left out
    assert not plan.has("table2") and any("table2" in n for n in plan.omitted)
    _, plan = planned(projector=["none", "mlp"])  # one λ, both settings: two arms
    assert plan.has("fig7") and plan.has("table2")


def test_figure_3_and_the_robustness_claims_may_name_an_arm() -> None:
    """In a sweep report.fig3_objective names the arm Figure 3 and the noise claims use."""
    cfg = copy.deepcopy(PAPER)
    cfg["training"]["infonce"]["weight"] = [0, 1]
    cfg["report"]["fig3_objective"] = "cosine_infonce_w1"
    cfg = validate_config(cfg, SCHEMA)
    plan = plan_report(cfg)
    assert plan.has("fig3") and not plan.has("table2")
    from kdspectra.report.options import claims_options, table_options

    assert table_options(cfg, plan, "fig3")["objective"] == "cosine_infonce_w1"
    assert claims_options(cfg, plan)["noise_objective"] == "cosine_infonce_w1"
    cfg["report"]["fig3_objective"] = "cosine_infonce_w0.5"  # an arm this run lacks
    assert not plan_report(cfg).has("fig3")


def test_the_claim_and_figure_7_follow_a_sweep_scoped_to_another_experiment() -> None:
    s = make_summary(SEEDS)
    other = s[s["experiment"] == "clip_x"].assign(experiment="sweep_x")
    s = with_arms(pd.concat([s, other], ignore_index=True), SWEEP, experiment="sweep_x")
    primary = projector_rows(judged(s)).query("primary")
    assert len(primary) == 3 and primary["quantity"].str.contains("(sweep_x)", regex=False).all()
    cfg = copy.deepcopy(PAPER)
    cfg["experiments"]["clip_cifar10"]["infonce"] = {"projector": ["none", "mlp"]}
    cfg = validate_config(cfg, SCHEMA)
    opts = tradeoff_options(cfg, plan_report(cfg))
    assert opts["experiment"] == "clip_cifar10" and opts["teacher"] == "clip_vit_b32"
    assert opts["objectives"] == ["cosine", "cosine_infonce", "cosine_infonce_mlp"]
