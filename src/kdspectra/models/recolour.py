"""Re-coloured teachers: the same information under a different geometry.

The mirror experiments ask whether a distilled student's spectrum follows its teacher's
when *only* the teacher's geometry changes (not its pretraining, architecture or data).
A re-colouring is an invertible affine map fitted on a teacher's train embeddings T:

    T' = (T − μ) M + c · rms · u,    M = V_r diag(√(λ'_i / λ_i)) V_rᵀ + (I − V_r V_rᵀ)

with μ the train mean, (V, λ) the eigenpairs of the centred train covariance (from the
SVD of T − μ, so λ_i = σ_i² / N), r the numerical rank (:func:`numerical_rank`),
λ'_i ∝ i^(−α) for i ≤ r scaled to the same total variance (:func:`target_spectrum`),
rms = √(Σλ) the centred RMS row norm, u a fixed unit vector drawn from ``seed`` and c the
cone offset in units of rms.

Choices, and why:

* **Beyond the rank the map is the identity**, not zero: M is then full rank, so the map
  is invertible on all of R^D (a test row with a component the train rows lack keeps
  it, unchanged) and a least-squares fit recovers T from T' exactly.
* **The numerical rank** counts σ_i > :data:`RANK_RTOL` · σ_1. Embeddings are stored in
  float32 (~7 digits); a direction below that is rounding noise, and rescaling it to a
  share of the variance would turn noise into signal.
* **α = 0** makes the train rows isotropic within the rank (ER = r), large α
  anisotropic (ER → 1); **c = 0** keeps them centred, large c puts them in a narrow cone
  (the centred effective rank does not see c, the L2-row one and the cosines do). The
  target ER is exact on the train rows; test rows, mapped by the same M, land near it.
* **One map per teacher and cell**, fitted on train only and applied alike to every
  array of that teacher (train, test, the noisy test copies, cached views), so the
  student's targets and the measured teacher are one geometry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kdspectra.errors import ArtifactError
from kdspectra.metrics.spectrum import as_float64_matrix, effective_rank_from_singular_values

__all__ = [
    "RANK_RTOL",
    "Recolouring",
    "fit_recolouring",
    "numerical_rank",
    "offset_direction",
    "target_spectrum",
]

RANK_RTOL = 1e-5  # singular values below this fraction of the largest: float32 noise


def numerical_rank(singular_values: np.ndarray, rtol: float = RANK_RTOL) -> int:
    """How many of the descending ``singular_values`` exceed ``rtol`` × the largest."""
    s = np.asarray(singular_values, dtype=np.float64)
    if s.size == 0 or s[0] <= 0:
        return 0
    return int(np.count_nonzero(s > rtol * s[0]))


def target_spectrum(eigenvalues: np.ndarray, alpha: float) -> np.ndarray:
    """λ'_i ∝ i^(−α) over the given (numerical-rank) eigenvalues, with the same sum."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    shape = np.arange(1, lam.size + 1, dtype=np.float64) ** (-float(alpha))
    return shape * (lam.sum() / shape.sum())


def offset_direction(dim: int, seed: int) -> np.ndarray:
    """The cone's fixed unit vector u: a standard normal draw from ``seed``, normalised
    (a direction with no preferred axis, the same for every cell of one seed)."""
    g = np.random.default_rng(seed).standard_normal(dim)
    return g / np.linalg.norm(g)


@dataclass(frozen=True)
class Recolouring:
    """A fitted re-colouring: ``apply`` maps rows (any leading shape, last axis D)."""

    alpha: float
    cone: float
    seed: int
    mean: np.ndarray  # μ, (D,)
    matrix: np.ndarray  # M, (D, D), symmetric and full rank
    offset: np.ndarray  # c · rms · u, (D,)
    rank: int
    rms: float
    target_er: float

    def apply(self, x: Any) -> np.ndarray:
        """(x − μ) M + c · rms · u in float64, over the last axis of ``x``."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.shape[-1] != self.mean.size:
            raise ArtifactError(
                f"re-colouring fitted on {self.mean.size}-d rows, given rows of width "
                f"{arr.shape[-1]}"
            )
        return (arr - self.mean) @ self.matrix + self.offset

    def record(self) -> dict[str, Any]:
        """The map's parameters as JSON values (recolour.json beside the embeddings)."""
        return {
            "alpha": self.alpha,
            "cone": self.cone,
            "seed": self.seed,
            "rank": self.rank,
            "rank_rtol": RANK_RTOL,
            "dim": int(self.mean.size),
            "rms": self.rms,
            "target_er": self.target_er,
        }


def fit_recolouring(train: Any, *, alpha: float, cone: float, seed: int = 0) -> Recolouring:
    """Fit the map of the module docstring on a teacher's train embeddings (N × D)."""
    x = as_float64_matrix(train)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    rank = numerical_rank(s)
    if rank == 0:
        raise ArtifactError("re-colouring: the train embeddings have no centred variance")
    lam = s[:rank] ** 2 / len(x)
    new = target_spectrum(lam, alpha)
    v = vt[:rank].T  # D × r
    scale = np.sqrt(new / lam)
    matrix = np.eye(x.shape[1]) + (v * (scale - 1.0)) @ v.T
    rms = float(np.sqrt(lam.sum()))
    return Recolouring(
        alpha=float(alpha),
        cone=float(cone),
        seed=int(seed),
        mean=mean,
        matrix=matrix,
        offset=float(cone) * rms * offset_direction(x.shape[1], seed),
        rank=rank,
        rms=rms,
        target_er=effective_rank_from_singular_values(np.sqrt(new)),
    )
