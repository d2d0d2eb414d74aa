"""Effective rank against matrices whose answer is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kdspectra.errors import ArtifactError
from kdspectra.metrics.spectrum import (
    VARIANT_LABELS,
    VARIANTS,
    effective_rank,
    effective_rank_from_singular_values,
    effective_rank_l2,
    norm_cv,
    rank_ceiling,
    singular_values,
)


def centred_orthonormal(n: int, d: int, seed: int = 0) -> np.ndarray:
    """N×D matrix whose columns are orthonormal *and* have zero mean."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, d))
    a -= a.mean(axis=0)
    q, _ = np.linalg.qr(a)
    return q


def with_singular_values(s: np.ndarray, n: int = 200, seed: int = 0) -> np.ndarray:
    """A centred N×D matrix with exactly the singular values ``s``."""
    d = len(s)
    u = centred_orthonormal(n, d, seed)
    v, _ = np.linalg.qr(np.random.default_rng(seed + 1).standard_normal((d, d)))
    return u @ np.diag(s) @ v.T


def test_isotropic_exact_equals_dimension() -> None:
    x = centred_orthonormal(300, 24) * 5.0
    assert effective_rank(x) == pytest.approx(24.0, rel=1e-10)
    assert effective_rank(x, "roy_vetterli") == pytest.approx(24.0, rel=1e-10)


def test_isotropic_gaussian_close_to_dimension() -> None:
    x = np.random.default_rng(1).standard_normal((20_000, 16))
    er = effective_rank(x)
    assert 0.99 * 16 < er <= 16.0


def test_rank_one_and_rank_k() -> None:
    rng = np.random.default_rng(2)
    rank1 = np.outer(rng.standard_normal(500), rng.standard_normal(32)) + 3.0
    assert effective_rank(rank1) == pytest.approx(1.0, abs=1e-9)
    rank3 = rng.standard_normal((500, 3)) @ rng.standard_normal((3, 40))
    assert 1.0 < effective_rank(rank3) <= 3.0 + 1e-9


def test_known_spectra_closed_form() -> None:
    # p = (9/25, 16/25) for σ = (3, 4); p = (3/7, 4/7) for the Roy–Vetterli variant.
    p = np.array([9, 16]) / 25
    assert effective_rank_from_singular_values([3.0, 4.0]) == pytest.approx(
        math.exp(-(p * np.log(p)).sum()), rel=1e-12
    )
    q = np.array([3, 4]) / 7
    assert effective_rank_from_singular_values([3.0, 4.0], "roy_vetterli") == pytest.approx(
        math.exp(-(q * np.log(q)).sum()), rel=1e-12
    )
    # zeros contribute 0·ln 0 = 0: four equal values and two zeros → exactly 4
    assert effective_rank_from_singular_values([2, 2, 2, 2, 0, 0]) == pytest.approx(4.0)


def test_matrix_with_prescribed_spectrum_round_trips() -> None:
    s = np.array([10.0, 5.0, 2.0, 1.0, 0.5])
    x = with_singular_values(s)
    got = singular_values(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, s, rtol=1e-10)
    assert effective_rank(x) == pytest.approx(effective_rank_from_singular_values(s), rel=1e-10)


def test_descending_and_length() -> None:
    x = np.random.default_rng(3).standard_normal((10, 30))  # wide: min(N, D) values
    s = singular_values(x)
    assert s.shape == (10,)
    assert np.all(np.diff(s) <= 0)
    assert s[-1] < 1e-10 * s[0]  # centred 10-row data has rank ≤ 9


def test_centring_large_offset_changes_nothing() -> None:
    x = np.random.default_rng(4).standard_normal((1000, 20)) * np.linspace(0.1, 3, 20)
    shifted = x + 1e4
    assert effective_rank(shifted) == pytest.approx(effective_rank(x), rel=1e-9)
    # without centring the offset dominates and the "rank" collapses towards 1
    uncentred = effective_rank_from_singular_values(np.linalg.svd(shifted, compute_uv=False))
    assert uncentred < 1.01


def test_float32_equals_float64() -> None:
    x = np.random.default_rng(5).standard_normal((2000, 64)) * np.geomspace(1, 0.01, 64)
    x32 = x.astype(np.float32)
    assert effective_rank(x32) == pytest.approx(effective_rank(x32.astype(np.float64)), rel=1e-12)
    assert effective_rank(x32) == pytest.approx(effective_rank(x), rel=1e-6)


