"""The statistics and the decision rule behind every claims verdict.

A claim is judged on per-seed values: the two arms of a difference share the seed (same
initialisation and data order), the per-seed differences (or ratios) are the sample, and
the interval is Student's t over seeds (:func:`t_interval`). A verdict says where that
interval lies against the claim's threshold (:func:`verdict_above`, :func:`verdict_below`,
:func:`verdict_inside`). :data:`DECISION_RULE` states the rule for readers of claims.md
(written there verbatim); its numbers are the module constants above it, so the text and
the code cannot drift apart. The claims themselves are in :mod:`kdspectra.paper.claims`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

VERDICTS = ("holds", "fails", "inconclusive", "not tested")

CONFIDENCE = 0.95
FAR_BELOW_RATIO = 0.5  # "far below": student/teacher ER ratio CI entirely below this
FLAT_TOLERANCE = 0.10  # "flat": every pairwise S/M/L gap within ±10 % of their mean ER
GAIN_TARGET = 2.4  # "gain ≈ 2.4": ratio CI inside [2.4 / 1.25, 2.4 · 1.25]
GAIN_FACTOR = 1.25

DECISION_RULE = f"""\
**Decision rule.** Differences and ratios are paired across seeds (same seed in both
arms); [ci_low, ci_high] is the {100 * CONFIDENCE:.0f} % Student-t interval of the mean of
the per-seed values. A claim *holds* when the whole interval lies on the claimed side,
*fails* when the whole interval lies on the other side, and is *inconclusive* otherwise,
and always with one seed (no interval). *not tested*: the run lacks the claim's inputs.

- "far below the teacher": per-seed student ER / teacher ER;
  holds if ci_high < {FAR_BELOW_RATIO}, fails if ci_low ≥ {FAR_BELOW_RATIO}.
- "flat over S/M/L": each pairwise paired gap between the CNN students, divided by the
  mean of their mean ERs; holds if every interval lies inside ±{FLAT_TOLERANCE:.2f},
  fails if one lies wholly outside it. Reported: (max − min) / mean of the means, with
  the interval of the widest pair.
- "ablation students ≤ CNN": paired gap ER(student) − ER(CNN); holds if ci_high ≤ 0.
- "InfoNCE raises ER": paired gap ER(cosine + InfoNCE) − ER(cosine); holds if ci_low > 0.
- "gain ≈ {GAIN_TARGET}": per seed, mean InfoNCE ER over the CNN students / their mean
  cosine ER; holds if the interval lies inside
  [{GAIN_TARGET / GAIN_FACTOR:.2f}, {GAIN_TARGET * GAIN_FACTOR:.2f}] (a factor {GAIN_FACTOR}
  either way), fails if it lies wholly outside.
- "DINOv2 > CLIP": paired gap of the mean cosine ER over the CNN students between the two
  experiments (they also differ in dataset, as in the paper); holds if ci_low > 0.
- "0.5M beats 8M at the highest σ": paired gap in linear-probe accuracy (percentage
  points) of the InfoNCE students at the highest σ of the run; holds if ci_low > 0.

Rows whose claim ends in "(RankMe)" apply the same rules to RankMe (Garrido et al. 2023,
the entropy of the *uncentred* singular values, the number SSL papers report) in place of
ER. The paper used entropy ER; these rows say whether a verdict depends on that choice.

The *paper* column is the paper's value of the quantity where it reports one (it
reports raw ER only, so L2-row and RankMe rows have none)."""


@dataclass(frozen=True)
class Estimate:
    """Mean of per-seed values with its t-interval (NaN bounds for fewer than 2 seeds)."""

    mean: float
    low: float
    high: float
    n: int


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Student-t interval of the mean of ``values`` (one value per seed)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if v.size < 2:
        return Estimate(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Estimate(mean, mean - half, mean + half, int(v.size))


def verdict_inside(est: Estimate, lo: float, hi: float) -> str:
    """holds if the interval lies in [lo, hi], fails if wholly outside it."""
    if est.n < 2 or math.isnan(est.low):
        return "inconclusive"
    if lo <= est.low and est.high <= hi:
        return "holds"
    if est.high < lo or est.low > hi:
        return "fails"
    return "inconclusive"


def verdict_above(est: Estimate, threshold: float, strict: bool = True) -> str:
    """holds if the whole interval is above ``threshold`` (or at it, when not strict)."""
    if est.n < 2 or math.isnan(est.low):
        return "inconclusive"
    if est.low > threshold or (not strict and est.low >= threshold):
        return "holds"
    if est.high < threshold or (strict and est.high <= threshold):
        return "fails"
    return "inconclusive"


def verdict_below(est: Estimate, threshold: float, strict: bool = True) -> str:
    """holds if the whole interval is below ``threshold`` (or at it, when not strict)."""
    flipped = Estimate(-est.mean, -est.high, -est.low, est.n)
    return verdict_above(flipped, -threshold, strict)


def verdict_all(verdicts: Sequence[str]) -> str:
    """One verdict for a claim judged on several intervals: fails if one fails, holds if
    all hold, inconclusive otherwise."""
    if "fails" in verdicts:
        return "fails"
    return "holds" if set(verdicts) == {"holds"} else "inconclusive"


def paired(a: pd.Series, b: pd.Series) -> pd.DataFrame:
    """The seeds both arms ran, as columns ``a`` and ``b``."""
    return pd.concat({"a": a, "b": b}, axis=1, join="inner")
