"""The tests behind every claims verdict: t-tests over seeds, TOST and Holm's correction.

A claim compares per-seed values. Within one experiment the two arms of a difference share
the seed (same initialisation, same data order), so the difference is *paired* (Student t on
the per-seed differences, :func:`paired`). Across experiments nothing is shared, so the
difference is *unpaired* with unequal variances (Welch, :func:`welch`). A single sample
(a per-seed ratio, a level) is :func:`one_sample`. Each returns a :class:`Sample`: the mean
difference, its standard error and degrees of freedom, from which :func:`interval`,
:func:`p_two_sided` and :func:`p_tost` (two one-sided tests against an equivalence band)
follow by the same formulas scipy uses (``ttest_rel``, ``ttest_ind(equal_var=False)``,
``ttest_1samp``; the tests check them against scipy). :func:`holm` adjusts a family of
p-values (Holm 1979, step-down Bonferroni).

A sample whose values do not vary (standard error 0, e.g. a synthetic fixture) has a
zero-width interval and p = 0 unless its mean equals the null value (p = 1), where scipy
would return NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ALPHA = 0.05  # every test's level: 95 % two-sided intervals, 90 % intervals for TOST
PAIRED, WELCH, ONE_SAMPLE = "paired t", "Welch t", "one-sample t"


@dataclass(frozen=True)
class Sample:
    """A mean (or mean difference) with its standard error and t degrees of freedom.

    ``n`` is the number of seeds (the smaller arm for Welch); ``test`` names the test
    (:data:`PAIRED`, :data:`WELCH`, :data:`ONE_SAMPLE`). ``se`` and ``df`` are NaN with
    fewer than 2 seeds per arm: no interval, no test."""

    mean: float
    se: float
    df: float
    n: int
    test: str

    @property
    def testable(self) -> bool:
        return self.n >= 2 and not math.isnan(self.se)


def _sample(values: np.ndarray, test: str) -> Sample:
    if values.size == 0:
        return Sample(math.nan, math.nan, math.nan, 0, test)
    mean = float(values.mean())
    if values.size < 2:
        return Sample(mean, math.nan, math.nan, int(values.size), test)
    se = float(values.std(ddof=1) / math.sqrt(values.size))
    return Sample(mean, se, float(values.size - 1), int(values.size), test)


def one_sample(values: Sequence[float] | pd.Series) -> Sample:
    """The mean of one value per seed (a ratio, a level)."""
    return _sample(np.asarray(values, dtype=np.float64), ONE_SAMPLE)


def align(a: pd.Series, b: pd.Series) -> pd.DataFrame:
    """The seeds both arms ran, as columns ``a`` and ``b`` (index: seed)."""
    return pd.concat({"a": a, "b": b}, axis=1, join="inner").dropna()


def paired(a: pd.Series, b: pd.Series) -> Sample:
    """b − a paired by seed (both indexed by seed): Student t on the per-seed differences,
    as ``scipy.stats.ttest_rel(b, a)``."""
    both = align(a, b)
    return _sample((both["b"] - both["a"]).to_numpy(dtype=np.float64), PAIRED)


def welch(a: Sequence[float] | pd.Series, b: Sequence[float] | pd.Series) -> Sample:
    """b − a unpaired with unequal variances (Welch–Satterthwaite degrees of freedom), as
    ``scipy.stats.ttest_ind(b, a, equal_var=False)``."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = int(min(x.size, y.size))
    if n == 0:
        return Sample(math.nan, math.nan, math.nan, 0, WELCH)
    mean = float(y.mean() - x.mean())
    if n < 2:
        return Sample(mean, math.nan, math.nan, n, WELCH)
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = float(math.sqrt(vx + vy))
    if se == 0:
        return Sample(mean, 0.0, float(x.size + y.size - 2), n, WELCH)
    df = float((vx + vy) ** 2 / (vx**2 / (x.size - 1) + vy**2 / (y.size - 1)))
    return Sample(mean, se, df, n, WELCH)


def interval(s: Sample, confidence: float = 1 - ALPHA) -> tuple[float, float]:
    """Two-sided t interval of the mean at ``confidence`` (NaN bounds when untestable)."""
    from scipy import stats

    if not s.testable:
        return math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, s.df)) * s.se
    return s.mean - half, s.mean + half


def _p_one_sided(s: Sample, null: float, side: str) -> float:
    """p of H0: mean ≤ null (``side = "greater"``) or mean ≥ null (``"less"``)."""
    from scipy import stats

    if not s.testable:
        return math.nan
    diff = s.mean - null if side == "greater" else null - s.mean
    if s.se == 0:
        return 0.0 if diff > 0 else 1.0
    return float(stats.t.sf(diff / s.se, s.df))


def p_two_sided(s: Sample, null: float = 0.0) -> float:
    """Two-sided p of H0: mean = ``null``."""
    if not s.testable:
        return math.nan
    if s.se == 0:
        return 1.0 if s.mean == null else 0.0
    return min(1.0, 2 * min(_p_one_sided(s, null, "greater"), _p_one_sided(s, null, "less")))


def p_tost(s: Sample, low: float, high: float) -> float:
    """TOST p of equivalence (Schuirmann 1987): the larger of the two one-sided p-values
    of H0: mean ≤ ``low`` and H0: mean ≥ ``high``. p < α exactly when the (1 − 2α)
    interval lies inside [low, high]."""
    if not s.testable:
        return math.nan
    return max(_p_one_sided(s, low, "greater"), _p_one_sided(s, high, "less"))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order; NaNs stay NaN and are not
    counted in the family. The k-th smallest of m p-values is multiplied by m − k + 1,
    capped at 1 and made monotone (never below the previous adjusted value)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(~np.isnan(p))
    order = idx[np.argsort(p[idx], kind="stable")]
    running, m = 0.0, len(order)
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out.tolist()
