"""Teacher sanity: the numbers that say whether a teacher is a teacher (kdspectra.metrics.sanity),
on synthetic clouds with known answers and on timm's random-init DINOv2, the constant map the
demo once distilled from."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kdspectra.errors import ArtifactError
from kdspectra.metrics.probe import knn_accuracy
from kdspectra.metrics.sanity import (
    CENTRED_SHARE_MIN,
    centred_energy_share,
    chance_accuracy,
    degenerate_reasons,
    mean_pairwise_cosine,
    teacher_sanity,
)


def _blobs(n: int, seed: int, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Four separable 8-d blobs, optionally shifted by ``offset`` along one axis."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(7).standard_normal((4, 8)) * 6.0
    y = rng.integers(0, 4, n)
    x = centres[y] + rng.standard_normal((n, 8))
    x[:, 0] += offset
    return x.astype(np.float32), y


def test_mean_pairwise_cosine_matches_the_pairs() -> None:
    x = np.random.default_rng(0).standard_normal((40, 5))
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    gram = u @ u.T
    brute = (gram.sum() - np.trace(gram)) / (40 * 39)
    assert mean_pairwise_cosine(x) == pytest.approx(brute, abs=1e-12)
    assert mean_pairwise_cosine(np.tile([[3.0, 4.0]], (5, 1))) == pytest.approx(1.0)
    assert mean_pairwise_cosine(np.array([[1.0, 0.0], [-2.0, 0.0]])) == pytest.approx(-1.0)
    with pytest.raises(ArtifactError, match="at least 2 rows"):
        mean_pairwise_cosine(np.ones((1, 3)))


def test_centred_energy_share_of_an_offset_cloud() -> None:
    z = np.random.default_rng(1).standard_normal((50, 6))
    z -= z.mean(axis=0)
    c = np.array([2.0, 0, 0, 0, 0, 0])
    expected = np.sum(z**2) / (np.sum(z**2) + 50 * 4.0)  # cross terms vanish: z is centred
    assert centred_energy_share(z + c) == pytest.approx(expected)
    assert centred_energy_share(z) == pytest.approx(1.0)
    assert centred_energy_share(np.tile(c, (4, 1))) == 0.0
    with pytest.raises(ArtifactError, match="every row is zero"):
        centred_energy_share(np.zeros((3, 2)))


def test_chance_is_the_majority_class() -> None:
    assert chance_accuracy([0, 1, 2, 3]) == 0.25
    assert chance_accuracy([1, 1, 1, 2]) == 0.75


def test_degenerate_reasons_name_each_guard() -> None:
    fine = degenerate_reasons(0.5, {"linear probe": 0.9, "kNN-20": 0.8}, chance=0.1)
    assert fine == []
    low = degenerate_reasons(CENTRED_SHARE_MIN / 2, {"linear probe": 0.9}, chance=0.1)
    assert len(low) == 1 and "centred energy share" in low[0]
    near = degenerate_reasons(0.5, {"linear probe": 0.9, "kNN-20": 0.19}, chance=0.1)
    assert len(near) == 1 and near[0].startswith("kNN-20 0.190 within 0.10 of chance")
    assert degenerate_reasons(0.5, {"kNN-20": 0.2}, chance=0.1) == []  # exactly 10 points
    missing = degenerate_reasons(math.nan, {"linear probe": math.nan}, chance=0.1)
    assert len(missing) == 2  # a number that is not there cannot pass


def test_a_separable_teacher_is_sane_and_a_cone_of_it_is_not() -> None:
    xtr, ytr = _blobs(300, 0)
    xte, yte = _blobs(120, 1)
    good = teacher_sanity(xtr, ytr, xte, yte, probe={"max_iter": 100})
    assert good["degenerate"] is False and good["degenerate_reasons"] == []
    assert good["linear_probe_accuracy"] > 0.95 and good["knn20_accuracy"] > 0.95
    assert good["centred_energy_share"] > 0.5
    assert set(good) >= {"mean_pairwise_cosine", "effective_rank_test", "rankme", "uniformity"}
    # The same information on an offset 10³× the spread: still separable, but a cone.
    cone = teacher_sanity(
        *_blobs(300, 0, offset=1e3), *_blobs(120, 1, offset=1e3), probe={"max_iter": 100}
    )
    assert cone["degenerate"] is True
    assert cone["mean_pairwise_cosine"] > 0.999
    assert cone["degenerate_reasons"] == [
        f"centred energy share {cone['centred_energy_share']:.2g} < {CENTRED_SHARE_MIN}"
    ]


# timm's DINOv2 at random init, at the demo's 28 px: LayerScale 1e-5 makes it a constant map.
DINO_SPEC = {
    "name": "dinov2_vitb14",
    "library": "timm",
    "model": "vit_base_patch14_dinov2",
    "pretrained": False,
    "image_size": 28,
    "batch_size": 128,
}


@pytest.fixture(scope="module")
def random_dino(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, ...]:
    """Its embeddings of the first 300 train and 120 test digits, with their labels."""
    from kdspectra.data.datasets import prepare_dataset
    from kdspectra.models.teachers import build_teacher

    data = tmp_path_factory.mktemp("digits")
    prepare_dataset("sklearn-digits", None, data)
    images = {s: np.load(data / f"{s}_images.npy") for s in ("train", "test")}
    labels = {s: np.load(data / f"{s}_labels.npy") for s in ("train", "test")}
    teacher = build_teacher(DINO_SPEC)
    xtr = teacher.embed(images["train"][:300], batch_size=128)
    xte = teacher.embed(images["test"][:120], batch_size=128)
    return xtr, labels["train"][:300], xte, labels["test"][:120]


@pytest.mark.slow
def test_random_init_dinov2_is_flagged_degenerate(random_dino: tuple[np.ndarray, ...]) -> None:
    sanity = teacher_sanity(*random_dino, probe={"max_iter": 100})
    assert sanity["degenerate"] is True
    assert sanity["mean_pairwise_cosine"] > 0.99999
    assert sanity["centred_energy_share"] < 1e-6
    assert any(r.startswith("centred energy share") for r in sanity["degenerate_reasons"])


@pytest.mark.slow
def test_knn_does_not_tie_on_random_init_dinov2(random_dino: tuple[np.ndarray, ...]) -> None:
    """Its neighbours' cosines differ in the 8th digit: float32 similarities tied them
    (kNN-20 0.15 on the whole split), float64 ones rank them (0.89)."""
    xtr, ytr, xte, yte = random_dino
    u = xte.astype(np.float32) / np.linalg.norm(xte, axis=1, keepdims=True)
    sims32 = u[:20] @ u.T
    assert np.mean([len(np.unique(row)) for row in sims32]) < 0.2 * len(u)  # mostly ties
    assert knn_accuracy(xtr, ytr, xte, yte, k=20) > 0.6  # chance is ~0.1
