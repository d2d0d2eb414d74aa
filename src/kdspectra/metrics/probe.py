"""Linear probe (and kNN): how much class information an embedding carries, clean and noisy.

docs/design.md defines noise robustness as the accuracy of *one* linear probe, fitted on clean
train embeddings, scored on embeddings of noisy test images. The probe is a multinomial
logistic regression (lbfgs) on standardised features. Its L2 strength C is chosen on a
held-out, stratified part of train with a fixed seed, then the probe is refitted on all of
train, so test data never influences any choice.

Cost, for 50k × 768 features and 100 classes: an lbfgs iteration is two dense
(N×D)·(D×K) products (~8 GFLOP), so a fit is bounded by ``max_iter``. C selection runs
on at most ``select_max_samples`` rows (stratified subsample) and walks the grid from
strong to weak regularisation with warm starts, so it costs about one small fit. Measured
on a shared 2-core CPU: 9 s in total for well-separated 100-class data (7 iterations) and
99 s for a hard case (C = 100, 103 iterations); the ``max_iter = 300`` cap bounds the worst
case at a few minutes, never hours. Features stay float32 (sklearn's lbfgs accepts them;
scipy keeps the optimiser state in float64), which halves memory traffic. An lbfgs that
stops at ``max_iter`` is logged, not fatal: a capped probe is a conservative (lower)
accuracy estimate, applied identically to every model compared.

Beside the probe, :func:`knn_accuracy` gives the weighted kNN accuracy SSL papers report
(DINO / solo-learn): no fitting and only k and a temperature to choose.

Fits run with BLAS on one thread (:data:`BLAS_THREADS`). Profiling the noise stage on a
2-core CPU showed lbfgs's small (N×D)·(D×K) products spend more time in the thread
pool's hand-offs than they gain from a second core: one thread is 2.1× faster for a
5000×768, 100-class probe and 1.5× for the whole demo noise job (``bench_probe``
measures it in every ``make bench``). A fixed thread count also makes the fitted
coefficients, hence the accuracies, independent of how many cores a job was given;
with 2 BLAS threads they differ in the 7th digit. Parallelism comes from Snakemake
running one probe per model side by side instead.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from kdspectra.errors import ArtifactError

log = logging.getLogger(__name__)

DEFAULT_CS = (0.01, 0.1, 1.0, 10.0)
DEFAULT_C = 1.0  # used when train is too small to hold anything out
BLAS_THREADS = 1  # see module doc: faster on small products, thread-count independent


@dataclass
class Probe:
    """A fitted scaler + logistic regression, with the record of how C was chosen."""

    scaler: StandardScaler
    model: LogisticRegression
    C: float
    selection: dict[float, float] = field(default_factory=dict)  # C -> held-out accuracy
    selection_note: str = ""

    @property
    def dim(self) -> int:
        """Feature dimension the probe expects."""
        return int(self.scaler.n_features_in_)

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """Predicted labels for an N×D embedding matrix."""
        x = _features(emb, "embeddings")
        if x.shape[1] != self.dim:
            raise ArtifactError(f"probe was fitted on {self.dim}-d features, got {x.shape[1]}-d")
        return self.model.predict(self.scaler.transform(x))

    def accuracy(self, emb: np.ndarray, labels: np.ndarray) -> float:
        """Fraction (in [0, 1]) of rows whose predicted label equals ``labels``."""
        y = _labels(labels, len(emb))
        return float(np.mean(self.predict(emb) == y))


def _features(emb: np.ndarray, what: str) -> np.ndarray:
    """float32 N×D, finite; float32 because lbfgs accepts it and memory traffic dominates."""
    x = np.asarray(emb)
    if x.ndim != 2:
        raise ArtifactError(f"{what}: expected an N×D matrix, found shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ArtifactError(f"{what}: holds NaN/inf values")
    return x


def _labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels).ravel()
    if len(y) != n:
        raise ArtifactError(f"expected {n} labels (one per embedding row), found {len(y)}")
    return y


def _logreg(c: float, seed: int, max_iter: int, tol: float) -> LogisticRegression:
    # lbfgs with the default L2 penalty is multinomial whenever there are > 2 classes.
    return LogisticRegression(C=c, solver="lbfgs", max_iter=max_iter, tol=tol, random_state=seed)


def _fit(
    model: LogisticRegression, x: np.ndarray, y: np.ndarray, *, blas_threads: int | None = None
) -> LogisticRegression:
    """Fit with BLAS on ``blas_threads`` (default :data:`BLAS_THREADS`); log a capped fit."""
    threads = BLAS_THREADS if blas_threads is None else blas_threads
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(threads, "blas"):
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.info(
            "probe C=%g stopped at max_iter=%d (capped, see module doc)", model.C, model.max_iter
        )
    return model


def _holdout_split(
    x: np.ndarray, y: np.ndarray, *, seed: int, val_fraction: float, max_samples: int
) -> tuple[np.ndarray, ...] | str:
    """Stratified train/val split for choosing C, or the reason why there is none."""
    classes, counts = np.unique(y, return_counts=True)
    n_val = round(min(len(y), max_samples) * val_fraction)
    if counts.min() < 2 or n_val < len(classes) or len(y) - n_val < len(classes):
        return (
            f"no held-out selection (n={len(y)}, {len(classes)} classes, smallest class "
            f"{counts.min()}): C={DEFAULT_C}"
        )
    if len(y) > max_samples:  # stratified subsample keeps selection cheap on 50k rows
        x, _, y, _ = train_test_split(x, y, train_size=max_samples, stratify=y, random_state=seed)
        if np.unique(y, return_counts=True)[1].min() < 2:
            return f"subsample of {max_samples} too small to stratify: C={DEFAULT_C}"
    return tuple(train_test_split(x, y, test_size=n_val, stratify=y, random_state=seed))


def _select_c(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int,
    cs: Sequence[float],
    split: tuple,
    max_iter: int,
    tol: float,
    blas_threads: int | None = None,
) -> tuple[float, dict[float, float]]:
    """Held-out accuracy for each C (strong → weak, warm-started); best C, ties → smaller."""
    x_tr, x_val, y_tr, y_val = split
    scaler = StandardScaler().fit(x_tr)
    x_tr, x_val = scaler.transform(x_tr), scaler.transform(x_val)
    model = _logreg(cs[0], seed, max_iter, tol)
    model.warm_start = True
    scores: dict[float, float] = {}
    for c in sorted(cs):
        model.C = c
        _fit(model, x_tr, y_tr, blas_threads=blas_threads)
        scores[float(c)] = float(np.mean(model.predict(x_val) == y_val))
    best = max(scores, key=lambda c: (scores[c], -c))
    return best, scores


def fit_probe(
    train_emb: np.ndarray,
    train_labels: np.ndarray,
    *,
    seed: int = 0,
    Cs: Sequence[float] = DEFAULT_CS,
    max_iter: int = 300,
    tol: float = 1e-4,
    val_fraction: float = 0.2,
    select_max_samples: int = 10_000,
    blas_threads: int | None = None,
) -> Probe:
    """Fit the linear probe on clean train embeddings, choosing C on held-out train.

    Tiny training sets (a class with a single sample, fewer held-out rows than classes)
    skip the selection and use C = 1.0; ``Probe.selection_note`` records why.
    ``blas_threads`` overrides :data:`BLAS_THREADS` (benchmarks compare the two).
    """
    x = _features(train_emb, "train embeddings")
    y = _labels(train_labels, len(x))
    if len(np.unique(y)) < 2:
        raise ArtifactError("train labels hold a single class; a probe needs at least two")
    if not Cs:
        raise ValueError("Cs must name at least one regularisation strength")
    split = _holdout_split(
        x, y, seed=seed, val_fraction=val_fraction, max_samples=select_max_samples
    )
    if isinstance(split, str):
        best, scores, note = DEFAULT_C, {}, split
    else:
        best, scores = _select_c(
            x,
            y,
            seed=seed,
            cs=Cs,
            split=split,
            max_iter=max_iter,
            tol=tol,
            blas_threads=blas_threads,
        )
        note = f"C chosen on {len(split[3])} held-out train rows"
    scaler = StandardScaler().fit(x)
    model = _fit(
        _logreg(best, seed, max_iter, tol), scaler.transform(x), y, blas_threads=blas_threads
    )
    log.info("probe: %s; C=%g; scores=%s", note, best, scores)
    return Probe(scaler=scaler, model=model, C=best, selection=scores, selection_note=note)


KNN_BLOCK_ELEMENTS = 1 << 22  # test-chunk × train similarities held at once (32 MB float64)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm, floored at 1e-12 like ``F.normalize`` (DINO)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _top_k(sim: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest entries per row; ties go to the lower index.

    ``argpartition`` is fast but picks arbitrarily among equal values at the k-th place;
    rows where such a tie exists are redone with a stable sort, so the result never
    depends on the partition algorithm.
    """
    if k >= sim.shape[1]:
        return np.broadcast_to(np.arange(sim.shape[1]), sim.shape)
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(sim, top, axis=1).min(axis=1, keepdims=True)
    tied = np.flatnonzero((sim >= kth).sum(axis=1) > k)
    if tied.size:
        top[tied] = np.argsort(-sim[tied], axis=1, kind="stable")[:, :k]
    return top


