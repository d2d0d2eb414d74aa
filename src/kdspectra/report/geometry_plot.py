"""The spectrum plot of ``kdspectra geometry --plot``: σ_i/σ₁ log-log, ER and α-ReQ marked.

Log-log axes because α-ReQ is the slope of a power law: a straight stretch of the curve
is the range the exponent describes, and the dashed fit line shows how well it does.
Built on the headless Agg canvas (no pyplot state), saved atomically.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kdspectra.io import PathLike, save_figure
from kdspectra.metrics.geometry import ALPHA_FIT, alpha_req_fit
from kdspectra.metrics.spectrum import effective_rank_from_singular_values

DPI = 200
FLOOR = 1e-6  # normalised σ below this is rounding noise (float32 ≈ 7 digits)


def spectrum_figure(s: np.ndarray, *, title: str, alpha_fit: tuple[int, int] = ALPHA_FIT) -> Figure:
    """σ_i/σ₁ against i (both log) with the effective rank and the α-ReQ fit annotated.

    ``s`` are centred singular values, descending. The fit line is λ ∝ i^−α drawn as
    σ ∝ i^−α/2 over the indices the fit used; it is absent when α is undefined (NaN).
    """
    sv = np.asarray(s, dtype=np.float64)
    norm = sv / sv[0]
    idx = np.arange(1, len(sv) + 1)
    keep = norm > FLOOR
    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.loglog(idx[keep], norm[keep], color="black", lw=1.6, label="σ_i / σ_1 (centred)")
    er = effective_rank_from_singular_values(sv)
    ax.axvline(er, color="C0", ls=":", lw=1.2, label=f"effective rank = {er:.2f}")
    fit = alpha_req_fit(sv, *alpha_fit)
    if np.isfinite(fit.alpha):
        i = np.arange(alpha_fit[0], alpha_fit[0] + fit.points, dtype=np.float64)
        line = np.exp((fit.intercept - fit.alpha * np.log(i)) / 2) / sv[0]
        ax.loglog(i, line, color="C3", ls="--", lw=1.4,
                  label=f"α-ReQ = {fit.alpha:.3f} (R² = {fit.r2:.3f}, λ ∝ i^−α)")  # fmt: skip
    else:
        ax.plot([], [], " ", label=f"α-ReQ undefined ({fit.points} points in {alpha_fit})")
    ax.set_xlabel("singular value index i (descending, log scale)")
    ax.set_ylabel("normalised singular value σ_i / σ_1 (log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_spectrum_plot(
    s: np.ndarray, path: PathLike, *, title: str, alpha_fit: tuple[int, int] = ALPHA_FIT
) -> None:
    """Draw :func:`spectrum_figure` and write it atomically (format from the suffix)."""
    save_figure(spectrum_figure(s, title=title, alpha_fit=alpha_fit), path, dpi=DPI)
