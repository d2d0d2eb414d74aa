"""Which report artifacts a config can fill: all for the paper, the rest left out with a
note for an experiment with one student or one objective (which validation accepts)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from kdspectra.config import load_schema, validate_config
from kdspectra.report.plan import ARTIFACTS, plan_report

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "src" / "kdspectra" / "config.schema.yaml")
PAPER = yaml.safe_load((REPO / "config.yaml").read_text())


def resolved(**experiment: Any) -> dict[str, Any]:
    """The paper config with both experiments narrowed to ``experiment``'s keys."""
    cfg = copy.deepcopy(PAPER)
    for exp in cfg["experiments"].values():
        exp.update(experiment)
    return validate_config(cfg, SCHEMA)


def test_paper_config_fills_everything() -> None:
    plan = plan_report(validate_config(PAPER, SCHEMA))
    assert set(plan.include) == set(ARTIFACTS) and plan.omitted == []
    assert plan.include["table1"]["students"] == ["cnn_s", "cnn_m", "cnn_l"]
    assert plan.include["ablation"]["students"] == ["cnn_s", "hybrid", "tiny_vit"]


def test_single_objective_leaves_out_what_needs_the_other() -> None:
    plan = plan_report(resolved(objectives=["cosine"]))
    assert {"table1", "ablation", "fig2", "teachers", "claims"} <= set(plan.include)
    assert not {"table2", "fig3", "fig1_spectrum"} & set(plan.include)
    assert plan.include["fig2"]["objectives"] == ["cosine"]
    notes = "\n".join(plan.omitted)
    assert "table2: experiment 'clip_cifar10' runs no cosine_infonce objective" in notes
    assert "fig3:" in notes and "fig1_spectrum:" in notes


def test_single_student_builds_tables_over_that_student() -> None:
    plan = plan_report(resolved(students=["cnn_m"]))
    assert plan.include["table1"]["students"] == plan.include["table2"]["students"] == ["cnn_m"]
    assert "ablation" not in plan.include and "fig1_spectrum" not in plan.include
    assert any("ablation:" in n and "report.ablation_students" in n for n in plan.omitted)
