"""Linear probe: ≈ 1 on separable data, ≈ chance on shuffled labels, graceful when tiny."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdspectra.errors import ArtifactError
from kdspectra.metrics.probe import DEFAULT_C, fit_probe, knn_accuracy, noise_accuracy


def blobs(n: int, k: int, d: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k Gaussian blobs with centres ``spread`` apart in d dims (float32, like embeddings)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((k, d)) * spread
    y = rng.integers(0, k, n)
    return (centres[y] + rng.standard_normal((n, d))).astype(np.float32), y


def test_separable_data_gives_accuracy_near_one() -> None:
    xtr, ytr = blobs(600, 4, 16, spread=6.0, seed=0)
    xte, yte = blobs(300, 4, 16, spread=6.0, seed=1)
    probe = fit_probe(xtr, ytr, seed=0, Cs=(0.1, 1.0))
    assert probe.accuracy(xte, yte) >= 0.98
    assert probe.C in (0.1, 1.0)
    assert set(probe.selection) == {0.1, 1.0}
    assert "held-out" in probe.selection_note
    assert probe.dim == 16


def test_shuffled_labels_give_chance() -> None:
    xtr, ytr = blobs(800, 4, 16, spread=6.0, seed=0)
    xte, yte = blobs(800, 4, 16, spread=6.0, seed=1)
    rng = np.random.default_rng(0)
    acc = fit_probe(xtr, rng.permutation(ytr), seed=0).accuracy(xte, rng.permutation(yte))
    assert abs(acc - 0.25) < 0.08


def test_fixed_seed_is_deterministic() -> None:
    x, y = blobs(300, 3, 8, spread=1.0, seed=2)
    a, b = fit_probe(x, y, seed=3), fit_probe(x, y, seed=3)
    assert a.C == b.C and a.selection == b.selection
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def test_tiny_dataset_skips_selection_gracefully() -> None:
    x = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32)
    y = np.array([0, 0, 1, 2, 3, 4, 4])  # classes with one sample: no stratified hold-out
    probe = fit_probe(x, y)
    assert probe.C == DEFAULT_C and probe.selection == {}
    assert "no held-out" in probe.selection_note
    assert probe.accuracy(x, y) > 0.5  # it fits and predicts, better than the majority class


def test_large_train_selects_on_subsample() -> None:
    x, y = blobs(1200, 3, 6, spread=4.0, seed=4)
    probe = fit_probe(x, y, select_max_samples=300, Cs=(1.0,))
    assert "60 held-out" in probe.selection_note  # 20 % of the 300-row subsample


def test_noise_accuracy_frame() -> None:
    xtr, ytr = blobs(500, 3, 10, spread=3.0, seed=0)
    xte, yte = blobs(300, 3, 10, spread=3.0, seed=1)
    probe = fit_probe(xtr, ytr)
    sigmas = [0.0, 1.0, 10.0]
    rng = np.random.default_rng(5)
    noisy = np.stack([xte + s * rng.standard_normal(xte.shape).astype(np.float32) for s in sigmas])
    frame = noise_accuracy(probe, noisy, yte, sigmas)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["sigma", "accuracy"]
    assert frame["sigma"].tolist() == sigmas
    assert frame["accuracy"].iloc[0] == pytest.approx(probe.accuracy(xte, yte))
    assert frame["accuracy"].iloc[0] > 0.9 > frame["accuracy"].iloc[2]
    assert frame["accuracy"].between(0, 1).all()


def test_errors_name_the_problem() -> None:
    x, y = blobs(100, 2, 4, spread=3.0, seed=0)
    probe = fit_probe(x, y)
    with pytest.raises(ArtifactError, match="sigmas"):
        noise_accuracy(probe, np.stack([x, x]), y, [0.0])
    with pytest.raises(ArtifactError, match="4-d"):
        probe.accuracy(np.zeros((3, 5), np.float32), np.zeros(3))
    with pytest.raises(ArtifactError, match="labels"):
        probe.accuracy(x, y[:-1])
    with pytest.raises(ArtifactError, match="single class"):
        fit_probe(x, np.zeros(len(x)))
    with pytest.raises(ArtifactError, match="NaN"):
        fit_probe(np.full((10, 2), np.nan), np.arange(10) % 2)


def test_fit_runs_blas_on_one_thread_whatever_the_job_was_given(monkeypatch) -> None:
    """One BLAS thread: faster for lbfgs's small products, and cores-independent results."""
    from threadpoolctl import threadpool_info, threadpool_limits

    import kdspectra.metrics.probe as probe_mod

    seen: list[int] = []
    original = probe_mod.LogisticRegression.fit

    def spy(self, *args, **kwargs):
        seen.extend(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(probe_mod.LogisticRegression, "fit", spy)
    x, y = blobs(400, 5, 32, spread=1.0, seed=4)
    with threadpool_limits(limits=4, user_api="blas"):
        probe = fit_probe(x, y, seed=0, Cs=(0.1, 1.0))
    assert seen and set(seen) == {probe_mod.BLAS_THREADS}
    assert probe.accuracy(x, y) > 0.5


def unit(angle_deg: float) -> list[float]:
    a = np.deg2rad(angle_deg)
    return [float(np.cos(a)), float(np.sin(a))]


def test_knn_weighting_changes_the_vote() -> None:
    """One very close neighbour of class 1 outweighs two farther ones of class 0 …"""
    train = np.array([unit(0), unit(40), unit(-40), unit(180)])
    ytr = np.array([1, 0, 0, 2])
    query, yq = np.array([unit(0)]), np.array([1])
    assert knn_accuracy(train, ytr, query, yq, k=3, temperature=0.07) == 1.0
    # … but with a huge temperature every vote weighs the same: the majority (class 0) wins.
    assert knn_accuracy(train, ytr, query, yq, k=3, temperature=1e6) == 0.0
    assert knn_accuracy(train, ytr, query, np.array([0]), k=3, temperature=1e6) == 1.0


def test_knn_uses_directions_only() -> None:
    train = np.array([[1.0, 0.0], [0.0, 1.0]]) * np.array([[1000.0], [0.001]])
    ytr = np.array([0, 1])
    test = np.array([[0.1, 1.0], [5.0, 0.2]])
    assert knn_accuracy(train, ytr, test, np.array([1, 0]), k=1) == 1.0


def test_knn_separable_blobs_and_chance() -> None:
    xtr, ytr = blobs(400, 4, 16, spread=6.0, seed=0)
    xte, yte = blobs(200, 4, 16, spread=6.0, seed=1)
    assert knn_accuracy(xtr, ytr, xte, yte) == 1.0
    shuffled = np.random.default_rng(0).permutation(ytr)
    assert abs(knn_accuracy(xtr, shuffled, xte, yte) - 0.25) < 0.12


def test_knn_chunking_and_k_beyond_train(monkeypatch) -> None:
    import kdspectra.metrics.probe as probe_mod

    xtr, ytr = blobs(60, 3, 8, spread=1.0, seed=2)
    xte, yte = blobs(50, 3, 8, spread=1.0, seed=3)
    whole = knn_accuracy(xtr, ytr, xte, yte, k=7)
    monkeypatch.setattr(probe_mod, "KNN_BLOCK_ELEMENTS", 60 * 4)  # 4 test rows per chunk
    assert knn_accuracy(xtr, ytr, xte, yte, k=7) == whole
    # k ≥ N train: every train row votes (clipped), the same as k = N
    assert knn_accuracy(xtr, ytr, xte, yte, k=10_000) == knn_accuracy(xtr, ytr, xte, yte, k=60)


def test_knn_ties_are_deterministic() -> None:
    train = np.array([[1.0, 0.0]] * 4)  # four identical neighbours, k = 2 picks two of them
    ytr = np.array([3, 1, 1, 3])
    # neighbour ties go to the lower train index: rows 0 and 1 → one vote each for 3 and 1;
    # the vote tie goes to the smaller class label, 1.
    assert knn_accuracy(train, ytr, np.array([[2.0, 0.0]]), np.array([1]), k=2) == 1.0
    assert knn_accuracy(train, ytr, np.array([[2.0, 0.0]]), np.array([3]), k=1) == 1.0


def test_knn_errors_name_the_problem() -> None:
    x, y = blobs(20, 2, 4, spread=3.0, seed=0)
    with pytest.raises(ArtifactError, match=r"4-d.*3-d"):
        knn_accuracy(x, y, x[:, :3], y)
    with pytest.raises(ArtifactError, match="labels"):
        knn_accuracy(x, y[:-1], x, y)
    with pytest.raises(ValueError, match="k ≥ 1"):
        knn_accuracy(x, y, x, y, k=0)
    with pytest.raises(ArtifactError, match="NaN"):
        knn_accuracy(x, y, np.full((2, 4), np.nan), y[:2])


def test_knn_separates_a_near_constant_embedding() -> None:
    """Separable blobs riding on an offset 10⁵× their spread (every pairwise cosine ≥ 0.9999999,
    as timm's random-init DINOv2): neighbours differ in the 8th digit of the cosine, which
    float32 similarities round into ties (a vote by index order)."""
    xtr, ytr = blobs(400, 4, 16, spread=6.0, seed=0)
    xte, yte = blobs(200, 4, 16, spread=6.0, seed=1)
    offset = np.full(16, 1e6)
    cone_tr, cone_te = (xtr + offset).astype(np.float32), (xte + offset).astype(np.float32)
    u = cone_te.astype(np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    assert (u @ u.T).min() > 0.9999999  # the regime of the degenerate teacher
    assert knn_accuracy(xtr, ytr, xte, yte) == 1.0
    assert knn_accuracy(cone_tr, ytr, cone_te, yte) == 1.0  # float32 similarities: 0.62
