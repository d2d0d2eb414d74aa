"""Geometry metrics: properties every definition must satisfy, and independent formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdspectra.errors import ArtifactError
from kdspectra.metrics import geometry as g
from kdspectra.metrics.spectrum import effective_rank


def gaussian(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def orthogonal(d: int, seed: int = 1) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def anisotropic(n: int = 400, d: int = 24, seed: int = 0) -> np.ndarray:
    """Gaussian data with decaying column scales: every rank measure sits strictly inside."""
    return gaussian(n, d, seed) * np.linspace(3.0, 0.1, d)


def with_eigenvalues(lam: np.ndarray, n: int = 1000, seed: int = 0) -> np.ndarray:
    """A centred N×D matrix whose centred eigenvalues (σ²) are exactly ``lam``."""
    a = gaussian(n, len(lam), seed)
    a -= a.mean(axis=0)
    u, _ = np.linalg.qr(a)
    return u @ np.diag(np.sqrt(lam)) @ orthogonal(len(lam), seed + 1).T


SPECTRAL = ("effective_rank", "rankme", "participation_ratio", "stable_rank")


def spectral(x: np.ndarray) -> dict[str, float]:
    return {name: getattr(g, name)(x) for name in SPECTRAL}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rank_measures_are_ordered(seed: int) -> None:
    x = anisotropic(seed=seed)
    sr, pr, er = g.stable_rank(x), g.participation_ratio(x), g.effective_rank(x)
    assert 1.0 <= sr <= pr <= er <= np.linalg.matrix_rank(x - x.mean(0))
    assert sr < er  # strictly inside on an anisotropic spectrum, so the test can fail


def test_rotation_and_scale_invariance() -> None:
    x = anisotropic()
    y = 7.5 * x @ orthogonal(x.shape[1])
    for name, value in spectral(x).items():
        assert getattr(g, name)(y) == pytest.approx(value, rel=1e-9), name
    assert g.alpha_req(y, 2, 20) == pytest.approx(g.alpha_req(x, 2, 20), rel=1e-9)
    assert g.uniformity(y) == pytest.approx(g.uniformity(x), abs=1e-10)


def test_isotropic_gaussian_is_close_to_full_dimension() -> None:
    x = gaussian(20_000, 16)
    assert g.effective_rank(x) == pytest.approx(16, rel=0.01)
    assert g.participation_ratio(x) == pytest.approx(16, rel=0.03)
    assert g.stable_rank(x) > 0.8 * 16


def test_rank_k_data_stays_below_k() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 4)) @ rng.standard_normal((4, 32))  # rank 4 in 32 dims
    for name in ("effective_rank", "participation_ratio", "stable_rank"):
        assert getattr(g, name)(x) <= 4 + 1e-6, name
    assert g.effective_rank(x) > 2  # ... but not trivially small


def test_offset_changes_rankme_but_not_centred_measures() -> None:
    x = anisotropic()
    shifted = x + 50.0  # the whole cloud moves away from the origin
    for name in ("effective_rank", "participation_ratio", "stable_rank"):
        assert getattr(g, name)(shifted) == pytest.approx(getattr(g, name)(x), rel=1e-9)
    assert g.rankme(shifted) < 0.5 * g.rankme(x)  # one huge uncentred direction dominates


def test_rankme_against_its_formula_on_a_diagonal_matrix() -> None:
    s = np.array([4.0, 2.0, 1.0, 1.0, 0.0])
    x = np.zeros((6, 5))
    x[np.arange(5), np.arange(5)] = s  # uncentred singular values are exactly s
    p = s / s.sum() + 1e-7
    assert g.rankme(x) == pytest.approx(math.exp(-sum(pi * math.log(pi) for pi in p)), rel=1e-12)


def test_stable_rank_and_participation_ratio_by_hand() -> None:
    lam = np.array([4.0, 2.0, 1.0, 1.0])
    x = with_eigenvalues(lam, n=50)
    assert g.stable_rank(x) == pytest.approx(8 / 4, rel=1e-9)
    assert g.participation_ratio(x) == pytest.approx(64 / 22, rel=1e-9)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_alpha_req_recovers_a_power_law(alpha: float) -> None:
    lam = np.arange(1, 151, dtype=np.float64) ** -alpha
    fit = g.alpha_req_fit(np.sqrt(lam))  # from singular values
    assert fit.alpha == pytest.approx(alpha, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.points == 90  # i = 10 … 99
    x = with_eigenvalues(lam, n=400)
    assert g.alpha_req(x) == pytest.approx(alpha, rel=1e-6)
    assert g.alpha_req_r2(x) == pytest.approx(1.0, abs=1e-6)


def test_alpha_req_respects_bounds_and_rank() -> None:
    i = np.arange(1, 31, dtype=np.float64)
    head_tail = np.where(i <= 20, i**-3.0, 20.0**-3 * (i / 20) ** -1.0)  # α 3, then α 1
    lam = np.concatenate([head_tail, np.zeros(30)])  # rank 30 in 60 dims
    s = np.sqrt(lam)
    assert g.alpha_req_fit(s, 1, 20).alpha == pytest.approx(3.0, rel=1e-9)
    tail = g.alpha_req_fit(s, 21, 100)  # zeros beyond rank 30 are not fitted
    assert tail.points == 10 and tail.alpha == pytest.approx(1.0, rel=1e-9)
    noisy = g.alpha_req_fit(np.sqrt(np.arange(1, 61) ** -1.0 + np.linspace(0, 0.05, 60)))
    assert noisy.r2 < 1.0  # R² says when the power law is a poor description


@pytest.mark.parametrize(("width", "points"), [(20, 11), (12, 3)])
def test_alpha_req_window_stops_at_the_rank_ceiling(width: int, points: int) -> None:
    """A float32 student of width w in 64 dims: the default [10, 100) is clipped at rank w
    and says so; 3 points left is no exponent (NaN with the reason)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((360, width)) * np.arange(1, width + 1) ** -0.5
    x = (z @ rng.standard_normal((width, 64))).astype(np.float32)
    fit = g.alpha_req_fit(np.linalg.svd(x - x.mean(0), compute_uv=False))
    assert fit.points == points and fit.window == (10, width + 1)
    assert f"clipped to [10, {width + 1}) at rank {width}" in fit.reason
    assert math.isnan(fit.alpha) == (points < g.ALPHA_MIN_POINTS)
    assert ("fewer than 5" in fit.reason) == (points < g.ALPHA_MIN_POINTS)


