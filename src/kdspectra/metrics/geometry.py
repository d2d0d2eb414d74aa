"""Every geometry metric of an embedding matrix, defined once (docs/design.md "Geometry metrics").

The paper reports one number, the entropy effective rank. Researchers who study
dimensional collapse compare several, each catching what the others miss, and libraries
disagree on their formulas (RankMe centred or not, σ confused with σ²). This module is the
one place the project defines them; the pipeline, the training tracker and the
``kdspectra geometry`` command all call it. Everything is float64.

With σ the singular values of the *column-centred* matrix and λ = σ² (descending):

- ``effective_rank``: exp(entropy of p = λ/Σλ) — the paper's Eq. 3
  (:mod:`kdspectra.metrics.spectrum`).
- ``effective_rank_l2``: the same after L2-normalising the rows (directions only).
- ``rankme``: σ of the *uncentred* matrix, p = σ/‖σ‖₁ + 1e-7, exp(−Σ p ln p) (Garrido 2023).
  Uncentred on purpose: that is the published definition, so an offset of the whole
  cloud changes RankMe but not the centred effective rank.
- ``participation_ratio`` = (Σλ)²/Σλ²; ``stable_rank`` = Σλ/λ₁. Both weight the top of the
  spectrum, so stable rank ≤ participation ratio ≤ effective rank ≤ rank.
- ``alpha_req`` / ``alpha_req_r2``: OLS of ln λ_i on ln i (1-based i) over
  i ∈ [fit_lo, fit_hi) ∩ [1, r], r = #{λ_i > λ₁·1e-9} (the rank ceiling in effect);
  α = −slope (Agrawal 2022), NaN with fewer than 5 points in the window.
- ``uniformity`` = ln mean_{i<j} exp(−2‖u_i − u_j‖²), u the L2-normalised rows (Wang &
  Isola 2020): exact up to :data:`UNIFORMITY_EXACT_MAX` rows, a seeded subsample beyond.
- ``linear_cka(X, Y)`` = ‖Ycᵀ Xc‖_F² / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F) (Kornblith 2019).
- ``per_class_effective_rank``: mean effective rank over classes with ≥ 2 rows.
- ``cos_to_teacher``: mean cosine of row-paired embeddings (student row i vs teacher row i).

:func:`geometry_metrics` computes all of them with one centred SVD shared by the
spectrum-based metrics. How each is labelled, rounded and explained lives in
:mod:`kdspectra.metrics.catalog`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from kdspectra.errors import ArtifactError
from kdspectra.metrics.spectrum import (
    as_float64_matrix,
    effective_rank,
    effective_rank_from_singular_values,
    effective_rank_l2,
    singular_values,
)

__all__ = [
    "ALPHA_FIT",
    "ALPHA_MIN_POINTS",
    "RANKME_EPS",
    "UNIFORMITY_EXACT_MAX",
    "PowerLawFit",
    "alpha_req",
    "alpha_req_fit",
    "alpha_req_r2",
    "cos_to_teacher",
    "effective_rank",
    "effective_rank_l2",
    "geometry_metrics",
    "linear_cka",
    "participation_ratio",
    "participation_ratio_from_singular_values",
    "per_class_effective_rank",
    "rankme",
    "rankme_from_singular_values",
    "stable_rank",
    "stable_rank_from_singular_values",
    "uniformity",
    "uniformity_subsample_size",
    "unit_scale",
]

ALPHA_FIT = (10, 100)  # default [fit_lo, fit_hi) of the α-ReQ fit, 1-based indices
RANKME_EPS = 1e-7  # Garrido et al.'s ε, added to every p before the entropy
UNIFORMITY_EXACT_MAX = 10_000  # beyond this many rows, uniformity uses a seeded subsample
# λ_i ≤ λ₁·1e-9 is not a point of the power law: past a model's rank ceiling, float32
# embeddings leave eigenvalues at ~1e-14..1e-10 of λ₁ (rounding), while a real power law
# over ≤ 1000 indices with α ≤ 3 stays above 1e-9. So r, the count above it, is the rank
# ceiling in effect, and the fit window is clipped there.
_ALPHA_RTOL = 1e-9
ALPHA_MIN_POINTS = 5  # fewer eigenvalues in the window: α is NaN, never a 2-3-point slope
_BLOCK_ELEMENTS = 1 << 22  # uniformity's Gram blocks hold ≤ 4M float64 (32 MB)
_COS_FLOOR = 1e-12  # a zero row has cosine 0 with anything (no division by zero)
# Each key geometry_metrics returns is an entry of kdspectra.metrics.catalog.METRICS: its
# label, decimals, help text and place in the reports (tests/test_catalog.py checks both).


# -- spectrum-based metrics -------------------------------------------------------------


def _eigenvalues(s: Any) -> np.ndarray:
    """λ = σ² as a float64 vector, refusing spectra that carry no variance."""
    sv = np.asarray(s, dtype=np.float64).ravel()
    if sv.size == 0 or not np.isfinite(sv).all() or (sv < 0).any():
        raise ArtifactError("singular values must be a non-empty, finite, non-negative vector")
    lam = np.sort(sv)[::-1] ** 2
    if lam[0] <= 0:
        raise ArtifactError("all singular values are zero: the embeddings have no variance")
    return lam


def participation_ratio_from_singular_values(s: Any) -> float:
    """(Σλ)²/Σλ² with λ = σ²: the number of dimensions if variance were spread evenly."""
    lam = _eigenvalues(s)
    return float(lam.sum() ** 2 / np.sum(lam**2))


def stable_rank_from_singular_values(s: Any) -> float:
    """Σλ/λ₁ with λ = σ²: total variance in units of the largest direction's."""
    lam = _eigenvalues(s)
    return float(lam.sum() / lam[0])


