"""Figures 1–4 of the paper (Figure 4: beyond it), one module each, built by name.

:func:`build` renders one of :data:`FIGURES` from the workflow's inputs and options:
Figure 1 (:mod:`kdspectra.report.figures_spectrum`), Figure 2
(:mod:`kdspectra.report.figures_rank`), Figure 3 (:mod:`kdspectra.report.figures_noise`),
Figure 4 (:mod:`kdspectra.report.figures_dynamics`). What they share (the canvas, the
stamp, the screen PNG and the print PDF) is :mod:`kdspectra.report.figures_style`; the
names other modules use are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from matplotlib.figure import Figure

from kdspectra.io import PathLike
from kdspectra.report.figures_dynamics import fig4
from kdspectra.report.figures_noise import fig3
from kdspectra.report.figures_rank import fig2
from kdspectra.report.figures_spectrum import fig1, fig1_from_files, read_spectrum
from kdspectra.report.figures_style import DPI, OBJECTIVE_LABELS, save, stamp
from kdspectra.report.provenance import Provenance

__all__ = [
    "DPI",
    "FIGURES",
    "OBJECTIVE_LABELS",
    "build",
    "fig1",
    "fig1_from_files",
    "fig2",
    "fig3",
    "fig4",
    "read_spectrum",
    "save",
    "stamp",
]

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
