"""What each report rule is asked to build, from the config and the report plan: the
experiment every table and figure reads, Figure 3's objective, what was left out."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kdspectra.config import load_schema, validate_config
from kdspectra.report import options as ro
from kdspectra.report.plan import plan_report

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "src" / "kdspectra" / "config.schema.yaml")
PAPER = yaml.safe_load((REPO / "config.yaml").read_text())


def resolved(**report: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(PAPER)
    cfg["report"].update(report)
    return validate_config(cfg, SCHEMA)


def test_tables_read_the_tables_experiment_figures_the_figures_one() -> None:
    cfg = resolved()
    plan = plan_report(cfg)
    for kind in ("table1", "table2", "ablation"):
        assert ro.table_options(cfg, plan, kind)["experiment"] == "clip_cifar10"
    assert ro.table_options(cfg, plan, "ablation")["students"] == ["cnn_s", "hybrid", "tiny_vit"]
    fig2 = ro.table_options(cfg, plan, "fig2")
    assert fig2 == {
        "experiment": "dinov2_cifar100",
        "students": ["cnn_s", "cnn_m", "cnn_l"],
        "objectives": ["cosine", "cosine_infonce"],
    }
    assert ro.table_options(cfg, plan, "teachers") == {}
    fig1 = ro.figure_options(cfg, "fig1_spectrum")
    assert fig1["experiment"] == "clip_cifar10" and fig1["teacher"] == "clip_vit_b32"
    assert fig1["seeds"] == cfg["seeds"] and fig1["student"] == cfg["report"]["fig1_student"]
    assert ro.figure_options(cfg, "fig3_noise_robustness") == {
        "experiment": "dinov2_cifar100",
        "teacher": "dinov2_vitb14",
    }


def test_fig3_objective_reaches_the_table_the_comparison_and_the_claims() -> None:
    cfg = resolved(fig3_objective="cosine")
    plan = plan_report(cfg)
    assert ro.table_options(cfg, plan, "fig3")["objective"] == "cosine"
    assert ro.paper_comparison_options(cfg, plan)["fig3_objective"] == "cosine"
    assert ro.claims_options(cfg, plan)["noise_objective"] == "cosine"


def test_swapped_experiments_and_what_was_left_out() -> None:
    cfg = resolved(tables="dinov2_cifar100", figures="clip_cifar10")
    cfg["experiments"]["dinov2_cifar100"]["students"] = ["cnn_m"]
    plan = plan_report(cfg)
    assert ro.table_options(cfg, plan, "table1") == {
        "experiment": "dinov2_cifar100",
        "students": ["cnn_m"],
    }
    pc = ro.paper_comparison_options(cfg, plan)
    cl = ro.claims_options(cfg, plan)
    assert pc["tables_experiment"] == cl["tables_experiment"] == "dinov2_cifar100"
    assert pc["figures_experiment"] == cl["figures_experiment"] == "clip_cifar10"
    assert any(o.startswith("ablation:") for o in pc["omitted"])
    assert pc["omitted"] == cl["omitted"] == plan.omitted
    assert set(pc["config"]) == {"seeds", "training", "evaluation", "teachers"}