def participation_ratio(x: Any) -> float:
    """Participation ratio of the centred matrix ``x`` (N × D), float64."""
    return participation_ratio_from_singular_values(singular_values(x))


def stable_rank(x: Any) -> float:
    """Stable rank of the centred matrix ``x`` (N × D), float64."""
    return stable_rank_from_singular_values(singular_values(x))


def rankme_from_singular_values(s: Any) -> float:
    """RankMe from *uncentred* singular values: p = σ/‖σ‖₁ + ε, exp(−Σ p ln p).

    ε = :data:`RANKME_EPS` is part of the published definition (it keeps ln finite), so
    every σ, zeros included, contributes a little entropy.
    """
    sv = np.asarray(s, dtype=np.float64).ravel()
    if sv.size == 0 or not np.isfinite(sv).all() or (sv < 0).any():
        raise ArtifactError("singular values must be a non-empty, finite, non-negative vector")
    total = sv.sum()
    if total <= 0:
        raise ArtifactError("all singular values are zero: the embeddings are all zero")
    p = sv / total + RANKME_EPS
    return float(np.exp(-np.sum(p * np.log(p))))


def _uncentred_singular_values(arr: np.ndarray) -> np.ndarray:
    return np.linalg.svd(arr, compute_uv=False)


def rankme(x: Any) -> float:
    """RankMe (Garrido et al. 2023) of ``x`` (N × D): singular values *without* centring."""
    return rankme_from_singular_values(_uncentred_singular_values(as_float64_matrix(x)))


class PowerLawFit(NamedTuple):
    """The α-ReQ fit ln λ_i ≈ intercept − α ln i; NaNs (and the ``reason``) when fewer
    than :data:`ALPHA_MIN_POINTS` eigenvalues were in the window."""

    alpha: float
    r2: float
    points: int  # how many eigenvalues the fit used
    intercept: float
    window: tuple[int, int] = (0, 0)  # the 1-based [lo, hi) actually fitted, after clipping
    reason: str = ""  # why α is NaN, or how the window was clipped


