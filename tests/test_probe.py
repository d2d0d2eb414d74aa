"""Linear probe: ≈ 1 on separable data, ≈ chance on shuffled labels, graceful when tiny."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdspectra.errors import ArtifactError
from kdspectra.probe import DEFAULT_C, fit_probe, noise_accuracy, probe_accuracy


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
    acc = probe_accuracy(xtr, rng.permutation(ytr), xte, rng.permutation(yte), seed=0)
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

    import kdspectra.probe as probe_mod

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