def knn_accuracy(
    train: np.ndarray,
    train_labels: np.ndarray,
    test: np.ndarray,
    test_labels: np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Weighted k-nearest-neighbour accuracy (DINO / solo-learn), a fraction in [0, 1].

    Rows are L2-normalised; each test row takes its k train rows of highest cosine
    similarity, each votes exp(sim/T) for its class, and the class with the most weight
    wins. Fewer hyperparameters than a linear probe and no fitting, so SSL papers report
    both. Rows, similarities and votes are float64, unlike DINO's float32: a teacher
    that maps every image into a narrow cone (timm's random-init DINOv2: pairwise cosines
    ≥ 0.9999999) has neighbours whose cosines differ in the 8th digit, which float32
    rounds into ties (kNN-20 read 0.15 there; 0.89 in float64). It doubles the cost of
    the N_test × N_train product, which stays small beside the probe's fit. Test rows are
    processed in chunks of at most :data:`KNN_BLOCK_ELEMENTS` similarities, so memory is
    bounded.
    Deterministic: neighbour ties go to the lower train index, vote ties to the smaller
    class label. ``k`` larger than the train set is clipped to it (every train row votes).
    """
    xtr = _unit_rows(_features(train, "kNN train embeddings").astype(np.float64))
    xte = _unit_rows(_features(test, "kNN test embeddings").astype(np.float64))
    ytr, yte = _labels(train_labels, len(xtr)), _labels(test_labels, len(xte))
    if xtr.shape[1] != xte.shape[1]:
        raise ArtifactError(f"kNN: train rows are {xtr.shape[1]}-d, test rows {xte.shape[1]}-d")
    if k < 1 or temperature <= 0:
        raise ValueError(f"kNN needs k ≥ 1 and temperature > 0, got k={k}, T={temperature}")
    if len(xtr) == 0 or len(xte) == 0:
        raise ArtifactError("kNN: train and test embeddings must each hold at least one row")
    classes, ytr_idx = np.unique(ytr, return_inverse=True)
    k = min(k, len(xtr))
    chunk = max(1, KNN_BLOCK_ELEMENTS // len(xtr))
    correct = 0
    for start in range(0, len(xte), chunk):
        sim = xte[start : start + chunk] @ xtr.T
        top = _top_k(sim, k)
        weights = np.exp(np.take_along_axis(sim, top, axis=1) / temperature)
        votes = np.zeros((len(sim), len(classes)))
        np.add.at(votes, (np.arange(len(sim))[:, None], ytr_idx[top]), weights)
        pred = classes[np.argmax(votes, axis=1)]  # argmax: first (smallest) class on ties
        correct += int(np.sum(pred == yte[start : start + chunk]))
    return correct / len(xte)


def noise_accuracy(
    probe: Probe,
    noisy_test: np.ndarray | Sequence[np.ndarray],
    labels: np.ndarray,
    sigmas: Sequence[float],
) -> pd.DataFrame:
    """Accuracy of one clean-fitted probe on test embeddings at every noise level.

    ``noisy_test`` is S×N×D (or a sequence of S N×D matrices): row block s holds the test
    embeddings of images corrupted with ``sigmas[s]`` (σ = 0 → clean accuracy).
    Returns columns ``sigma`` (float) and ``accuracy`` (fraction in [0, 1]).
    """
    blocks = list(noisy_test)
    if len(blocks) != len(sigmas):
        raise ArtifactError(
            f"got {len(blocks)} noisy embedding blocks but {len(sigmas)} sigmas; expected one each"
        )
    acc = [probe.accuracy(block, labels) for block in blocks]
    return pd.DataFrame({"sigma": np.asarray(sigmas, dtype=np.float64), "accuracy": acc})