def test_torch_and_numpy_agree() -> None:
    x = np.random.default_rng(6).standard_normal((400, 32)).astype(np.float32)
    t = torch.from_numpy(x).requires_grad_(True)
    np.testing.assert_allclose(singular_values(t), singular_values(x), rtol=1e-12)
    for v in VARIANTS:
        assert effective_rank(t, v) == pytest.approx(effective_rank(x, v), rel=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensor_returns_numpy() -> None:
    x = torch.randn(300, 16, device="cuda")
    s = singular_values(x)
    assert isinstance(s, np.ndarray)
    np.testing.assert_allclose(s, singular_values(x.cpu().numpy()), rtol=1e-10)


def test_variants_differ_as_expected() -> None:
    s = np.array([10.0, 3.0, 1.0, 0.3])
    ent = effective_rank_from_singular_values(s, "entropy")
    rv = effective_rank_from_singular_values(s, "roy_vetterli")
    assert 1.0 < ent < rv < 4.0  # p ∝ σ is flatter than p ∝ σ², so its entropy is larger
    assert set(VARIANT_LABELS) == set(VARIANTS)
    assert "paper" in VARIANT_LABELS["entropy"] and "RankMe" in VARIANT_LABELS["roy_vetterli"]


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.ones((1, 5)), "at least 2 rows"),
        (np.ones((4, 5, 2)), "2-D"),
        (np.ones(5), "2-D"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), "NaN/inf"),
        (np.full((50, 4), 7.3), "no variance"),
    ],
)
def test_bad_input_raises_clear_error(x: np.ndarray, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        effective_rank(x)


def test_constant_rows_give_zero_spectrum_that_is_refused() -> None:
    x = np.full((30, 6), 0.1)  # the float mean of 30 × 0.1 need not be exactly 0.1
    s = singular_values(x)
    assert np.all(s == 0.0)
    with pytest.raises(ArtifactError, match="no variance"):
        effective_rank_from_singular_values(s)


def test_bad_variant_and_bad_singular_values() -> None:
    x = np.random.default_rng(7).standard_normal((10, 3))
    with pytest.raises(ValueError, match="variant"):
        effective_rank(x, "rankme")
    with pytest.raises(ArtifactError):
        effective_rank_from_singular_values([])
    with pytest.raises(ArtifactError, match="no variance"):
        effective_rank_from_singular_values([0.0, 0.0])
    with pytest.raises(ArtifactError):
        effective_rank_from_singular_values([1.0, -1.0])


def test_l2_rank_sees_through_a_radial_norm_spread() -> None:
    """Rows = varying multiples of one direction plus small isotropic noise: the raw
    centred spectrum is dominated by the norm spread, the directions are not."""
    rng = np.random.default_rng(0)
    d = 16
    mu = np.zeros(d)
    mu[0] = 10.0
    x = rng.uniform(0.5, 1.5, size=(2000, 1)) * mu + 0.3 * rng.standard_normal((2000, d))
    assert effective_rank(x) < 2.5  # one radial axis holds most of the variance
    assert effective_rank_l2(x) > 0.9 * (d - 1)  # the directions fill the sphere
    assert norm_cv(x) > 0.2


def test_l2_rank_and_norm_cv_ignore_per_row_and_global_scale() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 12))
    scaled = x * rng.uniform(0.1, 10.0, size=(300, 1))
    assert effective_rank_l2(scaled) == pytest.approx(effective_rank_l2(x), rel=1e-9)
    assert effective_rank(scaled) != pytest.approx(effective_rank(x), rel=1e-3)
    assert norm_cv(7.0 * x) == pytest.approx(norm_cv(x), rel=1e-12)


def test_norm_cv_closed_form() -> None:
    x = np.array([[1.0, 0.0], [0.0, 3.0]])  # norms 1 and 3: mean 2, std (ddof 0) 1
    assert norm_cv(x) == pytest.approx(0.5)
    assert norm_cv(np.ones((4, 3))) == 0.0


def test_l2_rank_refuses_zero_rows() -> None:
    x = np.array([[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]])
    with pytest.raises(ArtifactError, match="zero norm"):
        effective_rank_l2(x)
    with pytest.raises(ArtifactError, match="zero norm"):
        norm_cv(np.zeros((3, 2)))


@pytest.mark.parametrize(
    ("n", "dim", "width", "expected"),
    [(1000, 512, 80, 80), (1000, 512, None, 512), (50, 512, 320, 49), (1000, 64, 96, 64)],
)
def test_rank_ceiling(n: int, dim: int, width: int | None, expected: int) -> None:
    assert rank_ceiling(n, dim, width) == expected
