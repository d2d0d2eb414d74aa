"""What each report rule is asked to build: pure functions of the resolved config and the
report plan, so the Snakefile's params are thin calls and the choices are testable.

The ``report`` section names the experiment that plays the paper's CLIP/CIFAR-10 run
(``tables``: Tables I–II, the ablation, Figure 1) and its DINOv2/CIFAR-100 run
(``figures``: Figures 2–3); :func:`kdspectra.report.plan.plan_report` says which students
(and objectives) each artifact is built over and which artifacts are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from kdspectra.dials import dial_cells
from kdspectra.report.plan import ReportPlan

# The config sections paper_comparison.md opens with (the choices the paper leaves open).
OPEN_CHOICES = ("seeds", "training", "evaluation", "teachers")
TABLES_RUN = ("table1", "table2", "ablation")


def _teacher(config: Mapping[str, Any], experiment: str) -> str:
    return str(config["experiments"][experiment]["teacher"])


def table_options(config: Mapping[str, Any], plan: ReportPlan, kind: str) -> dict[str, Any]:
    """Builder options of table ``kind`` (:func:`kdspectra.report.tables.build`): its experiment
    and the students (and objectives) the plan found there; {} for ``teachers``."""
    rep = config["report"]
    built_over = plan.include.get(kind, {})
    if kind in TABLES_RUN:
        return {"experiment": rep["tables"], **built_over}
    if kind in ("fig2", "fig4"):
        return {"experiment": rep["figures"], **built_over}
    if kind == "fig3":
        return {"experiment": rep["figures"], "objective": rep["fig3_objective"], **built_over}
    return {}


def figure_options(config: Mapping[str, Any], figure: str) -> dict[str, Any]:
    """Options of :func:`kdspectra.report.figures.build`: Figure 1 draws ``report.fig1_student``
    of the tables experiment over every seed; Figures 2–3 the figures experiment."""
    rep = config["report"]
    if figure == "fig1_spectrum":
        return {
            "experiment": rep["tables"],
            "student": rep["fig1_student"],
            "teacher": _teacher(config, rep["tables"]),
            "seeds": config["seeds"],
        }
    return {"experiment": rep["figures"], "teacher": _teacher(config, rep["figures"])}


def paper_comparison_options(config: Mapping[str, Any], plan: ReportPlan) -> dict[str, Any]:
    """Which experiment plays which paper run, the open choices, what was left out."""
    rep = config["report"]
    return {
        "tables_experiment": rep["tables"],
        "figures_experiment": rep["figures"],
        "fig3_objective": rep["fig3_objective"],
        "config": {k: config[k] for k in OPEN_CHOICES},
        "omitted": plan.omitted,
    }


def claims_options(config: Mapping[str, Any], plan: ReportPlan) -> dict[str, Any]:
    """Options of :func:`kdspectra.paper.claims.claims_frame` plus ``omitted``."""
    rep = config["report"]
    return {
        "tables_experiment": rep["tables"],
        "figures_experiment": rep["figures"],
        "table_students": rep["table_students"],
        "ablation_students": rep["ablation_students"],
        "noise_objective": rep["fig3_objective"],
        "dial_cells": mirror_options(config)["cells"],
        "omitted": plan.omitted,
    }


def mirror_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Figure 6's and the mirror claims' cells (:func:`kdspectra.dials.dial_cells`) as
    plain dicts, so they pass through Snakemake params; [] without a recolour dial."""
    return {"cells": [asdict(cell) for cell in dial_cells(config)]}


def tradeoff_options(config: Mapping[str, Any], plan: ReportPlan) -> dict[str, Any]:
    """Figure 7's options: the experiment the plan chose (the figures one, or the one that
    sweeps), its teacher, its students and objective arms ({} when no experiment runs
    more than one InfoNCE arm)."""
    built_over = plan.include.get("fig7")
    if built_over is None:
        return {}
    return {"teacher": _teacher(config, built_over["experiment"]), **built_over}