def alpha_req_fit(s: Any, fit_lo: int = ALPHA_FIT[0], fit_hi: int = ALPHA_FIT[1]) -> PowerLawFit:
    """OLS of ln λ_i on ln i over i ∈ [fit_lo, fit_hi) ∩ [1, r] (1-based), λ = σ².

    r counts the λ_i > λ₁·:data:`_ALPHA_RTOL`: smaller ones lie past the model's rank
    ceiling (rounding noise of a rank-deficient matrix, whose logarithms would dominate
    the slope), so a window that passes the ceiling is clipped to it; ``window`` records
    the one fitted and ``reason`` the clipping. With fewer than :data:`ALPHA_MIN_POINTS`
    indices left (e.g. a student of width 12 under the default [10, 100)) a slope of 2-3
    points is no exponent: the fit returns NaN for α, R² and the intercept with the reason
    (``points`` says how many there were), rather than failing the whole report. A
    spectrum exactly flat over the range fits with α = 0 and R² = 1.
    """
    if not 1 <= fit_lo < fit_hi:
        raise ValueError(f"alpha fit range must satisfy 1 ≤ fit_lo < fit_hi, got {fit_lo, fit_hi}")
    lam = _eigenvalues(s)
    r = int(np.sum(lam > lam[0] * _ALPHA_RTOL))
    hi = min(fit_hi, r + 1)
    idx = np.arange(fit_lo, hi)  # 1-based indices
    window = (fit_lo, max(hi, fit_lo))
    clipped = f"window [{fit_lo}, {fit_hi}) clipped to [{fit_lo}, {hi}) at rank {r}"
    reason = clipped if hi < fit_hi else ""
    if idx.size < ALPHA_MIN_POINTS:
        nan = float("nan")
        why = f"{idx.size} eigenvalue(s) in the window, fewer than {ALPHA_MIN_POINTS}"
        why = f"{why}; {reason}" if reason else why
        return PowerLawFit(nan, nan, int(idx.size), nan, window, why)
    lx, ly = np.log(idx.astype(np.float64)), np.log(lam[idx - 1])
    dx, dy = lx - lx.mean(), ly - ly.mean()
    slope = float(np.sum(dx * dy) / np.sum(dx * dx))
    intercept = float(ly.mean() - slope * lx.mean())
    ss_tot = float(np.sum(dy * dy))
    ss_res = float(np.sum((dy - slope * dx) ** 2))
    r2 = 1.0 if ss_tot == 0 else 1.0 - ss_res / ss_tot
    return PowerLawFit(-slope, r2, int(idx.size), intercept, window, reason)


def alpha_req(x: Any, fit_lo: int = ALPHA_FIT[0], fit_hi: int = ALPHA_FIT[1]) -> float:
    """α-ReQ decay exponent of the centred eigenvalues λ_i ∝ i^−α (see :func:`alpha_req_fit`)."""
    return alpha_req_fit(singular_values(x), fit_lo, fit_hi).alpha


def alpha_req_r2(x: Any, fit_lo: int = ALPHA_FIT[0], fit_hi: int = ALPHA_FIT[1]) -> float:
    """R² of the α-ReQ power-law fit: how well one exponent describes the spectrum."""
    return alpha_req_fit(singular_values(x), fit_lo, fit_hi).r2


# -- row-geometry metrics -----------------------------------------------------------------


