"""Claims judged on synthetic summaries whose verdicts are known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from kdspectra.paper import claims, claims_markdown
from kdspectra.paper import verdicts as decision
from kdspectra.paper.verdicts import Estimate
from test_tables import RANDOM, make_noise, make_summary

OPTS = {"tables_experiment": "clip_x", "figures_experiment": "dino_x"}


def judged(summary: pd.DataFrame, noise: pd.DataFrame | None = None, **kw) -> pd.DataFrame:
    return claims.claims_frame(
        summary, make_noise((0, 1, 2)) if noise is None else noise, **(OPTS | kw)
    )


def verdicts(frame: pd.DataFrame, claim: str) -> dict[str, str]:
    rows = frame[frame["claim"] == claim]
    return dict(zip(rows["quantity"], rows["verdict"], strict=True))


def test_t_interval_closed_form() -> None:
    est = decision.t_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.302653
    assert est.mean == 2.0 and est.n == 3
    assert (est.low, est.high) == pytest.approx((2 - 4.302653 / 3**0.5, 2 + 4.302653 / 3**0.5))
    one = decision.t_interval([5.0])
    assert one.mean == 5.0 and one.n == 1 and math.isnan(one.low)


@pytest.mark.parametrize(
    ("low", "high", "n", "above", "below"),
    [(0.5, 2.0, 3, "holds", "fails"), (-2.0, -0.5, 3, "fails", "holds"),
     (-1.0, 1.0, 3, "inconclusive", "inconclusive"), (1.0, 1.0, 1, "inconclusive", "inconclusive")],
)  # fmt: skip
def test_one_sided_verdicts(low: float, high: float, n: int, above: str, below: str) -> None:
    est = Estimate((low + high) / 2, low if n > 1 else math.nan, high if n > 1 else math.nan, n)
    assert decision.verdict_above(est, 0.0) == above
    assert decision.verdict_below(est, 0.0) == below


def test_inside_verdicts() -> None:
    assert decision.verdict_inside(Estimate(2.2, 2.0, 2.4, 3), 1.92, 3.0) == "holds"
    assert decision.verdict_inside(Estimate(1.5, 1.4, 1.6, 3), 1.92, 3.0) == "fails"
    assert decision.verdict_inside(Estimate(1.9, 1.8, 2.0, 3), 1.92, 3.0) == "inconclusive"


def test_columns_and_every_er_claim_judged_on_both_variants() -> None:
    f = judged(make_summary((0, 1, 2)))
    assert list(f.columns[:8]) == list(claims.COLUMNS)
    assert set(f["verdict"]) <= set(decision.VERDICTS)
    for claim in set(f["claim"]) - {"0.5M beats 8M at the highest σ"}:
        quantities = f.loc[f["claim"] == claim, "quantity"]
        raw = quantities.str.endswith("raw ER").sum()
        assert raw >= 1 and raw == quantities.str.endswith("L2-row ER").sum(), claim
    assert (f["n_seeds"] == 3).all()


def test_verdicts_on_the_fixture() -> None:
    """Fixture: ER + seed, L2 ER = 2·ER + seed; the gaps between arms are seed-free."""
    f = judged(make_summary((0, 1, 2)))
    assert set(verdicts(f, "cosine ER ≪ teacher ER").values()) == {"holds"}  # ~0.18-0.36
    # S/M/L cosine means 16 / 17.5 / 18: the S-L gap is 2/17.2 = 11.6 % > 10 %
    assert set(verdicts(f, "cosine ER flat over S/M/L").values()) == {"fails"}
    assert set(verdicts(f, "ablation students ≤ CNN").values()) == {"holds"}
    nce = verdicts(f, "InfoNCE ER > cosine ER")
    assert len(nce) == 2 * 2 * 3  # (clip_x: S/M/L + dino_x: S/M/L) × both variants
    assert set(nce.values()) == {"holds"}
    gain = f[f["claim"] == "InfoNCE / cosine ER ≈ 2.4"].set_index("quantity")
    raw = gain.loc["mean over S/M/L, InfoNCE / cosine, raw ER"]
    ratios = [(110 / 3 + k) / (48.5 / 3 + k) for k in range(3)]
    assert raw["ours"] == pytest.approx(np.mean(ratios)) and raw["verdict"] == "holds"
    assert raw["paper"] == 2.4
    assert math.isnan(gain.loc["mean over S/M/L, InfoNCE / cosine, L2-row ER", "paper"])
    assert set(verdicts(f, "DINOv2 cosine ER > CLIP cosine ER").values()) == {"holds"}
    noise = f[f["claim"] == "0.5M beats 8M at the highest σ"].iloc[0]
    assert noise["ours"] == pytest.approx(20.0)  # (1.4 − 1.0) · 0.5 in percentage points
    assert noise["paper"] == pytest.approx(21.32 - 17.03) and noise["verdict"] == "holds"
    assert "σ = 0.5" in noise["quantity"]


def test_infonce_row_fails_for_the_one_student_it_lowers() -> None:
    s = make_summary((0, 1, 2))
    lower = (s["experiment"] == "clip_x") & (s["student"] == "cnn_m")
    lower &= s["objective"] == "cosine_infonce"
    s.loc[lower, "effective_rank"] = 10.0 + s.loc[lower, "seed"]  # below cosine's 16.5 + k
    nce = verdicts(judged(s), "InfoNCE ER > cosine ER")
    assert nce["Student-M (clip_x, CLIP), raw ER"] == "fails"
    assert nce["Student-S (clip_x, CLIP), raw ER"] == "holds"
    assert nce["Student-M (clip_x, CLIP), L2-row ER"] == "holds"  # L2 left unchanged


def test_differences_are_paired_by_seed() -> None:
    """Seeds spread the ER by ±10 but both arms move together: paired, the +1 gain is
    certain; unpaired it would be lost in the spread."""
    s = make_summary((0, 1, 2))
    offset = s["seed"].map({0: -10.0, 1: 0.0, 2: 10.0}).fillna(0.0)
    clip = (s["experiment"] == "clip_x") & (s["student"] == "cnn_s")
    s.loc[clip, "effective_rank"] = 20.0 + offset[clip] + (s["objective"] == "cosine_infonce")[clip]
    row = judged(s).set_index("quantity").loc["Student-S (clip_x, CLIP), raw ER"]
    assert row["ours"] == pytest.approx(1.0) and row["ci_low"] == pytest.approx(1.0)
    assert row["verdict"] == "holds"


def test_one_seed_is_at_most_inconclusive() -> None:
    f = judged(make_summary((0,)), make_noise((0,)))
    tested = f[f["verdict"] != "not tested"]
    assert set(tested["verdict"]) == {"inconclusive"}
    assert tested["note"].str.contains("one seed").all()
    assert (tested["n_seeds"] == 1).all()


def test_absent_inputs_are_not_tested_with_why() -> None:
    s = make_summary((0, 1))
    s = s[(s["experiment"] == "clip_x") & ~s["student"].isin(["hybrid", "tiny_vit"])]
    f = claims.claims_frame(
        s, make_noise((0, 1)).iloc[0:0], **(OPTS | {"figures_experiment": "clip_x"})
    )
    untested = f[f["verdict"] == "not tested"].set_index("claim")["note"]
    assert "plays both" in untested["DINOv2 cosine ER > CLIP cosine ER"].iloc[0]
    assert "ablation" in untested["ablation students ≤ CNN"].iloc[0]
    assert "noise" in untested["0.5M beats 8M at the highest σ"]
    assert set(f.loc[f["claim"] == "InfoNCE ER > cosine ER", "verdict"]) == {"holds"}


def test_random_init_is_said_on_every_row() -> None:
    f = judged(make_summary((0, 1)), make_noise((0, 1)), random_init=True)
    assert f["note"].str.startswith("random-init teachers").all()


def test_markdown_has_rule_banner_left_out_and_footer() -> None:
    f = judged(make_summary((0, 1)), make_noise((0, 1)), random_init=True)
    md = claims_markdown.to_markdown(f, RANDOM, ["fig2: experiment has one objective"])
    assert RANDOM.notice() in md and RANDOM.footer() in md
    assert "Decision rule" in md and "ci_high < 0.5" in md and "[1.92, 3.00]" in md
    assert "±0.10" in md
    assert "## Left out of this run" in md and "- fig2: experiment has one objective" in md
    assert "| **holds**" in md


def test_dinov2_infonce_gap_of_the_paper_comes_from_figure_2_data():
    """Student-M/L: Fig. 2's 'up to 82' minus the cosine baseline 53.78; Student-S: none
    (the paper gives no InfoNCE number for it). A lookup that loses either objective's key
    would silently print no paper value."""
    assert claims._infonce_paper_gap(False, "cnn_m") == pytest.approx(82 - 53.78)
    assert claims._infonce_paper_gap(False, "cnn_l") == pytest.approx(82 - 53.78)
    assert claims._infonce_paper_gap(False, "cnn_s") is None
    assert (claims.SMALL, claims.LARGE) == ("cnn_s", "cnn_l")
