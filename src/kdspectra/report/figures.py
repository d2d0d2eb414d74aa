"""Figures 1–3 of the paper, readable in print and stamped with their provenance.

Figures are built with matplotlib's object-oriented API on the Agg canvas (``Figure``,
never ``pyplot``), so rendering needs no display, keeps no global state between rules
and cannot leak figures in long-running processes. Every figure has a title, axis labels
with units, a legend, the random-init notice in red when the teachers were not
pretrained, and the provenance footer in small grey text; it is saved as PNG (≥ 150 dpi)
and PDF through :func:`kdspectra.io.save_figure` (atomic).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdspectra import registry
from kdspectra.errors import ArtifactError
from kdspectra.io import PathLike, save_figure
from kdspectra.metrics.spectrum import effective_rank_from_singular_values
from kdspectra.report.provenance import Provenance
from kdspectra.report.render import human_params, objective_label, student_label, teacher_label

DPI = 200
# Normalised singular values below this are numerical zeros (float32 embeddings carry ~7
# significant digits; centred N×D data with N ≤ D has an exact zero), not geometry.
SPECTRUM_FLOOR = 1e-6
# Labels and colours of the registered objectives (one colour per objective in every figure).
OBJECTIVE_LABELS = {o: registry.objective(o).label for o in registry.objective_names()}
OBJECTIVE_COLOURS = {o: registry.objective(o).colour for o in registry.objective_names()}

Spectrum = np.ndarray | Sequence[np.ndarray]


def read_spectrum(path: PathLike) -> np.ndarray:
    """Singular values from a spectrum Parquet file (columns ``index, singular_value``)."""
    p = Path(path)
    try:
        frame = pd.read_parquet(p)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{p}: not a readable spectrum Parquet file: {exc}") from exc
    if not {"index", "singular_value"} <= set(frame.columns):
        raise ArtifactError(f"{p}: expected columns index, singular_value; found {list(frame)}")
    return frame.sort_values("index")["singular_value"].to_numpy(dtype=np.float64)


def _new_figure(
    title: str, provenance: Provenance | None, subtitle: str | None = None
) -> tuple[Figure, Axes]:
    """Figure with a bold title, a subtitle (what was run), the red random-init notice
    (if any) stacked above the axes, and the provenance footer in small grey text."""
    fig = Figure(figsize=(7.0, 4.8))
    FigureCanvasAgg(fig)  # headless Agg canvas: no display, no pyplot global state
    ax = fig.add_axes((0.11, 0.17, 0.86, 0.65))
    stamp(fig, title, provenance, subtitle)
    return fig, ax


def stamp(
    fig: Figure,
    title: str,
    provenance: Provenance | None,
    subtitle: str | None = None,
    *,
    width: int = 72,
    line: float = 0.045,
    footer_y: float = 0.01,
) -> None:
    """Write every figure's header and footer: the bold title (wrapped at ``width``
    characters, ``line`` of the figure's height per line), the subtitle, the red
    random-init notice (if any) and the provenance footer, so that no figure of the
    project can leave one out."""
    y = 0.975
    title = textwrap.fill(title, width=width)
    fig.text(0.5, y, title, ha="center", va="top", fontsize=11, fontweight="bold")
    y -= line * (title.count("\n") + 1)
    if subtitle:
        fig.text(0.5, y, subtitle, ha="center", va="top", fontsize=8.5, color="0.2")
        y -= 0.04
    if provenance is not None and provenance.notice():
        fig.text(0.5, y, provenance.notice(), ha="center", va="top", fontsize=8, color="red")
    if provenance is not None:
        fig.text(
            0.01, footer_y, provenance.footer(), ha="left", va="bottom", fontsize=5.5, color="0.4"
        )


def save(fig: Figure, png: PathLike | None = None, pdf: PathLike | None = None) -> None:
    """Write the figure as PNG (at :data:`DPI`) and/or PDF, atomically."""
    for path in (png, pdf):
        if path is not None:
            save_figure(fig, path, dpi=DPI)


def _normalised(spectra: Spectrum) -> np.ndarray:
    """Seeds × K matrix of σ_i/σ_1, truncated to the shortest spectrum."""
    runs = [spectra] if isinstance(spectra, np.ndarray) and spectra.ndim == 1 else list(spectra)
    runs = [np.asarray(r, dtype=np.float64).ravel() for r in runs]
    if not runs or any(r.size == 0 or not np.isfinite(r).all() or r.max() <= 0 for r in runs):
        raise ArtifactError("each spectrum needs finite values and one positive singular value")
    k = min(len(r) for r in runs)
    return np.stack([np.sort(r)[::-1][:k] / np.max(r) for r in runs])


def _mean_er(spectra: Spectrum) -> float:
    runs = [spectra] if isinstance(spectra, np.ndarray) and spectra.ndim == 1 else spectra
    return float(np.mean([effective_rank_from_singular_values(r) for r in runs]))


def fig1(
    spectra: Mapping[str, Spectrum],
    *,
    title: str = "Singular value spectrum: teacher vs cosine vs InfoNCE student",
    subtitle: str | None = None,
    provenance: Provenance | None = None,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
    max_index: int | None = None,
) -> Figure:
    """Figure 1: σ_i/σ_1 on a log axis vs index, one line per label (teacher first).

    Values are singular values of centred test embeddings; a list of arrays for one label
    (several seeds) is drawn as the mean line with a ±1 std band. The legend shows each
    curve's entropy effective rank. Values below :data:`SPECTRUM_FLOOR` are not drawn.
    """
    if not spectra:
        raise ArtifactError("fig1: no spectra to plot")
    fig, ax = _new_figure(title, provenance, subtitle)
    colours = ["black", *[f"C{i}" for i in range(10)]]
    for i, (label, spec) in enumerate(spectra.items()):
        norm = _normalised(spec)
        mean, std = norm.mean(axis=0), norm.std(axis=0)
        keep = mean > SPECTRUM_FLOOR
        if max_index is not None:
            keep[max_index:] = False
        idx = np.arange(1, len(mean) + 1)[keep]
        colour = colours[i % len(colours)]
        seeds = f"; mean of {len(norm)} seeds, band ±1 std" if len(norm) > 1 else ""
        lab = f"{label} (ER {_mean_er(spec):.1f}{seeds})"
        ax.plot(idx, mean[keep], color=colour, lw=1.6, label=lab)
        if len(norm) > 1:
            lo = np.clip(mean - std, SPECTRUM_FLOOR, None)[keep]
            ax.fill_between(idx, lo, (mean + std)[keep], color=colour, alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("singular value index i (sorted, descending)")
    ax.set_ylabel(r"normalised singular value $\sigma_i/\sigma_1$ (log scale)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, title="model (entropy effective rank)", title_fontsize=7)
    save(fig, png, pdf)
    return fig


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing or frame.empty:
        raise ArtifactError(f"{what}: needs a non-empty table with columns {list(columns)}")


def _model_label(model: str, params: float) -> str:
    return f"{model}\n({human_params(params)})"


def _subtitle(experiment: str | None, teacher: str | None) -> str | None:
    parts = [
        f"experiment {experiment}" if experiment else "",
        f"teacher {teacher}" if teacher else "",
    ]
    return " · ".join(p for p in parts if p) or None


def _split_roles(data: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(student rows, teacher reference rows); tables without ``role`` are all students."""
    if "role" not in data.columns:
        return data, data.iloc[0:0]
    return data[data["role"] != "teacher"], data[data["role"] == "teacher"]


