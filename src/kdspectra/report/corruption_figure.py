"""Figure 5: accuracy under common corruptions, beside the paper's Gaussian-noise curve.

One panel per corruption family (noise, blur, weather, digital): linear-probe accuracy vs
severity, one line per student and objective (mean over seeds and over the family's
corruptions that were run), the teacher dashed black. A fifth panel puts the paper's
corruption on one σ axis: our noise-stage curve (the σ grid of ``evaluation.noise_sigmas``)
and CIFAR-C's ``gaussian_noise`` at its σ(severity) = 0.04…0.10, the bridge between the
paper's claim and the benchmark. Same conventions as
:mod:`kdspectra.report.figures_style` (Agg canvas, title, random-init notice in red,
provenance footer, screen PNG and print PDF written atomically).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdspectra.data.corruptions import FAMILIES, SEVERITY_SIGMA
from kdspectra.errors import ArtifactError
from kdspectra.io import PathLike
from kdspectra.report.figures_style import OBJECTIVE_LABELS, save, stamp
from kdspectra.report.provenance import Provenance
from kdspectra.report.render import student_label, teacher_label

LINESTYLES = ("-", "--", ":", "-.")


def _models(data: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(role, student, objective) in a stable order: students first, teacher last."""
    keys = data[["role", "student", "objective"]].drop_duplicates()
    keys = keys.sort_values(["role", "objective", "student"], key=lambda c: c.map(str))
    students = [tuple(k) for k in keys.itertuples(index=False) if k[0] == "student"]
    return students + [tuple(k) for k in keys.itertuples(index=False) if k[0] == "teacher"]


def _style(model: tuple[str, str, str], students: list[str], objectives: list[str]) -> dict:
    role, student, objective = model
    if role == "teacher":
        return {"color": "black", "ls": "--", "marker": "x"}
    return {
        "color": f"C{students.index(student)}",
        "ls": LINESTYLES[objectives.index(objective) % len(LINESTYLES)],
        "marker": "o",
    }


def _label(model: tuple[str, str, str], teacher: str | None) -> str:
    role, student, objective = model
    if role == "teacher":
        return f"teacher ({teacher_label(teacher)})" if teacher else "teacher"
    return f"{student_label(student)}, {OBJECTIVE_LABELS.get(objective, objective)}"


def _select(frame: pd.DataFrame, model: tuple[str, str, str]) -> pd.DataFrame:
    role, student, objective = model
    return frame[
        (frame["role"] == role) & (frame["student"] == student) & (frame["objective"] == objective)
    ]


def _family_panel(ax: Axes, data: pd.DataFrame, family: str, styles: dict) -> None:
    names = [n for n in FAMILIES[family] if n in set(data["corruption"])]
    for model, style in styles.items():
        rows = _select(data, model)
        rows = rows[rows["corruption"].isin(names)]
        curve = rows.groupby("severity")["accuracy"].mean()
        if len(curve):
            ax.plot(curve.index, 100 * curve.to_numpy(), lw=1.4, ms=3.5, **style)
    shown = ", ".join(n.replace("_", " ") for n in names) or "none run"
    ax.set_title(f"{family}\n({textwrap.fill(shown, 48)})", fontsize=7.5)
    ax.set_xlabel("severity", fontsize=8)
    ax.set_xticks([1, 2, 3, 4, 5])


def _noise_panel(ax: Axes, data: pd.DataFrame, noise: pd.DataFrame, styles: dict) -> None:
    """The paper's noise curve (σ grid) and CIFAR-C gaussian_noise at σ(severity), one axis."""
    gauss = data[data["corruption"] == "gaussian_noise"]
    for model, style in styles.items():
        curve = _select(noise, model).groupby("sigma")["accuracy"].mean()
        if len(curve):
            ax.plot(curve.index, 100 * curve.to_numpy(), lw=1.4, ms=3.5, alpha=0.6, **style)
        points = _select(gauss, model).groupby("severity")["accuracy"].mean()
        if len(points):
            sigma = [SEVERITY_SIGMA[int(s) - 1] for s in points.index]
            ax.scatter(
                sigma, 100 * points.to_numpy(), s=22, color=style["color"], marker="*", zorder=3
            )
    ax.set_title(
        "paper's Gaussian noise: σ grid (lines)\nvs CIFAR-C gaussian_noise (★)", fontsize=7.5
    )
    ax.set_xlabel(r"$\sigma$ (pixels in [0, 1])", fontsize=8)


def fig5(
    corruptions: pd.DataFrame,
    noise: pd.DataFrame,
    provenance: Provenance | None = None,
    *,
    experiment: str,
    teacher: str | None = None,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
) -> Figure:
    """Figure 5 of ``experiment`` from the run's ``corruptions.parquet`` and
    ``noise.parquet`` (see the module docstring)."""
    data = corruptions[corruptions["experiment"] == experiment]
    if data.empty:
        raise ArtifactError(f"corruptions.parquet: no rows of experiment {experiment!r}")
    noise = noise[noise["experiment"] == experiment]
    models = _models(data)
    students = sorted({m[1] for m in models if m[0] == "student"})
    objectives = sorted({m[2] for m in models if m[0] == "student"})
    styles = {m: _style(m, students, objectives) for m in models}
    fig = Figure(figsize=(11.0, 7.0))
    FigureCanvasAgg(fig)
    subtitle = f"experiment {experiment}" + (
        f", teacher {teacher_label(teacher)}" if teacher else ""
    )
    stamp(
        fig,
        "Common corruptions: linear-probe accuracy vs severity, per family",
        provenance,
        subtitle,
        width=90,
        line=0.045,
        footer_y=0.005,
    )
    axes = fig.subplots(
        2,
        3,
        gridspec_kw={
            "left": 0.06,
            "right": 0.98,
            "top": 0.78,
            "bottom": 0.1,
            "hspace": 0.55,
            "wspace": 0.25,
        },
    )
    flat = list(np.ravel(axes))
    for ax, family in zip(flat[:4], FAMILIES, strict=False):
        _family_panel(ax, data, family, styles)
    _noise_panel(flat[4], data, noise, styles)
    for ax in flat[:5]:
        ax.set_ylabel("probe accuracy (%)", fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
    legend = flat[5]
    legend.axis("off")
    handles = [
        legend.plot([], [], lw=1.4, label=_label(m, teacher), **s)[0] for m, s in styles.items()
    ]
    legend.legend(
        handles=handles,
        loc="center",
        fontsize=7.5,
        title="model (mean over seeds)",
        title_fontsize=7.5,
    )
    save(fig, png, pdf)
    return fig
