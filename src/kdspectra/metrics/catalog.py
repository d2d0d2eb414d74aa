"""The metric catalog: one entry per geometry metric, everything else is derived from it.

A metric used to be spelled out in five places (its key in :mod:`~kdspectra.metrics.geometry`,
its table header and decimals in :mod:`kdspectra.report.render`, its help line in
:mod:`kdspectra.cli`, and the spectrum stage's list of summary columns). Here each is one
frozen :class:`Metric`; the geometry table's columns (:data:`REPORTED_METRICS`), the
spectrum JSON's keys, the headers, decimals and help text are read from
:data:`METRICS`, and the summary's column order is derived from
it in :mod:`kdspectra.report.columns`. Like timm's model registry, the catalog sits next to
what it registers and imports nothing heavy (common.smk reads it at parse time).

Adding a metric
    1. write its function in :mod:`kdspectra.metrics.geometry` and one line in
       :func:`~kdspectra.metrics.geometry.geometry_metrics` that stores it under ``name``
       (inside the ``labels``/``reference`` branch if it ``needs`` one);
    2. add one :class:`Metric` to :data:`METRICS`, where reports should show it.
    The spectrum JSON, ``summary.parquet`` (appended after the existing columns), the
    geometry table, Markdown/LaTeX headers and ``kdspectra geometry`` pick it up; the test
    ``tests/test_catalog.py`` fails until both halves exist. A number the spectrum *stage*
    computes itself (``source="stage"``) is added to ``measure_model``'s spectrum stats instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BY_COLUMN",
    "BY_NAME",
    "METRICS",
    "REPORTED_METRICS",
    "Metric",
]

Direction = Literal["higher", "lower"]
Need = Literal["labels", "reference"]
Source = Literal["geometry", "stage"]


@dataclass(frozen=True)
class Metric:
    """One metric of an embedding matrix, as every layer that shows it needs to know it.

    ``name``: its key in :func:`~kdspectra.metrics.geometry.geometry_metrics` (and on the
    ``kdspectra geometry`` command line). ``column``: its key in the spectrum JSON and the
    run summary when the pipeline names it differently (the pipeline's reference is always
    the teacher: ``cos_to_reference`` becomes ``cos_to_teacher``). ``label``/``decimals``:
    the Markdown/LaTeX header and fixed decimals (None: an integer or count, shown as it
    is). ``help``: the CLI's one-line definition. ``direction``: whether a *higher* or
    *lower* value means a more spread-out embedding (None: not a spread measure, e.g. a fit
    quality or a count). ``needs``: the extra input without which it is not computed
    (test labels, a row-paired reference matrix). ``source``: who computes it,
    ``geometry_metrics`` or the spectrum stage alone (it needs the architecture or the
    Roy–Vetterli variant). ``diagnostic``: it records a choice another metric made (how
    many points a fit used), so tables leave it out. ``summary``: carried from the
    spectrum JSON into ``summary.parquet``.
    """

    name: str
    label: str
    help: str
    decimals: int | None
    direction: Direction | None
    needs: Need | None = None
    source: Source = "geometry"
    diagnostic: bool = False
    summary: bool = True
    alias: str | None = None

    @property
    def column(self) -> str:
        """The metric's key in the spectrum JSON and column in ``summary.parquet``."""
        return self.alias or self.name


