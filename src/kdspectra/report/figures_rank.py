"""Figure 2: effective rank per student, cosine vs cosine + InfoNCE, as grouped bars.

Each objective is drawn twice: the paper's raw ER (solid bars) and the ER of L2-normalised
rows (hatched, lighter bars), so a radial (norm) collapse is told from a real one; each
student's rank ceiling is a black tick over its group (or a number with an arrow when it
lies far above the bars), and the teacher's raw ER a dashed line. Shared conventions are in
:mod:`kdspectra.report.figures_style`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kdspectra.io import PathLike
from kdspectra.report.figures_style import (
    ER_VARIANTS,
    OBJECTIVE_COLOURS,
    OBJECTIVE_LABELS,
    model_label,
    new_figure,
    require,
    save,
    split_roles,
    subtitle,
)
from kdspectra.report.provenance import Provenance


def _bar_series(students: pd.DataFrame) -> list[tuple[str, str]]:
    """(objective, ER column) pairs to draw, objective-major; L2 only when the CSV has it."""
    objectives = list(dict.fromkeys(students["objective"]))
    cols = [c for c in ER_VARIANTS if c in students.columns]
    return [(obj, col) for obj in objectives for col in cols]


def _bars(ax: Axes, students: pd.DataFrame) -> list[tuple[str, int]]:
    """One bar per objective × ER variant within each student group; error bars = std
    over seeds."""
    models = list(dict.fromkeys(zip(students["model"], students["params"], strict=True)))
    series = _bar_series(students)
    width = 0.8 / len(series)
    for j, (obj, col) in enumerate(series):
        sub = students[students["objective"] == obj].set_index(["model", "params"]).reindex(models)
        err = sub.get(f"{col}_std")
        err = None if err is None or err.isna().all() else err.fillna(0.0).to_numpy()
        pos = np.arange(len(models)) + (j - (len(series) - 1) / 2) * width
        l2 = col == "effective_rank_l2"
        bars = ax.bar(
            pos,
            sub[col].to_numpy(),
            width,
            yerr=err,
            capsize=3,
            label=f"{OBJECTIVE_LABELS.get(obj, obj)}, ER ({ER_VARIANTS[col]})",
            color=OBJECTIVE_COLOURS.get(obj, f"C{j}"),
            alpha=0.55 if l2 else 1.0,
            hatch="//" if l2 else None,
            edgecolor="0.2" if l2 else None,
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=2)
    return models


def _ceilings(ax: Axes, students: pd.DataFrame, models: list[tuple[str, int]]) -> None:
    """Mark each student's rank ceiling: a black tick over its group, or, when it lies far
    above the bars, an arrow at the top of the axes with the number (a ceiling of 320
    drawn to scale would flatten ERs of 5 into the axis)."""
    if "rank_ceiling" not in students.columns:
        return
    ceil = students.groupby(["model", "params"], sort=False)["rank_ceiling"].max()
    top = ax.get_ylim()[1]
    for i, key in enumerate(models):
        c = float(ceil.get(key, np.nan))
        if np.isnan(c):
            continue
        label = "rank ceiling" if i == 0 else None
        if c <= top:
            ax.hlines(c, i - 0.45, i + 0.45, colors="black", lw=2, label=label)
        else:
            ax.annotate(
                f"ceiling {c:.0f} ↑",
                (i, top),
                xytext=(0, -10),
                textcoords="offset points",
                ha="center",
                fontsize=7,
            )


def fig2(
    data: pd.DataFrame,
    *,
    title: str | None = None,
    experiment: str | None = None,
    teacher: str | None = None,
    provenance: Provenance | None = None,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
) -> Figure:
    """Figure 2: grouped bars per student, cosine vs cosine + InfoNCE, raw ER (solid) and
    L2-row ER (hatched), ±1 std over seeds, and each student's rank ceiling.

    ``data`` is :func:`kdspectra.report.tables.fig2_data` (or its CSV); its teacher row, if any,
    is drawn as a dashed reference line (raw ER). ``experiment``/``teacher`` go into the
    subtitle. The y-axis is scaled to the bars; ceilings above it are written as numbers.
    """
    require(data, ("model", "params", "objective", "effective_rank"), "fig2 data")
    default = "Effective rank per student: cosine vs cosine + InfoNCE distillation"
    fig, ax = new_figure(title or default, provenance, subtitle(experiment, teacher))
    students, ref = split_roles(data)
    models = _bars(ax, students)
    for _, row in ref.iterrows():
        er = float(row["effective_rank"])
        ax.axhline(er, color="black", ls="--", lw=1, label=f"{row['model']}, raw ({er:.1f})")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
    _ceilings(ax, students, models)
    ax.set_xticks(np.arange(len(models)), [model_label(m, p) for m, p in models])
    ax.set_xlabel("student (parameters)")
    ax.set_ylabel("entropy effective rank (dimensions)")
    ax.grid(True, axis="y", alpha=0.3)
    # outside the axes: bars fill the plot, a legend inside would hide some of them
    ax.set_position((0.1, 0.17, 0.62, 0.65))
    ax.legend(
        fontsize=7,
        title="objective, ER variant",
        title_fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    save(fig, png, pdf)
    return fig