def _unit_rows(arr: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(arr, axis=1)
    if (norms <= 0).any():
        raise ArtifactError(
            f"{int((norms <= 0).sum())} rows have zero norm: they have no direction, so "
            f"{what} is undefined"
        )
    return arr / norms[:, None]


def uniformity_subsample_size(n: int, max_rows: int = UNIFORMITY_EXACT_MAX) -> int | None:
    """Rows :func:`uniformity` will subsample to for ``n`` rows, or None when it is exact."""
    return int(max_rows) if n > max_rows else None


def uniformity(
    x: Any,
    *,
    max_rows: int = UNIFORMITY_EXACT_MAX,
    seed: int = 0,
    block_rows: int | None = None,
) -> float:
    """ln mean_{i<j} exp(−2‖u_i − u_j‖²) over the L2-normalised rows u (Wang & Isola 2020).

    0 for identical directions, down to about −4 for directions spread over a sphere.
    Exact for N ≤ ``max_rows``; beyond, a uniform subsample of ``max_rows`` rows drawn
    with ``seed`` (all N² pairs would cost hours at N = 50k) — :func:`geometry_metrics`
    reports the subsample size. Pairs are summed in row blocks of ``block_rows`` (default:
    ≤ 4M Gram entries at a time), so memory stays bounded whatever N is.
    """
    u = _unit_rows(as_float64_matrix(x), "uniformity")
    if len(u) > max_rows:
        rng = np.random.default_rng(seed)
        u = u[np.sort(rng.choice(len(u), size=max_rows, replace=False))]
    n = len(u)
    block = block_rows or max(1, _BLOCK_ELEMENTS // n)
    total = 0.0
    for start in range(0, n - 1, block):
        stop = min(start + block, n)
        kernel = _gaussian_kernel(u[start:stop], u[start:])  # rows start..stop, cols start..n
        square = kernel[:, : stop - start]  # pairs inside the block: keep j > i only
        total += float(np.triu(square, k=1).sum() + kernel[:, stop - start :].sum())
    return float(np.log(total / (n * (n - 1) / 2)))


def _gaussian_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """exp(−2‖a_i − b_j‖²) for unit rows, via ‖a − b‖² = 2 − 2 a·b (clipped at 0)."""
    return np.exp(-2.0 * np.maximum(2.0 - 2.0 * (a @ b.T), 0.0))


def _paired(x: Any, y: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_float64_matrix(x), as_float64_matrix(y)
    if a.shape[0] != b.shape[0]:
        raise ArtifactError(
            f"{what} pairs rows: expected the same number of rows, found {a.shape[0]} and "
            f"{b.shape[0]}"
        )
    return a, b


def unit_scale(x: Any) -> np.ndarray:
    """``x`` (validated, float64) divided by the power of two nearest its largest |entry|.

    Every geometry metric is invariant to scaling the whole matrix, but σ² of entries
    near 1e±200 overflows to inf or underflows to 0 (the latter read as "no variance").
    Dividing by a power of two changes only exponents, so the mantissas, and every metric,
    are exactly those of the unscaled matrix.
    """
    arr = as_float64_matrix(x)
    peak = float(np.max(np.abs(arr)))
    if peak == 0.0:
        return arr
    return np.ldexp(arr, -int(np.frexp(peak)[1]))


def linear_cka(x: Any, y: Any) -> float:
    """Linear CKA of two row-paired matrices (N × D₁, N × D₂), in [0, 1] (Kornblith 2019).

    ⟨K, L⟩_F / (‖K‖_F ‖L‖_F) with K, L the Gram matrices of the centred rows, computed on
    whichever side is smaller: the N × N Grams (a 100,000-column reference would need a
    75 GiB D × D matrix) or the D₁ × D₂ cross-covariances (N = 50k rows would need an
    N × N one). Both give the same number: ‖BᵀA‖²_F = ⟨AAᵀ, BBᵀ⟩_F. Invariant to orthogonal
    maps and isotropic scaling of either side (each is rescaled first, :func:`unit_scale`,
    so extreme magnitudes do not overflow); the widths may differ.
    """
    a, b = _paired(x, y, "linear_cka")
    a, b = unit_scale(a), unit_scale(b)
    a = a - a.mean(axis=0, keepdims=True)
    b = b - b.mean(axis=0, keepdims=True)
    n, da, db = a.shape[0], a.shape[1], b.shape[1]
    if 2 * n * n < da * da + db * db + da * db:  # sample space: two N × N Grams
        k, gram = a @ a.T, b @ b.T
        num, den = float(np.sum(k * gram)), np.linalg.norm(k) * np.linalg.norm(gram)
    else:  # feature space: D₁ × D₁, D₂ × D₂ and D₂ × D₁
        num = float(np.linalg.norm(b.T @ a) ** 2)
        den = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    if den <= 0:
        raise ArtifactError("linear_cka: one matrix has no variance (all rows identical)")
    return num / float(den)


def cos_to_teacher(x: Any, teacher: Any) -> float:
    """Mean cosine similarity of row i of ``x`` with row i of ``teacher`` (same shape).

    THE definition of the distillation fit (the pipeline's ``cos_to_teacher``). A zero
    row has cosine 0 with anything (norms floored at 1e-12) instead of dividing by zero.
    Each matrix is rescaled first (:func:`unit_scale`; cosines do not change), so rows
    near 1e±200 neither overflow nor vanish. Widths must match: a reference of another
    width has no row-wise cosine (callers report it as not applicable).
    """
    a, b = _paired(x, teacher, "cos_to_teacher")
    a, b = unit_scale(a), unit_scale(b)
    if a.shape != b.shape:
        raise ArtifactError(f"cos_to_teacher: expected equal shapes, found {a.shape}, {b.shape}")
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, _COS_FLOOR)))