# In the order reports and ``kdspectra geometry`` show them: the paper's ER (raw, then the
# pipeline's variants), the spectrum-shape metrics, uniformity, then the ones that need
# labels or a reference.
METRICS: tuple[Metric, ...] = (
    Metric(
        "effective_rank",
        "ER (raw, paper)",
        "entropy effective rank, p ∝ σ² of the centred matrix (paper Eq. 3)",
        2,
        "higher",
    ),
    Metric(
        "effective_rank_rv",
        "Effective rank (Roy–Vetterli)",
        "effective rank with p ∝ σ (Roy & Vetterli 2007), labelled as such",
        2,
        "higher",
        source="stage",
    ),
    Metric(
        "effective_rank_l2",
        "ER (L2 rows)",
        "the same after L2-normalising rows (directions only)",
        2,
        "higher",
    ),
    Metric(
        "norm_cv",
        "Norm CV",
        "std/mean of the row norms (what separates raw from L2-row ER)",
        3,
        None,
        source="stage",
    ),
    Metric(
        "rank_ceiling",
        "Rank ceiling",
        "largest centred rank the model allows: min(feature width, N − 1, D)",
        None,
        None,
        source="stage",
    ),
    Metric(
        "rankme",
        "RankMe",
        "RankMe: p = σ/‖σ‖₁ of the uncentred matrix (Garrido 2023)",
        2,
        "higher",
    ),
    Metric("participation_ratio", "Participation ratio", "(Σλ)²/Σλ², λ = σ² centred", 2, "higher"),
    Metric(
        "stable_rank",
        "Stable rank",
        "Σλ/λ₁: variance in units of the top direction's",
        2,
        "higher",
    ),
    Metric(
        "alpha_req",
        "α-ReQ",
        "α-ReQ: λ_i ∝ i^−α, OLS over the fit range (Agrawal 2022)",
        3,
        "lower",
    ),
    Metric("alpha_req_r2", "α-ReQ R²", "R² of that power-law fit", 3, None),
    Metric(
        "alpha_req_points",
        "α-ReQ points",
        "eigenvalues inside the fit range (α is NaN below 2)",
        None,
        None,
        diagnostic=True,
        summary=False,
    ),
    Metric(
        "uniformity",
        "Uniformity",
        "ln mean exp(−2‖u_i−u_j‖²), u = unit rows (Wang & Isola 2020)",
        3,
        "lower",
    ),
    Metric(
        "uniformity_subsample",
        "Uniformity subsample",
        "rows subsampled for uniformity (none: exact)",
        None,
        None,
        diagnostic=True,
    ),
    Metric(
        "per_class_effective_rank",
        "Per-class ER",
        "mean effective rank within classes of ≥ 2 rows",
        2,
        "higher",
        needs="labels",
    ),
    Metric(
        "linear_cka",
        "CKA to teacher",
        "linear CKA to the reference (Kornblith 2019)",
        3,
        None,
        needs="reference",
    ),
    Metric(
        "cos_to_reference",
        "cos to teacher",
        "mean cosine of row i to reference row i",
        3,
        None,
        needs="reference",
        alias="cos_to_teacher",
    ),
    # The guards (kdspectra.metrics.sanity, docs/design.md "Guards"), computed by the
    # spectrum stage: whether the rows are a narrow cone (a teacher that is one is
    # degenerate), and whether a student learned more than its teacher's mean direction.
    Metric(
        "mean_pairwise_cosine",
        "Mean pairwise cos",
        "mean cosine over all pairs of rows (1: every row points the same way)",
        3,
        None,
        source="stage",
    ),
    Metric(
        "centred_energy_share",
        "Centred share",
        "‖X − μ‖²_F / ‖X‖²_F: the energy the centred metrics see (< 0.05: degenerate)",
        4,
        None,
        source="stage",
    ),
    Metric(
        "chance_accuracy",
        "Chance",
        "accuracy of always predicting the most frequent test class",
        3,
        None,
        needs="labels",
        source="stage",
    ),
    Metric(
        "constant_cosine",
        "c0 (mean direction)",
        "mean cosine of the teacher's normalised train mean to its test rows",
        3,
        None,
        source="stage",
    ),
    Metric(
        "fidelity_gain",
        "Fidelity gain",
        "(cos to teacher − c0)/(1 − c0): 0 = no better than the teacher's mean direction",
        3,
        None,
        needs="reference",
        source="stage",
    ),
)

BY_NAME = {m.name: m for m in METRICS}  # geometry_metrics / CLI key → entry
BY_COLUMN = {m.column: m for m in METRICS}  # spectrum JSON / summary column → entry

# The geometry table's metrics (summary column names), in catalog order: what
# geometry_metrics measures, without the stage's own numbers and the diagnostics.
REPORTED_METRICS = tuple(m.column for m in METRICS if m.source == "geometry" and not m.diagnostic)
