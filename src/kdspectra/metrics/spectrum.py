"""Singular value spectra and effective rank of embedding matrices.

The paper's central quantity is the entropy effective rank of the *centred* embedding
matrix (its Eq. 3): subtract column means, take the singular values σ in float64,
p_i = σ_i² / Σσ², ER = exp(−Σ p_i ln p_i). Centring matters: without it the first
singular value mostly measures how far the embedding cloud sits from the origin, and
anisotropic teachers such as CLIP would look one-dimensional.

``variant="roy_vetterli"`` uses p_i = σ_i / Σσ (Roy & Vetterli 2007, as in RankMe). It is
*not* the paper's number; it is offered for readers comparing with RankMe-style results
and every output that shows it says which variant it is (see :data:`VARIANT_LABELS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kdspectra.errors import ArtifactError

VARIANTS = ("entropy", "roy_vetterli")

VARIANT_LABELS = {
    "entropy": "entropy effective rank (p ∝ σ², paper Eq. 3)",
    "roy_vetterli": "Roy–Vetterli effective rank (p ∝ σ, RankMe-style; not the paper's)",
}

# Centred data whose largest singular value is below this fraction of the raw data's scale
# is constant up to rounding: its "spectrum" is floating-point noise, not geometry.
_ZERO_VARIANCE_RTOL = 1e-12


def _as_float64_matrix(x: Any) -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor on any device, or nested lists) as float64.

    Torch is imported lazily through duck typing so that numpy-only callers (the CLI,
    the report rules) do not pay for importing it.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if hasattr(x, "is_complex") and x.is_complex():
            raise ArtifactError("embedding matrix is complex; expected real values")
        x = x.double().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"embedding matrix is not numeric: {exc}") from exc
    _check_matrix(arr)
    return arr


def as_float64_matrix(x: Any) -> np.ndarray:
    """``x`` as a validated float64 N×D matrix (2-D, ≥ 2 rows, finite, real).

    Public so that other metric modules (:mod:`kdspectra.metrics.geometry`) refuse bad input with
    exactly the messages the effective rank gives.
    """
    return _as_float64_matrix(x)


def _check_matrix(arr: np.ndarray) -> None:
    """Refuse inputs on which a spectrum is meaningless, with a message saying why."""
    if arr.ndim != 2:
        raise ArtifactError(f"expected a 2-D matrix (rows = samples), found shape {arr.shape}")
    n, d = arr.shape
    if n < 2:
        raise ArtifactError(f"need at least 2 rows to centre and take a spectrum, found {n}")
    if d < 1:
        raise ArtifactError("matrix has no columns")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ArtifactError(f"matrix holds {bad} NaN/inf values; effective rank is undefined")


def _spectrum(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Centred singular values (descending) and whether the data has zero variance."""
    centred = x - x.mean(axis=0, keepdims=True)
    s = np.linalg.svd(centred, compute_uv=False)
    scale = float(np.abs(x).max()) * np.sqrt(x.size)
    zero = s.size == 0 or float(s[0]) <= _ZERO_VARIANCE_RTOL * max(scale, 1e-300)
    if zero:  # rounding noise of a constant matrix: report the true spectrum, all zeros
        s = np.zeros_like(s)
    return s, zero  # LAPACK returns them in descending order


def singular_values(x: Any) -> np.ndarray:
    """Singular values of the column-centred matrix, float64, descending.

    Accepts numpy arrays and torch tensors (CPU or CUDA); returns numpy. Centred data of
    N rows has rank at most N − 1, so for N ≤ D the last value is (numerically) zero. Data
    with no variance (all rows equal up to rounding) gives exact zeros, so that
    :func:`effective_rank_from_singular_values` refuses it instead of ranking noise.
    """
    s, _ = _spectrum(_as_float64_matrix(x))
    return s


def effective_rank_from_singular_values(s: Any, variant: str = "entropy") -> float:
    """Effective rank from singular values already computed (e.g. a saved spectrum).

    ``entropy``: p ∝ σ² (the paper). ``roy_vetterli``: p ∝ σ. Zero entries contribute
    0·ln 0 = 0. Raises :class:`ArtifactError` when all values are zero (no variance).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown effective-rank variant {variant!r}; expected one of {VARIANTS}")
    sv = np.asarray(s, dtype=np.float64).ravel()
    if sv.size == 0 or not np.isfinite(sv).all() or (sv < 0).any():
        raise ArtifactError("singular values must be a non-empty, finite, non-negative vector")
    weights = sv**2 if variant == "entropy" else sv
    total = weights.sum()
    if total <= 0:
        raise ArtifactError("all singular values are zero: the embeddings have no variance")
    p = weights[weights > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


def effective_rank(x: Any, variant: str = "entropy") -> float:
    """Effective rank of the centred matrix ``x`` (N samples × D dims).

    Raises :class:`ArtifactError` (a ``ValueError``) on non-2-D input, fewer than two rows,
    NaN/inf, or data with no variance (every row identical — complete collapse), where
    the quantity is undefined rather than small.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown effective-rank variant {variant!r}; expected one of {VARIANTS}")
    s, zero = _spectrum(_as_float64_matrix(x))
    if zero:
        raise ArtifactError(
            "embeddings have no variance (all rows identical up to rounding): "
            "effective rank is undefined — did the model collapse to a constant?"
        )
    return effective_rank_from_singular_values(s, variant)


def _row_norms(x: np.ndarray) -> np.ndarray:
    return np.linalg.norm(x, axis=1)


def effective_rank_l2(x: Any, variant: str = "entropy") -> float:
    """Effective rank after L2-normalising every row, then centring (float64).

    Cosine and InfoNCE losses ignore row norms, so a spread of norms along the mean
    direction is invisible to training yet can dominate the raw centred spectrum and pass
    for collapse. This variant measures the directions alone; it is *not* the paper's
    number and is always shown beside :func:`effective_rank`, labelled. Rows of zero norm
    cannot be normalised and are refused.
    """
    arr = _as_float64_matrix(x)
    norms = _row_norms(arr)
    if (norms <= 0).any():
        raise ArtifactError(
            f"{int((norms <= 0).sum())} rows have zero norm: they have no direction to "
            "L2-normalise, so effective_rank_l2 is undefined"
        )
    return effective_rank(arr / norms[:, None], variant)


def norm_cv(x: Any) -> float:
    """Coefficient of variation (std / mean, ddof = 0) of the row norms, float64.

    Says how much of the raw spectrum a norm spread can explain: near 0, raw and L2
    effective rank agree; large, the raw number mostly measures norms.
    """
    norms = _row_norms(_as_float64_matrix(x))
    mean = float(norms.mean())
    if mean <= 0:
        raise ArtifactError("every row has zero norm: norm_cv is undefined")
    return float(norms.std() / mean)


def rank_ceiling(n: int, dim: int, feature_width: int | None = None) -> int:
    """The largest centred rank a model's N×D test embeddings can have.

    Centring N rows leaves rank ≤ N − 1; D columns cap it at D; a student whose output is
    a linear map of its last feature layer cannot exceed that layer's width. Teachers
    pass ``feature_width=None``.
    """
    caps = [int(n) - 1, int(dim)] + ([int(feature_width)] if feature_width is not None else [])
    if min(caps) < 1:
        raise ArtifactError(f"rank ceiling from n={n}, dim={dim}, width={feature_width} is < 1")
    return min(caps)
