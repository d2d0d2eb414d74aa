"""Figure 3: linear-probe accuracy vs Gaussian pixel noise σ, one line per student, the
teacher dashed and the chance level dotted (an accuracy near it says nothing about
robustness). Shared conventions are in :mod:`kdspectra.report.figures_style`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kdspectra.io import PathLike
from kdspectra.report.figures_style import (
    model_label,
    new_figure,
    require,
    save,
    split_roles,
    subtitle,
)
from kdspectra.report.provenance import Provenance


def _curve(ax: Axes, grp: pd.DataFrame, label: str, style: dict[str, object]) -> None:
    """Accuracy (%) vs σ with a ±1 std band when several seeds were run."""
    grp = grp.sort_values("sigma")
    sig, acc = grp["sigma"].to_numpy(), 100 * grp["accuracy"].to_numpy()
    ax.plot(sig, acc, ms=4, lw=1.6, label=label, **style)
    std = grp["accuracy_std"].to_numpy(dtype=float) if "accuracy_std" in grp else None
    if std is not None and not np.isnan(std).all():
        band = 100 * np.nan_to_num(std)
        ax.fill_between(sig, acc - band, acc + band, color=style["color"], alpha=0.2, lw=0)


def fig3(
    data: pd.DataFrame,
    *,
    title: str | None = None,
    experiment: str | None = None,
    teacher: str | None = None,
    provenance: Provenance | None = None,
    chance: float | None = None,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
) -> Figure:
    """Figure 3: accuracy (%) vs noise σ, one line per student, ±1 std band over seeds.

    ``data`` is :func:`kdspectra.report.tables.fig3_data` (accuracy as a fraction); its teacher
    curve, if any, is dashed black. The dotted chance line is the data's ``chance`` column
    (the majority-class share of the test labels, the number the robustness claims use)
    when it has one, else ``chance`` (a fraction, 1 / classes).
    """
    require(data, ("model", "params", "sigma", "accuracy"), "fig3 data")
    default = "Noise robustness: linear-probe accuracy vs Gaussian pixel noise"
    fig, ax = new_figure(title or default, provenance, subtitle(experiment, teacher))
    students, ref = split_roles(data)
    markers = "osD^v<>"
    for i, ((model, params), grp) in enumerate(students.groupby(["model", "params"], sort=False)):
        style = {"color": f"C{i}", "marker": markers[i % len(markers)]}
        _curve(ax, grp, model_label(model, params).replace("\n", " "), style)
    for (model, params), grp in ref.groupby(["model", "params"], sort=False):
        style = {"color": "black", "marker": "x", "ls": "--"}
        _curve(ax, grp, model_label(model, params).replace("\n", " "), style)
    chance, how = _chance(data, chance)
    if chance is not None:
        ax.axhline(
            100 * chance, color="0.4", ls=":", lw=1.2, gid="chance",
            label=f"chance ({100 * chance:.1f} %, {how})",
        )  # fmt: skip
    ax.set_xlabel(r"Gaussian noise $\sigma$ (on pixels scaled to [0, 1])")
    ax.set_ylabel("linear-probe test accuracy (%)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="model (parameters)", title_fontsize=7)
    save(fig, png, pdf)
    return fig


def _chance(data: pd.DataFrame, fallback: float | None) -> tuple[float | None, str]:
    """The chance level to draw and how it was defined: the data's majority-class share
    when present (it is what the claims test against), else ``fallback`` (1 / classes)."""
    if "chance" in data.columns and data["chance"].notna().any():
        return float(data["chance"].dropna().iloc[0]), "majority class"
    return fallback, "1 / classes"
