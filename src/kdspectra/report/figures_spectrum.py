"""Figure 1: the singular value spectra of the teacher and of one student, cosine vs
cosine + InfoNCE, as the paper draws them (σ_i/σ_1, log y) but on a log index axis.

A linear index axis runs to the teacher's rank (hundreds), squeezing a student whose rank
ceiling is 20 into the left few percent; on a log axis every decade of indices gets the
same width, so where each curve bends and where it stops (its rank ceiling, marked) can be
seen. Shared conventions (stamp, variants) are in :mod:`kdspectra.report.figures_style`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kdspectra.errors import ArtifactError
from kdspectra.io import PathLike
from kdspectra.metrics.spectrum import effective_rank_from_singular_values
from kdspectra.report.figures_style import new_figure, save, subtitle
from kdspectra.report.provenance import Provenance
from kdspectra.report.render import objective_label, student_label, teacher_label

# Normalised singular values below this are numerical zeros (float32 embeddings carry ~7
# significant digits; centred N×D data with N ≤ D has an exact zero), not geometry.
SPECTRUM_FLOOR = 1e-6
CEILING_STYLE = {"ls": ":", "lw": 1.2, "alpha": 0.9}

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


def read_ceiling(path: PathLike) -> float:
    """The ``rank_ceiling`` the spectrum stage wrote beside a spectrum (``<model>.json``,
    same job as the Parquet file), NaN when that file or key is absent."""
    stats = Path(path).with_suffix(".json")
    try:
        value = json.loads(stats.read_text()).get("rank_ceiling")
    except (OSError, ValueError, AttributeError):
        return float("nan")
    return float(value) if isinstance(value, int | float) else float("nan")


def _runs(spectra: Spectrum) -> list[np.ndarray]:
    runs = [spectra] if isinstance(spectra, np.ndarray) and spectra.ndim == 1 else list(spectra)
    return [np.asarray(r, dtype=np.float64).ravel() for r in runs]


def _normalised(spectra: Spectrum) -> np.ndarray:
    """Seeds × K matrix of σ_i/σ_1, truncated to the shortest spectrum."""
    runs = _runs(spectra)
    if not runs or any(r.size == 0 or not np.isfinite(r).all() or r.max() <= 0 for r in runs):
        raise ArtifactError("each spectrum needs finite values and one positive singular value")
    k = min(len(r) for r in runs)
    return np.stack([np.sort(r)[::-1][:k] / np.max(r) for r in runs])


def _mean_er(spectra: Spectrum) -> float:
    return float(np.mean([effective_rank_from_singular_values(r) for r in _runs(spectra)]))


def numerical_rank(spectra: Spectrum) -> int:
    """The largest count of σ_i/σ_1 above :data:`SPECTRUM_FLOOR` over the seeds: where the
    curve stops, the rank ceiling when the stage's JSON is not at hand."""
    return int(max(np.sum(np.sort(r)[::-1] / r.max() > SPECTRUM_FLOOR) for r in _runs(spectra)))


def fig1(
    spectra: Mapping[str, Spectrum],
    *,
    title: str = "Singular value spectrum: teacher vs cosine vs InfoNCE student",
    subtitle: str | None = None,
    provenance: Provenance | None = None,
    png: PathLike | None = None,
    pdf: PathLike | None = None,
    max_index: int | None = None,
    ceilings: Mapping[str, float] | None = None,
) -> Figure:
    """Figure 1: σ_i/σ_1 vs index i, both axes log, one line per label (teacher first).

    Values are singular values of centred test embeddings; a list of arrays for one label
    (several seeds) is drawn as the mean line with a ±1 std band. The legend shows each
    curve's entropy effective rank and rank ceiling, drawn as a dotted vertical line in the
    curve's colour (``ceilings`` by label; by default where the curve stops,
    :func:`numerical_rank`). Values below :data:`SPECTRUM_FLOOR` are not drawn.
    """
    if not spectra:
        raise ArtifactError("fig1: no spectra to plot")
    fig, ax = new_figure(title, provenance, subtitle)
    colours = ["black", *[f"C{i}" for i in range(10)]]
    for i, (label, spec) in enumerate(spectra.items()):
        norm = _normalised(spec)
        mean, std = norm.mean(axis=0), norm.std(axis=0)
        keep = mean > SPECTRUM_FLOOR
        if max_index is not None:
            keep[max_index:] = False
        idx = np.arange(1, len(mean) + 1)[keep]
        colour = colours[i % len(colours)]
        ceiling = (ceilings or {}).get(label, np.nan)
        ceiling = float(numerical_rank(spec) if np.isnan(ceiling) else ceiling)
        seeds = f"; mean of {len(norm)} seeds, band ±1 std" if len(norm) > 1 else ""
        lab = f"{label} (ER {_mean_er(spec):.1f}, ceiling {ceiling:.0f}{seeds})"
        ax.plot(idx, mean[keep], color=colour, lw=1.6, label=lab)
        ax.axvline(ceiling, color=colour, gid=f"ceiling:{label}", **CEILING_STYLE)
        if len(norm) > 1:
            lo = np.clip(mean - std, SPECTRUM_FLOOR, None)[keep]
            ax.fill_between(idx, lo, (mean + std)[keep], color=colour, alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("singular value index i (sorted, descending; log scale)")
    ax.set_ylabel(r"normalised singular value $\sigma_i/\sigma_1$ (log scale)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, title="model (entropy ER, rank ceiling: dotted)", title_fontsize=7,
              loc="best", framealpha=0.85)  # fmt: skip
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
    cosine_infonce/seed k for k in seeds]; seeds of one objective become one band. Each
    model's rank ceiling is read from the stage's JSON beside its first file.
    """
    n = len(seeds)
    if len(spectra) != 1 + 2 * n:
        raise ArtifactError(
            f"fig1: expected 1 teacher + 2 × {n} student spectra, got {len(spectra)} files"
        )
    runs = [read_spectrum(p) for p in spectra]
    name = student_label(student)
    tlabel = f"Teacher-{teacher_label(teacher)}" if teacher else "Teacher"
    labels = [tlabel, *(f"{name}, {objective_label(o)}" for o in ("cosine", "cosine_infonce"))]
    curves = dict(zip(labels, (runs[0], runs[1 : 1 + n], runs[1 + n :]), strict=True))
    first = (spectra[0], spectra[1], spectra[1 + n])
    ceilings = {lab: read_ceiling(p) for lab, p in zip(labels, first, strict=True)}
    return fig1(
        curves,
        subtitle=subtitle(experiment, teacher),
        provenance=provenance,
        png=png,
        pdf=pdf,
        ceilings=ceilings,
    )
