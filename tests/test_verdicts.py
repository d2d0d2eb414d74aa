"""The claims' statistics against scipy, Holm's ordering, and TOST at its margins."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kdspectra.paper import statistics as st

A = pd.Series([10.0, 12.5, 11.0, 13.2, 9.8], index=[0, 1, 2, 3, 4])
B = pd.Series([11.4, 13.1, 12.9, 14.0, 10.1], index=[0, 1, 2, 3, 4])


def test_paired_matches_scipy_ttest_rel() -> None:
    s = st.paired(A, B)
    ref = stats.ttest_rel(B, A)
    assert s.test == st.PAIRED and s.n == 5 and s.df == 4
    assert s.mean == pytest.approx((B - A).mean())
    assert st.p_two_sided(s) == pytest.approx(ref.pvalue)
    low, high = st.interval(s)
    ci = ref.confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high))


def test_paired_uses_only_the_shared_seeds() -> None:
    s = st.paired(A, B.drop(index=[3, 4]))
    ref = stats.ttest_rel(B.iloc[:3], A.iloc[:3])
    assert s.n == 3 and st.p_two_sided(s) == pytest.approx(ref.pvalue)


def test_welch_matches_scipy_ttest_ind_unequal_var() -> None:
    x, y = [5.0, 6.1, 5.5, 7.0], [8.0, 12.0, 9.5, 15.0, 11.0]
    s = st.welch(x, y)
    ref = stats.ttest_ind(y, x, equal_var=False)
    assert s.test == st.WELCH and s.n == 4
    assert s.df == pytest.approx(ref.df)
    assert st.p_two_sided(s) == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert st.interval(s) == pytest.approx((ci.low, ci.high))


def test_paired_and_welch_differ_on_seed_correlated_data() -> None:
    """Seeds move both arms by ±10: paired, the +1 shift is certain; Welch loses it."""
    a = pd.Series([0.0, 10.0, 20.0])
    b = a + pd.Series([1.0, 1.2, 0.9])
    assert st.p_two_sided(st.paired(a, b)) < 0.01
    assert st.p_two_sided(st.welch(a, b)) > 0.5


def test_one_sample_matches_scipy() -> None:
    v = [2.1, 2.5, 2.2, 2.9]
    s = st.one_sample(v)
    assert st.p_two_sided(s, 2.0) == pytest.approx(stats.ttest_1samp(v, 2.0).pvalue)


@pytest.mark.parametrize("test", ["paired", "welch"])
def test_tost_is_built_from_two_one_sided_scipy_tests(test: str) -> None:
    low, high = -2.0, 2.5
    if test == "paired":
        s = st.paired(A, B)
        p_lo = stats.ttest_rel(B - low, A, alternative="greater").pvalue
        p_hi = stats.ttest_rel(B - high, A, alternative="less").pvalue
    else:
        s = st.welch(A, B)
        p_lo = stats.ttest_ind(B - low, A, equal_var=False, alternative="greater").pvalue
        p_hi = stats.ttest_ind(B - high, A, equal_var=False, alternative="less").pvalue
    assert st.p_tost(s, low, high) == pytest.approx(max(p_lo, p_hi))


def test_tost_at_its_margins_equals_the_90_percent_interval() -> None:
    """p_TOST < 0.05 exactly when the 90 % interval lies inside the band."""
    s = st.paired(A, B)
    lo90, hi90 = st.interval(s, 0.90)
    eps = 1e-9
    assert st.p_tost(s, lo90 - eps, hi90 + eps) < 0.05
    assert st.p_tost(s, lo90 + eps, hi90 + 1.0) > 0.05
    assert st.p_tost(s, lo90 - 1.0, hi90 - eps) > 0.05
    assert st.p_tost(s, lo90, hi90) == pytest.approx(0.05)


def test_holm_matches_the_step_down_definition() -> None:
    p = [0.01, 0.04, 0.03, math.nan, 0.005]
    adj = st.holm(p)
    # sorted: 0.005 (×4), 0.01 (×3), 0.03 (×2), 0.04 (×1), monotone
    assert adj[4] == pytest.approx(0.02)
    assert adj[0] == pytest.approx(0.03)
    assert adj[2] == pytest.approx(0.06)
    assert adj[1] == pytest.approx(0.06)  # 0.04 × 1 raised to the previous 0.06
    assert math.isnan(adj[3])
    assert st.holm([0.5, 0.6]) == [1.0, 1.0]


def test_holm_keeps_the_order_of_significance() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, size=12)
    adj = np.asarray(st.holm(p))
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0)
    assert np.all(adj >= p)


def test_untestable_and_constant_samples() -> None:
    one = st.one_sample([3.0])
    assert one.n == 1 and not one.testable
    assert math.isnan(st.p_two_sided(one)) and math.isnan(st.interval(one)[0])
    assert st.one_sample([]).n == 0
    flat = st.paired(pd.Series([1.0, 2.0, 3.0]), pd.Series([2.0, 3.0, 4.0]))
    assert flat.se == 0 and st.interval(flat) == (1.0, 1.0)
    assert st.p_two_sided(flat) == 0.0 and st.p_two_sided(flat, 1.0) == 1.0
    assert st.p_tost(flat, 0.5, 1.5) == 0.0 and st.p_tost(flat, 1.5, 2.0) == 1.0
    assert st.welch([1.0], [2.0, 3.0]).n == 1
