"""Figure 4 (beyond the paper): effective rank vs epoch of the tracked train subset, one
panel per student. Shared conventions are in :mod:`kdspectra.report.figures_style`.
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
from kdspectra.report.render import teacher_label


def _dynamics_line(ax: Axes, grp: pd.DataFrame, col: str, style: dict[str, object]) -> None:
    """Mean ``col`` vs epoch with a ±1 std band when several seeds were run."""
    grp = grp.sort_values("epoch")
    x, y = grp["epoch"].to_numpy(dtype=float), grp[col].to_numpy(dtype=float)
    ax.plot(x, y, ms=3.5, lw=1.5, **style)
    std = grp[f"{col}_std"].to_numpy(dtype=float) if f"{col}_std" in grp else None
    if std is not None and not np.isnan(std).all():
        band = np.nan_to_num(std)
        ax.fill_between(x, y - band, y + band, color=style["color"], alpha=0.18, lw=0)


def _dynamics_style(objective: str, col: str) -> dict[str, object]:
    """Colour per objective; raw ER solid with circles, L2-row ER dashed with squares."""
    l2 = col == "effective_rank_l2"
    return {
        "color": OBJECTIVE_COLOURS.get(objective, "C0"),
        "ls": "--" if l2 else "-",
        "marker": "s" if l2 else "o",
        "label": f"{OBJECTIVE_LABELS.get(objective, objective)}, ER ({ER_VARIANTS[col]})",
    }


def fig4(
    data: pd.DataFrame,
    *,
    title: str | None = None,
    experiment: str | None = None,
    teacher: str | None = None,
    provenance: Provenance | None = None,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
) -> Figure:
    """Figure 4: effective rank vs epoch of the tracked train subset, one panel per
    student, one colour per objective; raw ER solid, L2-row ER dashed (when the CSV has
    it), ±1 std band over seeds, and the teacher's ER on the same rows as a black line.

    ``data`` is :func:`kdspectra.report.dynamics.fig4_data` (or its CSV). Shows *when* during
    training a student's rank falls or stops growing, which the final ER cannot.
    """
    need = ("student", "model", "params", "objective", "epoch", "effective_rank")
    require(data, need, "fig4 data")
    default = "Effective rank during training (tracked train subset)"
    fig, ax0 = new_figure(title or default, provenance, subtitle(experiment, teacher))
    students, ref = split_roles(data)
    models = list(dict.fromkeys(zip(students["student"], students["params"], strict=True)))
    ax0.remove()
    width = 0.84 / len(models)
    axes = [fig.add_axes((0.1 + i * width, 0.17, width - 0.02, 0.6)) for i in range(len(models))]
    tlabel = f"Teacher-{teacher_label(teacher)}" if teacher else "teacher"
    variants = [c for c in ER_VARIANTS if c in students.columns]
    for ax, (student, params) in zip(axes, models, strict=True):
        rows = students[students["student"] == student]
        for obj, grp in rows.groupby("objective", sort=False):
            for col in variants:
                _dynamics_line(ax, grp, col, _dynamics_style(str(obj), col))
        for _, t in ref.iterrows():
            for col in variants:
                if not np.isnan(float(t.get(col, np.nan))):
                    ls = ":" if col == "effective_rank_l2" else "-."
                    label = f"{tlabel}, ER ({ER_VARIANTS[col]})"
                    ax.axhline(float(t[col]), color="black", lw=1, ls=ls, label=label)
        name = str(rows["model"].iloc[0])
        ax.set_title(model_label(name, params).replace("\n", " "), fontsize=8)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("entropy effective rank (dimensions)")
    top = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(0, top)
    for ax in axes[1:]:  # one shared scale: its numbers once, left of the first panel
        ax.tick_params(labelleft=False)
    axes[-1].legend(fontsize=6, title="objective, ER variant", title_fontsize=6, loc="best")
    save(fig, png, pdf)
    return fig
