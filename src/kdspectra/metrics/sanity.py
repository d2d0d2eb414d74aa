"""Guards: is a teacher a real teacher, and did a student learn more than its mean direction?

A verdict about distillation needs both. Two failure modes were found in the offline demo
(docs/design.md "Guards"):

- a *degenerate teacher*: timm's random-init DINOv2 (LayerScale 1e-5) maps every image to
  nearly the same vector (pairwise cosine ≥ 0.9999999, 2e-8 of the energy left after
  centring), yet its effective rank and probe accuracy look ordinary, because both are
  blind to how small the centred part is;
- an *unlearned student*: against a narrow-cone teacher, predicting the teacher's mean
  direction already gives a high cosine, so ``cos_to_teacher`` alone cannot tell a student
  that learned from one that did not.

:func:`teacher_sanity` measures the first (mean pairwise cosine, the share of energy left
after centring, probe and kNN accuracy against chance, and the geometry beside them);
:func:`fidelity_gain` the second: the student's cosine to the teacher relative to the
constant predictor's, c0 = mean cos(normalise(mean of teacher train rows), teacher test
row), gain = (c − c0)/(1 − c0): 1 is a perfect fit, 0 no better than the mean direction,
below 0 worse. Everything is float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kdspectra.errors import ArtifactError
from kdspectra.metrics.spectrum import as_float64_matrix

__all__ = [
    "CENTRED_SHARE_MIN",
    "CHANCE_MARGIN",
    "centred_energy_share",
    "chance_accuracy",
    "constant_predictor_cosine",
    "degenerate_reasons",
    "fidelity_gain",
    "mean_pairwise_cosine",
    "teacher_sanity",
]

CENTRED_SHARE_MIN = 0.05  # below: the embedding is an offset plus a sliver of signal
CHANCE_MARGIN = 0.10  # accuracy within this of chance: the classes are not separated
_FLOOR = 1e-12  # norms below this count as zero (no division by zero)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _FLOOR)


def mean_pairwise_cosine(x: Any) -> float:
    """Mean cosine over all pairs i ≠ j of rows of ``x`` (N × D, N ≥ 2), in O(N·D).

    With u_i the unit rows, Σ_{i≠j} u_i·u_j = ‖Σ u_i‖² − Σ ‖u_i‖², so no N × N Gram is
    formed. 1 means every row points the same way (a cone of zero width); an isotropic
    cloud gives ≈ 0. A zero row counts as cosine 0 with everything.
    """
    u = _unit_rows(as_float64_matrix(x))
    n = len(u)
    if n < 2:
        raise ArtifactError(f"mean pairwise cosine needs at least 2 rows, found {n}")
    total = float(np.sum(u.sum(axis=0) ** 2) - np.sum(u * u))
    return total / (n * (n - 1))


def centred_energy_share(x: Any) -> float:
    """‖X − μ‖²_F / ‖X‖²_F: the share of the rows' energy that is not their common mean.

    Every centred metric (effective rank, probe) looks only at X − μ and rescales it, so
    a teacher whose share is 2e-8 still gets an ordinary ER; this number says how much
    of the embedding those metrics saw.
    """
    arr = as_float64_matrix(x)
    total = float(np.sum(arr * arr))
    if total <= 0:
        raise ArtifactError("centred energy share: every row is zero")
    centred = arr - arr.mean(axis=0, keepdims=True)
    return float(np.sum(centred * centred)) / total


def chance_accuracy(labels: Any) -> float:
    """The accuracy of always predicting the most frequent class of ``labels``."""
    y = np.asarray(labels).ravel()
    if y.size == 0:
        raise ArtifactError("chance accuracy: no labels")
    return float(np.unique(y, return_counts=True)[1].max() / y.size)


def degenerate_reasons(
    centred_share: float, accuracies: Mapping[str, float], chance: float
) -> list[str]:
    """Why a teacher is degenerate (empty: it is not).

    Degenerate when the centred share is below :data:`CENTRED_SHARE_MIN`, or any of
    ``accuracies`` (name → fraction, e.g. the linear probe's and the kNN's) is within
    :data:`CHANCE_MARGIN` of ``chance``. A NaN counts as failing, so a missing number
    cannot pass the guard.
    """
    reasons = []
    if not centred_share >= CENTRED_SHARE_MIN:
        reasons.append(f"centred energy share {centred_share:.2g} < {CENTRED_SHARE_MIN}")
    for name, acc in accuracies.items():
        if not acc >= chance + CHANCE_MARGIN:
            reasons.append(f"{name} {acc:.3f} within {CHANCE_MARGIN:.2f} of chance ({chance:.3f})")
    return reasons


def teacher_sanity(
    train: Any,
    train_labels: Any,
    test: Any,
    test_labels: Any,
    *,
    probe: Mapping[str, Any] | None = None,
    knn_k: int = 20,
    knn_temperature: float = 0.07,
) -> dict[str, Any]:
    """Every sanity number of one teacher on one dataset, and its ``degenerate`` flag.

    Geometry (mean pairwise cosine, centred share, ER, RankMe, uniformity) is of the test
    rows; the probe (``probe``: :func:`kdspectra.metrics.probe.fit_probe` keywords) and
    the weighted kNN-``knn_k`` are fitted/indexed on train and scored on test.
    """
    from kdspectra.metrics.geometry import rankme, uniformity
    from kdspectra.metrics.probe import fit_probe, knn_accuracy
    from kdspectra.metrics.spectrum import effective_rank

    fitted = fit_probe(train, train_labels, **dict(probe or {}))
    out: dict[str, Any] = {
        "mean_pairwise_cosine": mean_pairwise_cosine(test),
        "centred_energy_share": centred_energy_share(test),
        "linear_probe_accuracy": fitted.accuracy(test, test_labels),
        "probe_C": fitted.C,
        f"knn{knn_k}_accuracy": knn_accuracy(
            train, train_labels, test, test_labels, k=knn_k, temperature=knn_temperature
        ),
        "chance_accuracy": chance_accuracy(test_labels),
        "effective_rank_test": effective_rank(test),
        "rankme": rankme(test),
        "uniformity": uniformity(test),
    }
    accuracies = {
        "linear probe": out["linear_probe_accuracy"],
        f"kNN-{knn_k}": out[f"knn{knn_k}_accuracy"],
    }
    reasons = degenerate_reasons(out["centred_energy_share"], accuracies, out["chance_accuracy"])
    return out | {"degenerate": bool(reasons), "degenerate_reasons": reasons}


def constant_predictor_cosine(teacher_train: Any, teacher_test: Any) -> float:
    """c0: mean cosine of the L2-normalised mean of the teacher's train rows with each of
    its test rows — what a student that outputs one fixed vector achieves at best."""
    tr, te = as_float64_matrix(teacher_train), as_float64_matrix(teacher_test)
    if tr.shape[1] != te.shape[1]:
        raise ArtifactError(
            f"constant predictor: teacher train rows are {tr.shape[1]}-d, test rows {te.shape[1]}-d"
        )
    mean = tr.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm <= _FLOOR:
        return 0.0  # no mean direction: a fixed vector gets cosine 0 on average
    return float(np.mean(_unit_rows(te) @ (mean / norm)))


def fidelity_gain(student_test: Any, teacher_train: Any, teacher_test: Any) -> float:
    """(c − c0)/(1 − c0): the share of the gap between the constant predictor and a
    perfect fit that the student closed.

    c is the student's mean row-paired cosine to the teacher's test rows; c0 is
    :func:`constant_predictor_cosine`. NaN when c0 = 1 (a teacher with one direction
    leaves no gap to close).
    """
    from kdspectra.metrics.geometry import cos_to_teacher

    student, teacher = as_float64_matrix(student_test), as_float64_matrix(teacher_test)
    if student.shape != teacher.shape:
        raise ArtifactError(
            f"fidelity gain: student test embeddings {student.shape} and teacher test "
            f"embeddings {teacher.shape} must be row-paired with the same width"
        )
    c0 = constant_predictor_cosine(teacher_train, teacher)
    if c0 >= 1.0 - _FLOOR:
        return float("nan")
    return (cos_to_teacher(student, teacher) - c0) / (1.0 - c0)
