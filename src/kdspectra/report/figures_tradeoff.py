"""Figure 7, beyond the paper: what InfoNCE's expansion costs. Effective rank against the
cosine to the teacher (fidelity) and against the linear-probe accuracy (usefulness), one
point per student × objective arm (each λ, with and without the projector head), the
cosine students as the reference, mean ± std over seeds on both axes.

Only drawn for a run whose figures experiment has more than one InfoNCE arm (a λ sweep or
a projector setting beside the plain one, :func:`kdspectra.report.plan.plan_report`): with
one arm the trade-off is the paper's two bars. Data (:func:`fig7_data`) and drawing
(:func:`fig7`) sit together because the figure is the table's only reader.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kdspectra import registry
from kdspectra.io import PathLike
from kdspectra.report.figures_style import (
    OBJECTIVE_COLOURS,
    OBJECTIVE_LABELS,
    new_figure,
    require,
    save,
    subtitle,
)
from kdspectra.report.provenance import Provenance
from kdspectra.report.render import student_label
from kdspectra.report.tables import seed_stats

# (column of the summary, axis label); ER is the y of both panels.
X_AXES = (
    ("cos_to_teacher", "cosine to the teacher (test)"),
    ("clean_accuracy", "linear-probe accuracy (clean test)"),
)
Y_AXIS = ("effective_rank", "entropy effective rank (dimensions)")
MEASURES = (Y_AXIS[0], *(c for c, _ in X_AXES))
MARKERS = ("o", "s", "^", "D", "v", "P")
PROJECTOR_LINES = {"none": "-", "mlp": "--"}


def fig7_data(
    summary: pd.DataFrame, experiment: str, students: Sequence[str], objectives: Sequence[str]
) -> pd.DataFrame:
    """One row per student × objective arm of ``experiment`` that ran: the arm's λ (NaN
    when its name has none: ``cosine``, or the config's single λ) and projector, and mean,
    std (over seeds) and count of ER, cosine to the teacher and probe accuracy."""
    require(summary, ("experiment", "role", "student", "objective", *MEASURES), "run summary")
    rows = summary[(summary["experiment"] == experiment) & (summary["role"] == "student")]
    records = []
    for student in students:
        for objective in objectives:
            runs = rows[(rows["student"] == student) & (rows["objective"] == objective)]
            if runs.empty:
                continue
            arm = registry.parse_arm(objective)
            record: dict[str, object] = {
                "student": student,
                "model": student_label(student),
                "params": int(runs["params"].iloc[0]),
                "objective": objective,
                "label": OBJECTIVE_LABELS[objective],
                "infonce": registry.objective(arm.objective).infonce,
                "weight": math.nan if arm.weight is None else arm.weight,
                "projector": arm.projector,
            }
            for m in MEASURES:
                record[m], record[f"{m}_std"], record["n_seeds"] = seed_stats(runs, m)
            records.append(record)
    return pd.DataFrame.from_records(records)


def _panel(ax: Axes, data: pd.DataFrame, x: str, markers: dict[str, str]) -> None:
    """ER against ``x``: each student's arms of one projector setting joined in λ order
    (the trade-off curve), then every point with its seed error bars."""
    y = Y_AXIS[0]
    for (_, projector), grp in data[data["infonce"]].groupby(["student", "projector"]):
        curve = grp.sort_values("weight")
        ax.plot(curve[x], curve[y], color="0.6", lw=0.8, ls=PROJECTOR_LINES.get(projector, ":"))
    for r in data.itertuples():
        ax.errorbar(
            getattr(r, x),
            getattr(r, y),
            xerr=np.nan_to_num(getattr(r, f"{x}_std")),
            yerr=np.nan_to_num(getattr(r, f"{y}_std")),
            marker=markers[str(r.student)],
            color=OBJECTIVE_COLOURS.get(str(r.objective), "C0"),
            mec="black" if r.projector == "mlp" else "none",
            ms=6,
            lw=1,
            capsize=2,
        )
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=7)


def _legend(fig: Figure, data: pd.DataFrame, markers: dict[str, str]) -> None:
    """Colours = arms (λ in order, the head outlined in black), markers = students."""
    arms = data.drop_duplicates("objective")
    arms = arms.assign(head=arms["projector"] != "none", order=arms["weight"].fillna(-1))
    arms = arms.sort_values(["infonce", "head", "order"])  # cosine, then λ, then λ with head
    handles = [
        Line2D([], [], ls="", marker="o", ms=6, label=str(r.label),
               color=OBJECTIVE_COLOURS.get(str(r.objective), "C0"),
               mec="black" if r.projector == "mlp" else "none")
        for r in arms.itertuples()
    ]  # fmt: skip
    handles += [
        Line2D([], [], ls="", marker=m, color="0.3", label=student_label(s))
        for s, m in markers.items()
    ]
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.04),
        ncol=4,
        fontsize=6,
        frameon=False,
    )  # fmt: skip  (above the provenance footer)


def fig7(
    data: pd.DataFrame,
    *,
    experiment: str | None = None,
    teacher: str | None = None,
    title: str | None = None,
    provenance: Provenance | None = None,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
) -> Figure:
    """Figure 7 from :func:`fig7_data` (or its CSV): ER against cosine to the teacher
    (left) and against probe accuracy (right); up and to the right is expansion that costs
    nothing. Grey lines join one student's λ arms (solid: InfoNCE on the embedding, dashed:
    on the projector head)."""
    require(data, ("student", "objective", "infonce", "projector", *MEASURES), "fig7 data")
    default = "What InfoNCE's expansion costs: rank vs fidelity and accuracy, per λ"
    fig, ax0 = new_figure(title or default, provenance, subtitle(experiment, teacher))
    ax0.remove()
    axes = [fig.add_axes((0.09 + i * 0.46, 0.28, 0.4, 0.49)) for i in range(2)]
    students = list(dict.fromkeys(data["student"]))
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(students)}
    data = data.assign(infonce=data["infonce"].astype(bool))
    for ax, (x, label) in zip(axes, X_AXES, strict=True):
        _panel(ax, data, x, markers)
        ax.set_xlabel(label, fontsize=8)
    axes[0].set_ylabel(Y_AXIS[1], fontsize=8)
    _legend(fig, data, markers)
    save(fig, png, pdf)
    return fig