def test_alpha_req_is_nan_with_fewer_than_two_points() -> None:
    fit = g.alpha_req_fit(np.array([3.0, 2.0, 1.0]))  # D = 3 < fit_lo = 10
    assert math.isnan(fit.alpha) and math.isnan(fit.r2) and fit.points == 0
    assert g.alpha_req_fit(np.ones(10)).points == 1  # only i = 10 is in range
    with pytest.raises(ValueError, match="fit_lo"):
        g.alpha_req_fit(np.ones(5), 10, 10)


def naive_uniformity(x: np.ndarray) -> float:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    d2 = ((u[:, None, :] - u[None, :, :]) ** 2).sum(-1)
    i, j = np.triu_indices(len(u), k=1)
    return float(np.log(np.mean(np.exp(-2.0 * d2[i, j]))))


def test_uniformity_identical_spread_and_clustered() -> None:
    assert g.uniformity(np.tile([[1.0, 2.0, 3.0]], (20, 1))) == pytest.approx(0.0, abs=1e-12)
    spread = gaussian(300, 16)
    clustered = np.ones((300, 16)) + 0.1 * gaussian(300, 16, seed=1)
    assert g.uniformity(spread) < g.uniformity(clustered) < 0
    assert g.uniformity(spread) > -4.0  # the bound for points on a sphere


def test_uniformity_blocked_equals_exact_and_naive() -> None:
    x = gaussian(157, 6, seed=2)
    naive = naive_uniformity(x)
    assert g.uniformity(x) == pytest.approx(naive, rel=1e-12)
    assert g.uniformity(x, block_rows=7) == pytest.approx(naive, rel=1e-12)
    assert g.uniformity(x, block_rows=1) == pytest.approx(naive, rel=1e-12)


def test_uniformity_subsamples_beyond_max_rows_with_a_seed() -> None:
    x = gaussian(400, 8, seed=3)
    a = g.uniformity(x, max_rows=100, seed=0)
    assert a == g.uniformity(x, max_rows=100, seed=0)
    assert a != g.uniformity(x, max_rows=100, seed=1)
    assert a == pytest.approx(g.uniformity(x), abs=0.05)  # an estimate of the same value
    assert g.uniformity_subsample_size(400, 100) == 100
    assert g.uniformity_subsample_size(100, 100) is None


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA the textbook way: HSIC of N×N Gram matrices with the centring matrix H."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)))