# Figure 2 draws each objective twice: the paper's raw ER (solid) and the ER of
# L2-normalised rows (hatched), so a radial (norm) collapse is told from a real one.
ER_VARIANTS = {"effective_rank": "raw", "effective_rank_l2": "L2 rows"}


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
    _require(data, ("model", "params", "objective", "effective_rank"), "fig2 data")
    default = "Effective rank per student: cosine vs cosine + InfoNCE distillation"
    fig, ax = _new_figure(title or default, provenance, _subtitle(experiment, teacher))
    students, ref = _split_roles(data)
    models = _bars(ax, students)
    for _, row in ref.iterrows():
        er = float(row["effective_rank"])
        ax.axhline(er, color="black", ls="--", lw=1, label=f"{row['model']}, raw ({er:.1f})")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
    _ceilings(ax, students, models)
    ax.set_xticks(np.arange(len(models)), [_model_label(m, p) for m, p in models])
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
    curve, if any, is dashed black. ``chance`` (a fraction, e.g. 1/100) adds a dotted line.
    """
    _require(data, ("model", "params", "sigma", "accuracy"), "fig3 data")
    default = "Noise robustness: linear-probe accuracy vs Gaussian pixel noise"
    fig, ax = _new_figure(title or default, provenance, _subtitle(experiment, teacher))
    students, ref = _split_roles(data)
    markers = "osD^v<>"
    for i, ((model, params), grp) in enumerate(students.groupby(["model", "params"], sort=False)):
        style = {"color": f"C{i}", "marker": markers[i % len(markers)]}
        _curve(ax, grp, _model_label(model, params).replace("\n", " "), style)
    for (model, params), grp in ref.groupby(["model", "params"], sort=False):
        style = {"color": "black", "marker": "x", "ls": "--"}
        _curve(ax, grp, _model_label(model, params).replace("\n", " "), style)
    if chance is not None:
        ax.axhline(100 * chance, color="0.5", ls=":", lw=1, label=f"chance ({100 * chance:.1f}%)")
    ax.set_xlabel(r"Gaussian noise $\sigma$ (on pixels scaled to [0, 1])")
    ax.set_ylabel("linear-probe test accuracy (%)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="model (parameters)", title_fontsize=7)
    save(fig, png, pdf)
    return fig


def fig1_from_files(
    spectra: Sequence[PathLike],
    *,
    student: str,
    seeds: Sequence[int],
    teacher: str | None = None,
    experiment: str | None = None,
    provenance: Provenance | None = None,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
) -> Figure:
    """Figure 1 from spectrum Parquet files in the workflow's order.

    ``spectra`` = [teacher, ``student``/cosine/seed k for k in seeds, ``student``/
    cosine_infonce/seed k for k in seeds]; seeds of one objective become one band.
    """
    n = len(seeds)
    if len(spectra) != 1 + 2 * n:
        raise ArtifactError(
            f"fig1: expected 1 teacher + 2 × {n} student spectra, got {len(spectra)} files"
        )
    runs = [read_spectrum(p) for p in spectra]
    name = student_label(student)
    tlabel = f"Teacher-{teacher_label(teacher)}" if teacher else "Teacher"
    curves = {
        tlabel: runs[0],
        f"{name}, {objective_label('cosine')}": runs[1 : 1 + n],
        f"{name}, {objective_label('cosine_infonce')}": runs[1 + n :],
    }
    subtitle = _subtitle(experiment, teacher)
    return fig1(curves, subtitle=subtitle, provenance=provenance, png=png, pdf=pdf)


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
    _require(data, need, "fig4 data")
    default = "Effective rank during training (tracked train subset)"
    fig, ax0 = _new_figure(title or default, provenance, _subtitle(experiment, teacher))
    students, ref = _split_roles(data)
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
        ax.set_title(_model_label(name, params).replace("\n", " "), fontsize=8)
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


FIGURES = ("fig1_spectrum", "fig2_effective_rank", "fig3_noise_robustness", "fig4_dynamics")


def build(
    figure: str,
    inputs: Mapping[str, object],
    provenance: Provenance | None = None,
    *,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
    **options: object,
) -> Figure:
    """Render one of :data:`FIGURES` from the workflow's inputs and options.

    ``fig1_spectrum``: ``inputs["spectra"]`` (see :func:`fig1_from_files`), options
    ``student``, ``seeds``, ``teacher``, ``experiment``. ``fig2_effective_rank`` /
    ``fig3_noise_robustness`` / ``fig4_dynamics``: ``inputs["table"]`` = the fig2/fig3/fig4
    CSV, options ``experiment``, ``teacher``.
    """
    if figure == "fig1_spectrum":
        paths = inputs["spectra"]
        return fig1_from_files(list(paths), provenance=provenance, png=png, pdf=pdf, **options)  # type: ignore[arg-type]
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; expected one of {FIGURES}")
    data = pd.read_csv(inputs["table"])  # type: ignore[arg-type]
    draw = {"fig2_effective_rank": fig2, "fig4_dynamics": fig4}.get(figure, fig3)
    return draw(data, provenance=provenance, png=png, pdf=pdf, **options)  # type: ignore[arg-type]
