"""Gaussian pixel noise for the robustness curves (Figure 3).

The paper's corruption is defined on [0, 1] pixels before any normalisation:
x' = clip(x + σ·N(0, 1), 0, 1). One standard-normal draw over the whole array, fixed by the
seed, is shared by every σ (common random numbers): the accuracy-vs-σ curve then varies
only with σ, not with a fresh noise sample per point, and the result does not depend on how
a caller batches the images.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from kdspectra.errors import ConfigError, DataError
from kdspectra.runtime.progress import Progress

log = logging.getLogger(__name__)


def add_gaussian_noise(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Return ``clip(images/255 + sigma·N(0,1), 0, 1)`` as float32 NHWC.

    ``images`` is uint8 NHWC (the prepared-data format) or float already in [0, 1].
    ``sigma = 0`` returns exactly the clean pixels (no draw is made).
    """
    sigma = _check_sigma(sigma)
    x = to_unit_float(images)
    if sigma == 0.0:
        return x
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    noise *= np.float32(sigma)
    noise += x
    return np.clip(noise, 0.0, 1.0, out=noise)


def embed_noisy(
    embed: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    sigmas: Sequence[float],
    seed: int,
) -> np.ndarray:
    """``embed`` of the images under every noise level: an S×N×D float32 array.

    The one loop behind Figure 3's inputs, for teachers and students alike (and the paper
    scale benchmark): ``embed`` is any model's batched embedding of float NHWC pixels in
    [0, 1], and every σ reuses the same seed, so the curve varies only with σ.
    """
    out = []
    progress = Progress(len(sigmas) * len(images), desc="noise pass", unit="img", logger=log)
    with progress:
        for sigma in sigmas:
            t0 = time.perf_counter()
            out.append(embed(add_gaussian_noise(images, float(sigma), seed)))
            log.info("sigma=%.3f: %d images in %.1fs", sigma, len(images), time.perf_counter() - t0)
            progress.update(len(images))
    return np.stack(out).astype(np.float32)


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 → float32 in [0, 1] (``x / 255``); float input is checked and cast to float32."""
    arr = np.asarray(images)
    if arr.ndim != 4:
        raise DataError(f"noise input: expected N×H×W×C images, found shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"noise input: expected uint8 or float in [0, 1], found {arr.dtype}")
    if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
        raise DataError(
            f"noise input: expected float pixels in [0, 1], "
            f"found range [{np.nanmin(arr)}, {np.nanmax(arr)}] (or NaN/inf)"
        )
    return arr.astype(np.float32, copy=True)


def _check_sigma(sigma: float) -> float:
    """σ is a pixel-scale standard deviation; above 1 the image is pure clipped noise."""
    try:
        value = float(sigma)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"noise sigma: expected a number in [0, 1], found {sigma!r}") from exc
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ConfigError(f"noise sigma: expected a number in [0, 1], found {sigma!r}")
    return value
