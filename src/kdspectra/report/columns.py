"""Column contracts of the run's long artifacts: ``summary.parquet``, ``noise.parquet`` and
``corruptions.parquet`` (schemas in ``docs/architecture.md``).

The stages that write these files (:mod:`kdspectra.stages.evaluate`,
:mod:`kdspectra.stages.corruptions`) and the tables that read them
(:mod:`kdspectra.report.tables`, :mod:`kdspectra.paper.comparison`) import their columns
from here, so writer and reader cannot drift apart. Pure names and string rules: nothing
here reads a file.

Row keys. Every row says which experiment (:data:`RUN_KEYS`) and which model
(:data:`MODEL_COLUMNS`, from :func:`model_keys`) it belongs to.

``summary.parquet``: one row per experiment × model × seed: the row keys, ``params``,
:data:`SPECTRUM_KEYS` (copied from the model's spectrum JSON) and the clean accuracies
(``clean_accuracy`` and one ``clean_knn<k>_accuracy`` per configured k).
``noise.parquet``: the row keys, ``sigma``, ``accuracy`` and the ``knn<k>_accuracy``
columns (:func:`noise_columns`). ``corruptions.parquet``: :data:`CORRUPTION_COLUMNS`
then the other kNN columns and ``knn_k`` (:func:`corruption_columns`).

Adding a column
    - a geometry metric: add it to :data:`kdspectra.metrics.catalog.METRICS`; it is
      appended to :data:`SPECTRUM_KEYS` (the summary's existing columns keep their order,
      so older readers and byte-for-byte comparisons of old runs are unaffected);
      a number the spectrum stage computes itself (e.g. a teacher-sanity or fidelity
      measure) is a catalog entry too, with ``source="stage"``: it then has a header,
      decimals and a place in the summary like any metric;
    - a column every table needs: add it to :data:`SUMMARY_COLUMNS` (the tables then
      refuse summaries that lack it, naming it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from kdspectra.metrics.catalog import METRICS
from kdspectra.registry import TEACHER_MODEL, ModelId

__all__ = [
    "CORRUPTION_COLUMNS",
    "MODEL_COLUMNS",
    "NOISE_COLUMNS",
    "RUN_KEYS",
    "SPECTRUM_KEYS",
    "SUMMARY_COLUMNS",
    "accuracy_columns",
    "clean_accuracy_columns",
    "clean_column",
    "corruption_columns",
    "is_knn_column",
    "knn_columns",
    "model_keys",
    "noise_columns",
]

# Which experiment a row belongs to; model_keys() adds which model it is.
RUN_KEYS = ("experiment", "dataset", "teacher")
MODEL_COLUMNS = ("role", "student", "objective", "seed")


def model_keys(model: str) -> dict[str, Any]:
    """``teacher`` or a model id (:class:`kdspectra.registry.ModelId`) → the
    :data:`MODEL_COLUMNS` of its rows (a teacher has seed -1 and no student/objective)."""
    if model == TEACHER_MODEL:
        return {"role": "teacher", "student": "", "objective": "", "seed": -1}
    mid = ModelId.parse(model)
    return {"role": "student", "student": mid.student, "objective": mid.objective, "seed": mid.seed}


# -- kNN accuracy columns ----------------------------------------------------------------


def knn_columns(ks: Iterable[int]) -> dict[int, str]:
    """k → the column of that kNN's accuracy (``knn20_accuracy``)."""
    return {int(k): f"knn{int(k)}_accuracy" for k in ks}


def is_knn_column(column: str) -> bool:
    """A ``knn<k>_accuracy`` column (see :func:`knn_columns`); not ``knn_accuracy``."""
    k = column.removeprefix("knn").removesuffix("_accuracy")
    return column.startswith("knn") and column.endswith("_accuracy") and k.isdigit()


def accuracy_columns(columns: Iterable[str]) -> list[str]:
    """The probe's ``accuracy`` and every kNN accuracy among a noise curve's ``columns``."""
    return ["accuracy", *(c for c in columns if is_knn_column(c))]


def clean_column(column: str) -> str:
    """The summary's column of an accuracy at σ = 0 (``accuracy`` → ``clean_accuracy``)."""
    return f"clean_{column}"


def clean_accuracy_columns(columns: Iterable[str]) -> list[str]:
    """The clean accuracies among a summary's ``columns``: the probe's, then every kNN's."""
    knn = [c for c in columns if c.startswith("clean_") and is_knn_column(c[len("clean_") :])]
    return [clean_column("accuracy"), *knn]


# -- summary.parquet ---------------------------------------------------------------------

# The summary's spectrum columns before the catalog existed, in their order (frozen: new
# metrics append after them). The spectrum JSON's non-catalog keys (n, dim, alpha_req_fit)
# stay out of the summary.
_SPECTRUM_ORDER_V1 = (
    "effective_rank",
    "effective_rank_rv",
    "effective_rank_l2",
    "norm_cv",
    "rank_ceiling",
    "cos_to_teacher",
    "linear_cka",
    "per_class_effective_rank",
    "rankme",
    "participation_ratio",
    "stable_rank",
    "alpha_req",
    "alpha_req_r2",
    "uniformity",
    "uniformity_subsample",
)


def _spectrum_keys() -> tuple[str, ...]:
    """The catalog's summary columns, the frozen ones first in their old order."""
    new = [m.column for m in METRICS if m.summary and m.column not in _SPECTRUM_ORDER_V1]
    return (*_SPECTRUM_ORDER_V1, *new)


# What the spectrum stage writes and collect carries from each spectrum JSON into the
# summary, in column order.
SPECTRUM_KEYS = _spectrum_keys()

# The summary columns every table and figure needs (a summary without them is refused).
SUMMARY_COLUMNS = (
    *RUN_KEYS,
    *MODEL_COLUMNS,
    "params",
    "effective_rank",
    "effective_rank_l2",
    "norm_cv",
    "rank_ceiling",
    "cos_to_teacher",
)


# -- noise.parquet and corruptions.parquet -----------------------------------------------

# The noise columns the tables need (noise_columns() adds dataset, teacher and kNN columns).
NOISE_COLUMNS = ("experiment", *MODEL_COLUMNS, "sigma", "accuracy")


def noise_columns(columns: Iterable[str]) -> list[str]:
    """``noise.parquet``'s columns, in order, given those of the gathered curves."""
    knn = [c for c in columns if is_knn_column(c)]
    return [*RUN_KEYS, *MODEL_COLUMNS, "sigma", "accuracy", *knn]


# Every corruptions.parquet has these first; knn_accuracy is the first configured k's.
CORRUPTION_COLUMNS = (
    "experiment",
    *MODEL_COLUMNS,
    "corruption",
    "severity",
    "accuracy",
    "knn_accuracy",
)


def corruption_columns(columns: Sequence[str]) -> list[str]:
    """``corruptions.parquet``'s columns, in order, given those of the gathered frames:
    :data:`CORRUPTION_COLUMNS`, then every ``knn<k>_accuracy`` and ``knn_k``."""
    extra = [c for c in columns if is_knn_column(c) or c == "knn_k"]
    return [*CORRUPTION_COLUMNS, *extra]
