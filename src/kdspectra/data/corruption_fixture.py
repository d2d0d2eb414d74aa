"""Synthetic, format-exact corruption archives built from a prepared test split.

CIFAR-10-C and CIFAR-100-C exist only for CIFAR; the offline demo runs on scikit-learn's
digits and the tests on tiny splits, and neither may reach the network. So the corruption
stage is exercised end to end (download through ``file://`` → md5 → member checks →
embedding → scoring) on an archive with the published layout whose images come from the
prepared test split of any dataset. It is NOT CIFAR-C and says so twice: its directory is
``SYNTHETIC-C`` (:data:`kdspectra.data.corruptions.FIXTURE_DIR`) and it carries a README.

What each corruption is here (deterministic from ``seed``; severity s = 1..5):

- ``gaussian_noise``: exactly CIFAR-C's, ``uint8(clip(x/255 + N(0, σ_s²), 0, 1)·255)`` with
  σ_s = (0.04, 0.06, 0.08, 0.09, 0.10) (Hendrycks & Dietterich's ``make_cifar_c.py``);
- the other noises: shot (Poisson at CIFAR-C's rates), impulse (salt and pepper), speckle
  (x + x·N(0, c²)) at CIFAR-C's severity constants;
- the blurs: a box blur of width s + 1 (a stand-in for every blur kind);
- ``brightness`` (+c on [0, 1] pixels), ``contrast`` (towards the image mean),
  ``pixelate`` (blocks of s + 1 pixels): simple versions of their namesakes;
- every other corruption (fog, frost, snow, spatter, elastic_transform, jpeg_compression,
  saturate): a clean copy of the test split, so its accuracy must equal the clean one.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from kdspectra.data.corruptions import (
    CORRUPTIONS,
    FAMILIES,
    FIXTURE_DIR,
    LABELS,
    SEVERITIES,
    SEVERITY_SIGMA,
    add_npy,
    check_names,
)
from kdspectra.data.embeddings import load_labels
from kdspectra.io import atomic_path, load_npy

Transform = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]  # [0,1] float

# CIFAR-C's severity constants of the noises the fixture reproduces (make_cifar_c.py).
_SHOT = (500, 250, 100, 75, 50)
_IMPULSE = (0.01, 0.02, 0.03, 0.05, 0.07)
_SPECKLE = (0.06, 0.1, 0.12, 0.16, 0.2)
_BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
_CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)

README = (
    "SYNTHETIC corruption fixture, NOT CIFAR-10-C / CIFAR-100-C.\n"
    "Built by kdspectra.data.corruption_fixture from a prepared test split, in the published\n"
    "layout (SYNTHETIC-C/<corruption>.npy, SYNTHETIC-C/labels.npy) so that the pipeline's\n"
    "corruption stage can run offline. gaussian_noise is CIFAR-C's; other noises, blurs,\n"
    "brightness, contrast and pixelate are simple stand-ins; the rest are clean copies.\n"
    "Its accuracies say nothing about robustness to real corruptions.\n"
)


def _gaussian(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(size=x.shape, scale=SEVERITY_SIGMA[s - 1])


def _shot(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(x * _SHOT[s - 1]) / _SHOT[s - 1]


def _impulse(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(x.shape)
    amount = _IMPULSE[s - 1]
    return np.where(u < amount / 2, 0.0, np.where(u > 1 - amount / 2, 1.0, x))


def _speckle(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return x + x * rng.normal(size=x.shape, scale=_SPECKLE[s - 1])


def _box_blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    width = s + 1
    pad = np.pad(x, ((0, 0), (width, width), (width, width), (0, 0)), mode="edge")
    out = np.zeros_like(x)
    lo = width - width // 2
    for dy in range(width):
        for dx in range(width):
            out += pad[:, lo + dy : lo + dy + x.shape[1], lo + dx : lo + dx + x.shape[2]]
    return out / width**2


def _brightness(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return x + _BRIGHTNESS[s - 1]


def _contrast(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return (x - mean) * _CONTRAST[s - 1] + mean


def _pixelate(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    block = s + 1
    idx = (np.arange(x.shape[1]) // block) * block
    return x[:, idx][:, :, idx]


TRANSFORMS: dict[str, Transform] = {
    "gaussian_noise": _gaussian,
    "shot_noise": _shot,
    "impulse_noise": _impulse,
    "speckle_noise": _speckle,
    **{name: _box_blur for name in FAMILIES["blur"]},
    "brightness": _brightness,
    "contrast": _contrast,
    "pixelate": _pixelate,
}
# The corruptions the fixture leaves clean: their accuracy must equal the clean accuracy.
CLEAN_COPIES = tuple(name for name in CORRUPTIONS if name not in TRANSFORMS)


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """The fixture's ``name`` at ``severity`` of uint8 N×32×32×3 ``images`` (uint8).

    Quantised like CIFAR-C (``np.uint8`` of the clipped [0, 255] floats, i.e. truncation),
    so the Gaussian noise is bit-for-bit the construction of the published archive.
    """
    if name in CLEAN_COPIES:
        return np.array(images, dtype=np.uint8, copy=True)
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name), severity])
    x = np.asarray(images, dtype=np.float64) / 255.0
    return np.uint8(np.clip(TRANSFORMS[name](x, severity, rng), 0.0, 1.0) * 255)


def fixture_sets(
    images: np.ndarray, names: Sequence[str] = CORRUPTIONS, seed: int = 0
) -> dict[str, np.ndarray]:
    """``name`` → uint8 (5·N, 32, 32, 3): the 5 severities of each corruption, stacked."""
    return {
        name: np.concatenate([corrupt(images, name, s, seed) for s in SEVERITIES])
        for name in check_names(names, "fixture corruptions")
    }


def write_fixture(
    data_dir: str | Path, out: str | Path, names: Sequence[str] = CORRUPTIONS, seed: int = 0
) -> Path:
    """Write the synthetic archive of the prepared test split in ``data_dir``
    (``test_images.npy``, ``test_labels.npy``) to ``out``, atomically, one corruption
    member at a time (memory: one corruption's 5 severities)."""
    data_dir = Path(data_dir)
    labels = load_labels(data_dir / "test_labels.npy")
    images = load_npy(data_dir / "test_images.npy", dtype=np.uint8, ndim=4, rows=len(labels))
    with atomic_path(out) as tmp, tarfile.open(tmp, "w:") as tar:
        info = tarfile.TarInfo("README.txt")
        info.size = len(README.encode())
        tar.addfile(info, io.BytesIO(README.encode()))
        for name in check_names(names, "fixture corruptions"):
            add_npy(tar, f"{FIXTURE_DIR}/{name}.npy", fixture_sets(images, [name], seed)[name])
        add_npy(tar, f"{FIXTURE_DIR}/{LABELS}", np.tile(labels, len(SEVERITIES)))
    return Path(out)
