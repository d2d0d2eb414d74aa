"""Figure 6 (beyond the paper): the mirror. Student effective rank against teacher
effective rank across the cells of the anisotropy dial (:mod:`kdspectra.dials`).

Each cell's teacher is the same teacher re-coloured (:mod:`kdspectra.models.recolour`):
same information, another spectrum decay α and cone offset c. If cosine distillation
mirrors the teacher's geometry, its students lie on a line of slope near 1 through the
cells (the identity line is drawn); a student whose ER ignores the teacher's lies flat.
InfoNCE's points show whether its expansion holds at every cell. Left panel raw ER (the
paper's), right panel ER of L2-normalised rows (which the cone offset moves). Shared
conventions are in :mod:`kdspectra.report.figures_style`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kdspectra.dials import Cell
from kdspectra.io import PathLike
from kdspectra.report.figures_style import (
    ER_VARIANTS,
    OBJECTIVE_COLOURS,
    OBJECTIVE_LABELS,
    new_figure,
    require,
    save,
)
from kdspectra.report.provenance import Provenance
from kdspectra.report.render import student_label

__all__ = ["FIG6_COLUMNS", "fig6", "fig6_data"]

FIG6_COLUMNS = (
    "dial", "experiment", "alpha", "cone", "student", "objective", "n_seeds",
    "teacher_effective_rank", "teacher_effective_rank_l2",
    "effective_rank", "effective_rank_std", "effective_rank_l2", "effective_rank_l2_std",
)  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P")


def _cell_rows(summary: pd.DataFrame, cell: Cell) -> list[dict[str, object]]:
    rows = summary[summary["experiment"] == cell.experiment]
    teacher = rows[rows["role"] == "teacher"]
    base = {
        "dial": cell.dial, "experiment": cell.experiment, "alpha": cell.alpha,
        "cone": cell.cone,
        **{f"teacher_{c}": float(teacher[c].mean()) if len(teacher) else np.nan
           for c in ER_VARIANTS},
    }  # fmt: skip
    out = []
    students = rows[rows["role"] == "student"]
    for (student, objective), grp in students.groupby(["student", "objective"], sort=False):
        record = base | {"student": student, "objective": objective, "n_seeds": len(grp)}
        for c in ER_VARIANTS:
            record[c] = float(grp[c].mean())
            record[f"{c}_std"] = float(grp[c].std(ddof=1)) if len(grp) > 1 else np.nan
        out.append(record)
    return out


def fig6_data(summary: pd.DataFrame, cells: Sequence[Cell]) -> pd.DataFrame:
    """One row per cell × student × objective: the teacher's and the student's raw and
    L2-row ER (mean and sample std over seeds), with the cell's dial, α and c."""
    rows = [r for cell in cells for r in _cell_rows(summary, cell)]
    return pd.DataFrame.from_records(rows, columns=list(FIG6_COLUMNS))


def _panel(ax: Axes, data: pd.DataFrame, col: str) -> None:
    """Student ER (±1 std over seeds) against teacher ER: one colour per objective, one
    marker per cone offset (and per dial and student when there are several), a thin line
    through each cone's cells in α order; the identity line."""
    groups = list(dict.fromkeys(zip(data["dial"], data["student"], strict=True)))
    cones = sorted(dict.fromkeys(data["cone"].astype(float)))
    keys = ["objective", "dial", "student", "cone"]
    for (obj, dial, student, cone), grp in data.groupby(keys, sort=False):
        grp = grp.sort_values("alpha")
        index = groups.index((dial, student)) * len(cones) + cones.index(float(cone))
        who = f", {student_label(str(student))} ({dial})" if len(groups) > 1 else ""
        ax.errorbar(
            grp[f"teacher_{col}"], grp[col], yerr=grp[f"{col}_std"].fillna(0.0),
            color=OBJECTIVE_COLOURS.get(str(obj), "C0"), marker=MARKERS[index % len(MARKERS)],
            ms=5, lw=0.8, capsize=3,
            label=f"{OBJECTIVE_LABELS.get(str(obj), obj)}, c={float(cone):g}{who}",
        )  # fmt: skip
    _cell_labels(ax, data, col)
    right = _top(data[f"teacher_{col}"])
    top = _top(data[col] + data[f"{col}_std"].fillna(0.0))
    # The identity line, clipped to the students' range: a student far below its
    # teacher keeps its slope visible instead of being pressed onto the x axis.
    ax.plot([0, right], [0, right], color="0.3", ls=":", lw=1, label="identity (mirror)")
    ax.set_xlim(0, right)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"teacher ER ({ER_VARIANTS[col]})", fontsize=8)
    ax.set_ylabel(f"student ER ({ER_VARIANTS[col]})", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=7)


def _top(values: pd.Series) -> float:
    """An axis limit 8 % above the largest finite value (1 when there is none)."""
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.max()) * 1.08 if finite.size and finite.max() > 0 else 1.0


def _cell_labels(ax: Axes, data: pd.DataFrame, col: str) -> None:
    """The cells' (α, c) under their teacher ER on the x axis, one label per position
    (the raw ER does not see c, so a column of cells shares one)."""
    cells = data.drop_duplicates("experiment")
    position = cells[f"teacher_{col}"].round(1)
    for x, grp in cells.groupby(position, sort=True):
        text = "; ".join(f"α{a:g} c{c:g}" for a, c in zip(grp["alpha"], grp["cone"], strict=True))
        ax.annotate(
            text, (float(x), 0), xytext=(2, 3), textcoords="offset points", rotation=90,
            fontsize=5.5, color="0.35", ha="left", va="bottom",
        )  # fmt: skip


def fig6(
    data: pd.DataFrame,
    *,
    title: str | None = None,
    provenance: Provenance | None = None,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
) -> Figure:
    """Figure 6 from :func:`fig6_data` (or its CSV): raw ER and L2-row ER panels."""
    require(data, FIG6_COLUMNS, "fig6 data")
    default = "The mirror: student ER against teacher ER across re-coloured teachers"
    dials = ", ".join(dict.fromkeys(data["dial"].astype(str)))
    fig, first = new_figure(title or default, provenance, f"dial: {dials}")
    first.remove()
    fig.set_size_inches(10.0, 5.2)  # two panels side by side
    axes = [fig.add_axes((0.07 + i * 0.47, 0.17, 0.4, 0.6)) for i in range(len(ER_VARIANTS))]
    for ax, col in zip(axes, ER_VARIANTS, strict=True):
        _panel(ax, data, col)
    axes[0].legend(fontsize=6, loc="upper left", title="objective, cone offset", title_fontsize=6)
    save(fig, png, pdf)
    return fig