def _class_rows(labels: Any, n: int) -> list[np.ndarray]:
    """Row indices of every class holding at least 2 rows (label order)."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != n:
        raise ArtifactError(f"expected {n} labels (a 1-D vector, one per row), found {y.shape}")
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return [np.flatnonzero(inverse == c) for c in np.flatnonzero(counts >= 2)]


def per_class_effective_rank(x: Any, labels: Any) -> float:
    """Mean effective rank of each class's centred rows, over classes with ≥ 2 rows.

    Separates within-class collapse (small here) from between-class collapse (small
    global ER, normal here). Singleton classes have no spectrum and are skipped; a
    class whose rows are all identical is refused (ER undefined), naming the class.
    """
    arr = as_float64_matrix(x)
    groups = _class_rows(labels, len(arr))
    if not groups:
        raise ArtifactError("per_class_effective_rank: no class has at least 2 rows")
    y = np.asarray(labels)
    ers = []
    for rows in groups:
        try:
            ers.append(effective_rank(arr[rows]))
        except ArtifactError as exc:
            raise ArtifactError(f"class {y[rows[0]].item()!r}: {exc}") from exc
    return float(np.mean(ers))


# -- everything at once ---------------------------------------------------------------------


def geometry_metrics(
    x: Any,
    labels: Any = None,
    reference: Any = None,
    *,
    alpha_fit: tuple[int, int] = ALPHA_FIT,
    seed: int = 0,
    centred_sv: np.ndarray | None = None,
) -> dict[str, float | int | None]:
    """Every metric of ``x`` (N × D) as a flat dict, one centred SVD shared by all.

    ``centred_sv``: :func:`singular_values` of ``x``, when the caller already has them
    (the spectrum stage saves them), so the SVD is not taken twice.

    Keys: ``effective_rank``, ``effective_rank_l2``, ``rankme``, ``participation_ratio``,
    ``stable_rank``, ``alpha_req``, ``alpha_req_r2``, ``uniformity``; with ``labels``
    (N labels) also ``per_class_effective_rank``; with ``reference`` (a row-paired matrix,
    e.g. the teacher's embeddings of the same images) also ``linear_cka`` and
    ``cos_to_reference`` (= :func:`cos_to_teacher`; needs the same D). What the metrics
    had to choose is reported too: ``alpha_req_points`` (eigenvalues in the fit; α is
    NaN below 2) and ``uniformity_subsample`` (rows subsampled with ``seed``, or None
    when exact).
    """
    arr = as_float64_matrix(x)
    s = singular_values(arr) if centred_sv is None else np.asarray(centred_sv, np.float64)
    fit = alpha_req_fit(s, *alpha_fit)
    out: dict[str, float | int | None] = {
        "effective_rank": effective_rank_from_singular_values(s, "entropy"),
        "effective_rank_l2": effective_rank_l2(arr),
        "rankme": rankme_from_singular_values(_uncentred_singular_values(arr)),
        "participation_ratio": participation_ratio_from_singular_values(s),
        "stable_rank": stable_rank_from_singular_values(s),
        "alpha_req": fit.alpha,
        "alpha_req_r2": fit.r2,
        "alpha_req_points": fit.points,
        "uniformity": uniformity(arr, seed=seed),
        "uniformity_subsample": uniformity_subsample_size(len(arr)),
    }
    if labels is not None:
        out["per_class_effective_rank"] = per_class_effective_rank(arr, labels)
    if reference is not None:
        out["linear_cka"] = linear_cka(arr, reference)
        out["cos_to_reference"] = cos_to_teacher(arr, reference)
    return out
