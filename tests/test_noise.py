"""Gaussian corruption exactly as docs/design.md: clip(x/255 + σ·N(0,1), 0, 1), fixed seed."""

from __future__ import annotations

import numpy as np
import pytest

from kdspectra.data.noise import add_gaussian_noise
from kdspectra.errors import ConfigError, DataError


@pytest.fixture
def mid_grey() -> np.ndarray:
    """Pixels at 128 so that σ = 0.1 noise is almost never clipped."""
    return np.full((20, 32, 32, 3), 128, dtype=np.uint8)


def test_sigma_zero_is_exactly_the_scaled_pixels() -> None:
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    out = add_gaussian_noise(x, 0.0, seed=0)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, x.astype(np.float32) / np.float32(255))


def test_output_is_clipped_to_unit_range() -> None:
    x = np.zeros((8, 32, 32, 3), dtype=np.uint8)
    x[::2] = 255
    out = add_gaussian_noise(x, 1.0, seed=1)
    assert out.min() == 0.0 and out.max() == 1.0
    assert 0.0 < out.mean() < 1.0


def test_same_seed_same_output_other_seed_differs(mid_grey: np.ndarray) -> None:
    a = add_gaussian_noise(mid_grey, 0.2, seed=3)
    np.testing.assert_array_equal(a, add_gaussian_noise(mid_grey, 0.2, seed=3))
    assert not np.array_equal(a, add_gaussian_noise(mid_grey, 0.2, seed=4))


def test_noise_statistics_match_sigma(mid_grey: np.ndarray) -> None:
    clean = mid_grey.astype(np.float32) / 255
    for sigma in (0.05, 0.1):
        delta = add_gaussian_noise(mid_grey, sigma, seed=0) - clean
        assert abs(delta.mean()) < 0.1 * sigma
        assert delta.std() == pytest.approx(sigma, rel=0.03)


def test_common_random_numbers_across_sigmas(mid_grey: np.ndarray) -> None:
    clean = mid_grey.astype(np.float32) / 255
    small = add_gaussian_noise(mid_grey, 0.05, seed=9) - clean
    large = add_gaussian_noise(mid_grey, 0.10, seed=9) - clean
    np.testing.assert_allclose(large, 2 * small, atol=1e-6)


def test_float_input_in_unit_range_is_accepted(mid_grey: np.ndarray) -> None:
    as_float = mid_grey.astype(np.float32) / 255
    np.testing.assert_array_equal(
        add_gaussian_noise(as_float, 0.1, seed=2), add_gaussian_noise(mid_grey, 0.1, seed=2)
    )
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        add_gaussian_noise(as_float * 255, 0.1, seed=2)


@pytest.mark.parametrize("sigma", [-0.1, 1.5, float("nan"), "abc"])
def test_sigma_out_of_range_is_rejected(sigma: object, mid_grey: np.ndarray) -> None:
    with pytest.raises(ConfigError, match="sigma") as info:
        add_gaussian_noise(mid_grey, sigma, seed=0)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_non_image_input_is_rejected() -> None:
    with pytest.raises(DataError, match="N×H×W×C"):
        add_gaussian_noise(np.zeros((32, 32, 3), np.uint8), 0.1, seed=0)