def test_linear_cka_invariances_and_independent_formula() -> None:
    x = anisotropic(n=200, d=10)
    assert g.linear_cka(x, 3.0 * x @ orthogonal(10) + 5.0) == pytest.approx(1.0, rel=1e-12)
    y = x[:, :6] @ gaussian(6, 4, seed=5) + gaussian(200, 4, seed=6)  # other width, related
    assert g.linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-10)
    assert 0.05 < g.linear_cka(x, y) < 0.99
    noise = gaussian(5000, 8, seed=7)
    assert g.linear_cka(gaussian(5000, 8), noise) < 0.02


def test_cos_to_teacher_and_the_pipeline_definition_agree() -> None:
    a = gaussian(50, 5)
    assert g.cos_to_teacher(a, 3 * a) == pytest.approx(1.0)
    assert g.cos_to_teacher(a, -a) == pytest.approx(-1.0)
    b = gaussian(50, 5, seed=4)
    pairs = zip(a, b, strict=True)
    manual = np.mean([ai @ bi / np.linalg.norm(ai) / np.linalg.norm(bi) for ai, bi in pairs])
    assert g.cos_to_teacher(a, b) == pytest.approx(manual, rel=1e-12)
    with pytest.raises(ArtifactError, match="same number of rows"):
        g.cos_to_teacher(a, b[:-1])
    with pytest.raises(ArtifactError, match="equal shapes"):
        g.cos_to_teacher(a, b[:, :-1])


def test_per_class_effective_rank_ignores_singletons() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 8)) * np.array([1, 1, 0, 0, 0, 0, 0, 0])  # 2-d class
    b = rng.standard_normal((40, 8))  # 8-d class
    single = rng.standard_normal((1, 8)) * 100
    x = np.vstack([a, b, single])
    labels = np.array(["a"] * 40 + ["b"] * 40 + ["lonely"])
    expected = (effective_rank(a) + effective_rank(b)) / 2
    assert g.per_class_effective_rank(x, labels) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ArtifactError, match="no class"):
        g.per_class_effective_rank(x[:3], np.array([0, 1, 2]))
    with pytest.raises(ArtifactError, match="81 labels"):
        g.per_class_effective_rank(x, labels[:-1])
    collapsed = np.vstack([a, np.ones((3, 8))])
    with pytest.raises(ArtifactError, match=r"class 7.*no variance"):
        g.per_class_effective_rank(collapsed, np.array([0] * 40 + [7] * 3))


def test_geometry_metrics_matches_the_single_functions() -> None:
    x = anisotropic(n=300, d=120)
    ref = x @ gaussian(120, 120, seed=9)
    labels = np.arange(300) % 3
    out = g.geometry_metrics(x, labels, ref, alpha_fit=(5, 50))
    assert out["effective_rank"] == g.effective_rank(x)
    assert out["effective_rank_l2"] == g.effective_rank_l2(x)
    assert out["rankme"] == pytest.approx(g.rankme(x), rel=1e-12)
    assert out["participation_ratio"] == pytest.approx(g.participation_ratio(x), rel=1e-12)
    assert out["stable_rank"] == pytest.approx(g.stable_rank(x), rel=1e-12)
    assert out["alpha_req"] == pytest.approx(g.alpha_req(x, 5, 50), rel=1e-12)
    assert out["alpha_req_r2"] == pytest.approx(g.alpha_req_r2(x, 5, 50), rel=1e-12)
    assert out["alpha_req_points"] == 45
    assert out["uniformity"] == pytest.approx(g.uniformity(x), rel=1e-12)
    assert out["uniformity_subsample"] is None
    assert out["per_class_effective_rank"] == pytest.approx(
        g.per_class_effective_rank(x, labels), rel=1e-12
    )
    assert out["linear_cka"] == pytest.approx(g.linear_cka(x, ref), rel=1e-12)
    assert out["cos_to_reference"] == pytest.approx(g.cos_to_teacher(x, ref), rel=1e-12)
    bare = g.geometry_metrics(x)
    assert "linear_cka" not in bare and "per_class_effective_rank" not in bare
    assert all(isinstance(v, float | int) or v is None for v in out.values())


def test_geometry_metrics_reports_its_subsample() -> None:
    x = gaussian(10_001, 3)
    assert g.geometry_metrics(x)["uniformity_subsample"] == g.UNIFORMITY_EXACT_MAX


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.ones(5), "2-D"),
        (np.ones((1, 4)), "at least 2 rows"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.full((10, 3), 2.0), "no variance"),
    ],
)
def test_bad_input_gives_the_spectrum_messages(bad: np.ndarray, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        g.geometry_metrics(bad)


def test_zero_rows_are_refused_where_direction_matters() -> None:
    x = gaussian(10, 3)
    x[2] = 0
    with pytest.raises(ArtifactError, match="zero norm"):
        g.uniformity(x)
