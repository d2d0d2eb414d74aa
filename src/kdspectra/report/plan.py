"""Which tables and figures a run can fill, and why the others are left out.

An experiment with one student or one objective is a legitimate run (a quick check, a
single-architecture study), but Table II needs InfoNCE students, the ablation needs a
second architecture, and so on. Instead of refusing such a config, the workflow asks
:func:`plan_report` which report artifacts the enabled experiments can fill, builds only
those, and writes a note for each one left out (logged when the workflow is parsed and
listed in paper_comparison.md and claims.md). Tables are built over the students the
experiment actually ran, in the order the ``report`` section names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kdspectra import registry
from kdspectra.config import enabled_experiments, experiment_objectives, experiment_students

# Report artifacts, in the order a reader meets them.
ARTIFACTS = (
    "table1",
    "table2",
    "ablation",
    "teachers",
    "fig2",
    "fig3",
    "fig4",
    "fig1_spectrum",
    "geometry",
    "paper_comparison",
    "claims",
)
# Opt-in artifacts: built only when the config asks (corruptions: evaluation.corruptions,
# which downloads 2.9 GB per dataset; fig7: a λ sweep or a projector setting, i.e. more
# than one InfoNCE arm), so a paper run without them is still complete.
OPTIONAL_ARTIFACTS = ("corruptions", "fig7")


@dataclass(frozen=True)
class ReportPlan:
    """The artifacts to build (name → the students/objectives each one is built over)
    and, for each artifact left out, one line saying why."""

    include: dict[str, dict[str, Any]] = field(default_factory=dict)
    omitted: list[str] = field(default_factory=list)

    def has(self, artifact: str) -> bool:
        return artifact in self.include


def _ran(config: Mapping[str, Any], exp: str, wanted: list[str]) -> list[str]:
    have = set(experiment_students(config, exp))
    return [s for s in wanted if s in have]


def _infonce_arms(objectives: list[str]) -> list[str]:
    return [o for o in objectives if registry.objective(registry.parse_arm(o).objective).infonce]


def _tradeoff(config: Mapping[str, Any], fex: str) -> dict[str, Any]:
    """Figure 7's experiment, students and arms: the figures experiment when it runs more
    than one InfoNCE arm, else the first enabled experiment that does (a sweep scoped to
    one experiment, ``experiments.<e>.infonce``); {} when none does."""
    for exp in dict.fromkeys([fex, *enabled_experiments(config)]):
        arms = experiment_objectives(config, exp)
        students = _ran(config, exp, list(config["report"]["table_students"]))
        if students and len(_infonce_arms(arms)) > 1:
            return {"experiment": exp, "students": students, "objectives": arms}
    return {}


def plan_report(config: Mapping[str, Any]) -> ReportPlan:
    """What the resolved ``config`` can fill (see the module docstring)."""
    rep = config["report"]
    tex, fex = rep["tables"], rep["figures"]
    # The objective arms each experiment runs (a λ sweep names its arms by λ, so the
    # paper's `cosine_infonce` artifacts are left out of a sweep, with a note).
    objectives = {e: experiment_objectives(config, e) for e in (tex, fex)}
    plan = ReportPlan()
    table_s = _ran(config, tex, list(rep["table_students"]))
    figure_s = _ran(config, fex, list(rep["table_students"]))
    ablation_s = _ran(config, tex, list(rep["ablation_students"]))
    needs: dict[str, tuple[str, list[str], list[str], int, str]] = {
        # artifact: (experiment, students it can use, objectives it needs, min students, what)
        "table1": (tex, table_s, ["cosine"], 1, "report.table_students"),
        "table2": (tex, table_s, ["cosine_infonce"], 1, "report.table_students"),
        "ablation": (tex, ablation_s, ["cosine"], 2, "report.ablation_students"),
        "fig3": (fex, figure_s, [rep["fig3_objective"]], 1, "report.table_students"),
    }
    for name, (exp, students, need, least, key) in needs.items():
        missing = [o for o in need if o not in objectives[exp]]
        if missing:
            plan.omitted.append(f"{name}: experiment {exp!r} runs no {missing[0]} objective")
        elif len(students) < least:
            plan.omitted.append(
                f"{name}: experiment {exp!r} runs {len(students)} of the students in "
                f"{key} (needs {least})"
            )
        else:
            plan.include[name] = {"students": students}
    if figure_s:
        plan.include["fig2"] = {"students": figure_s, "objectives": objectives[fex]}
    else:
        plan.omitted.append(f"fig2: experiment {fex!r} runs none of report.table_students")
    # Figure 4 (geometry during training) needs the tracked metrics: training.track_every.
    if config.get("training", {}).get("track_every") == 0:
        plan.omitted.append("fig4: training.track_every is 0 (no geometry tracked in training)")
    elif figure_s:
        plan.include["fig4"] = {"students": figure_s, "objectives": objectives[fex]}
    else:
        plan.omitted.append(f"fig4: experiment {fex!r} runs none of report.table_students")
    fig1_missing = [o for o in ("cosine", "cosine_infonce") if o not in objectives[tex]]
    if rep["fig1_student"] not in experiment_students(config, tex) or fig1_missing:
        plan.omitted.append(
            f"fig1_spectrum: experiment {tex!r} lacks {rep['fig1_student']} "
            "(report.fig1_student) with both objectives"
        )
    else:
        plan.include["fig1_spectrum"] = {}
    # Figure 7 (the expansion's cost per λ / projector): more than one InfoNCE arm.
    tradeoff = _tradeoff(config, fex)
    if tradeoff:
        plan.include["fig7"] = tradeoff
    # Common corruptions (tables/corruptions, Figure 5): opt-in, evaluation.corruptions.
    if config.get("evaluation", {}).get("corruptions"):
        plan.include["corruptions"] = {}
    # Every run has models to measure: the geometry table spans all of them.
    for always in ("teachers", "geometry", "paper_comparison", "claims"):
        plan.include[always] = {}
    return plan
