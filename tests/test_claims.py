"""Claims judged on synthetic summaries whose verdicts are known by construction: every id
has rows, each verdict (holds, fails, inconclusive, underpowered, not tested) is reachable,
Holm changes what it should, Welch is used across experiments and the guards stop rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdspectra.paper import claim_rows, claims, claims_markdown, paper_values, tracking
from kdspectra.paper.verdicts import CLAIMS, VERDICTS
from test_recolour import with_dial
from test_tables import ER, RANDOM, make_noise, make_summary, teacher_summary
from test_tradeoff import with_arms

OPTS = {"tables_experiment": "clip_x", "figures_experiment": "dino_x", "chance": 0.01}
SEEDS = (0, 1, 2)


def judged(summary: pd.DataFrame, noise: pd.DataFrame | None = None, **kw) -> pd.DataFrame:
    noise = make_noise(SEEDS) if noise is None else noise
    return claims.claims_frame(summary, noise, **(OPTS | kw))


def rows(f: pd.DataFrame, cid: str, measure: str = "raw ER") -> pd.DataFrame:
    return f[(f["id"] == cid) & (f["measure"] == measure)]


def one(f: pd.DataFrame, cid: str, contains: str, measure: str = "raw ER") -> pd.Series:
    r = rows(f, cid, measure)
    r = r[r["quantity"].str.contains(contains, regex=False)]
    assert len(r) == 1, (cid, contains, r["quantity"].tolist())
    return r.iloc[0]


def set_er(s: pd.DataFrame, exp: str, student: str, obj: str, values, col="effective_rank"):
    mask = (s["experiment"] == exp) & (s["student"] == student) & (s["objective"] == obj)
    s.loc[mask, col] = s.loc[mask, "seed"].map(dict(enumerate(values)))
    return s


def test_every_id_has_rows_with_the_contract_columns() -> None:
    f = judged(make_summary(SEEDS))
    assert list(f.columns) == list(claim_rows.COLUMNS)
    assert list(dict.fromkeys(f["id"])) == list(CLAIMS)
    assert len(CLAIMS) == 19
    assert set(f["verdict"]) <= set(VERDICTS) and set(f["verdict_raw"]) <= set(VERDICTS)


def test_primary_is_the_papers_measure() -> None:
    s = make_summary(SEEDS).assign(rankme=lambda d: d["effective_rank"] + 1)
    f = judged(s)
    er = f[f["measure"].isin(["raw ER", "L2-row ER", "RankMe"])]
    assert (er["primary"] == (er["measure"] == "raw ER")).all()
    assert (rows(f, "infonce_raises_er", "RankMe")["verdict"] == "holds").all()
    assert f.loc[~f["primary"], "p_holm"].isna().all()
    assert (f.loc[~f["primary"], "verdict"] == f.loc[~f["primary"], "verdict_raw"]).all()
    acc = f[f["id"] == "small_student_robust"]
    assert acc.loc[acc["primary"], "quantity"].str.startswith("mean accuracy over σ").all()


def test_verdicts_on_the_fixture() -> None:
    """Fixture: ER + seed, L2 ER = 2·ER + seed; gaps between arms are seed-free."""
    f = judged(make_summary(SEEDS))
    assert set(rows(f, "cosine_far_below_teacher")["verdict"]) == {"holds"}
    # S/M/L cosine means 16 / 17.5 / 18: the S-L gap is 2 / 17.17 = 11.7 % > 10 %
    assert one(f, "cosine_flat", "(Student-L − Student-S)")["verdict"] == "fails"
    assert one(f, "cosine_flat", "(Student-M − Student-S)")["verdict"] == "holds"
    assert set(rows(f, "ablation_not_above_cnn")["verdict"]) == {"holds"}
    assert set(rows(f, "infonce_raises_er")["verdict"]) == {"holds"}
    assert set(rows(f, "dino_infonce_raises_er")["verdict"]) == {"holds"}
    assert one(f, "teacher_er_level", "teacher")["verdict"] == "holds"  # 88.68 exactly
    assert set(rows(f, "dino_capacity_limit")["verdict"]) == {"holds"}  # 83, 84 vs 82
    assert set(rows(f, "capacity_saturation")["verdict"]) == {"holds"}
    gain = one(f, "infonce_gain", "InfoNCE / cosine")
    ratios = [(110 / 3 + k) / (48.5 / 3 + k) for k in range(3)]
    assert gain["ours"] == pytest.approx(np.mean(ratios)) and gain["paper"] == 2.4
    dino = one(f, "dino_above_clip", "DINOv2 − CLIP")
    assert dino["test"].startswith("Welch t") and dino["verdict"] == "holds"
    assert one(f, "infonce_raises_er", "Student-S")["test"].startswith("paired t")
    assert "teachers' own raw ER: 88.7 (clip_x) vs 70 (dino_x)" in dino["note"]


def test_the_paired_choice_makes_a_seed_correlated_gain_certain() -> None:
    """Seeds spread ER by ±10 but both arms move together: paired, +1 holds."""
    s = make_summary(SEEDS)
    set_er(s, "clip_x", "cnn_s", "cosine", [10.0, 20.0, 30.0])
    set_er(s, "clip_x", "cnn_s", "cosine_infonce", [11.0, 21.2, 30.9])
    r = one(judged(s), "infonce_raises_er", "Student-S")
    assert r["ours"] == pytest.approx(3.1 / 3) and r["verdict_raw"] == "holds"


def test_fails_inconclusive_and_underpowered() -> None:
    s = make_summary(SEEDS)
    set_er(s, "clip_x", "cnn_m", "cosine_infonce", [6.5, 7.5, 8.5])  # 10 below cosine
    # Student-S: gaps +1, −1, +0.5 (narrow interval: inconclusive); Student-L: ±30
    # (interval wider than the paper's 21.6 gain: underpowered)
    set_er(s, "clip_x", "cnn_s", "cosine_infonce", [16.0, 15.0, 17.5])
    set_er(s, "clip_x", "cnn_l", "cosine_infonce", [47.0, -12.0, 24.0])
    f = judged(s)
    assert one(f, "infonce_raises_er", "Student-M")["verdict"] == "fails"
    assert one(f, "infonce_raises_er", "Student-S")["verdict"] == "inconclusive"
    assert one(f, "infonce_raises_er", "Student-L")["verdict"] == "underpowered"
    assert one(f, "infonce_raises_er", "Student-M", "L2-row ER")["verdict"] == "holds"


def test_holm_turns_a_marginal_primary_row_inconclusive() -> None:
    """p ≈ 0.02 alone holds; among ~25 primary rows Holm raises it above 0.05."""
    s = make_summary(SEEDS)
    set_er(s, "clip_x", "cnn_s", "cosine_infonce", [16.2, 17.5, 17.9])  # gaps 1.2, 1.5, 0.9
    r = one(judged(s), "infonce_raises_er", "Student-S")
    p_raw = float(r["test"].split("p = ")[1])
    assert p_raw < 0.05 < r["p_holm"]
    assert r["verdict_raw"] == "holds" and r["verdict"] == "inconclusive"
    md = claims_markdown.to_markdown(judged(s))
    assert "infonce_raises_er` Student-S (clip_x, CLIP), raw ER: holds → inconclusive" in md


def test_one_seed_is_underpowered() -> None:
    f = judged(make_summary((0,)), make_noise((0,)))
    tested = f[~f["verdict"].isin(["not tested"]) & (f["n_seeds"] == 1)]
    tested = tested[~tested["test"].str.startswith("fixed value")]
    assert len(tested) > 20 and set(tested["verdict"]) == {"underpowered"}
    assert tested["note"].str.contains("one seed").all()


def test_absent_inputs_give_not_tested_rows_with_why() -> None:
    s = make_summary((0, 1))
    s = s[(s["experiment"] == "clip_x") & ~s["student"].isin(["hybrid", "tiny_vit"])]
    f = claims.claims_frame(
        s, make_noise((0, 1)).iloc[0:0], tables_experiment="clip_x", figures_experiment="clip_x"
    )
    assert list(dict.fromkeys(f["id"])) == list(CLAIMS)  # no id disappears
    untested = f[f["verdict"] == "not tested"].groupby("id")["note"].first()
    for cid in ("dino_above_clip", "dino_infonce_raises_er", "dino_capacity_limit"):
        assert "plays both" in untested[cid]
    assert "ablation" in untested["ablation_not_above_cnn"]
    assert "uniformity" in untested["infonce_uniformity"]
    assert "spectra" in untested["spectrum_tracks_teacher"]
    for cid in ("small_student_robust", "small_student_clean_cost", "large_student_brittle"):
        assert cid in untested.index
    assert set(rows(f, "infonce_raises_er")["verdict"]) == {"holds"}


def test_demo_layout_finds_the_dinov2_run_elsewhere() -> None:
    """The demo: one CLIP experiment plays both runs, a DINOv2 one trains Student-S with
    cosine only. dino_above_clip is judged (Welch) on the shared student; the DINOv2
    InfoNCE ids are not tested, saying what the DINOv2 run lacks."""
    s = make_summary(SEEDS)
    s = s[(s["experiment"] == "clip_x") | s["student"].isin(["", "cnn_s"])]
    s = s[(s["experiment"] == "clip_x") | (s["objective"] != "cosine_infonce")]
    f = judged(s, figures_experiment="clip_x")
    dino = one(f, "dino_above_clip", "dino_x − clip_x")
    assert dino["test"].startswith("Welch t") and dino["ours"] == pytest.approx(35.0)
    assert "teachers' own raw ER: 88.7 (clip_x) vs 70 (dino_x)" in dino["note"]
    assert "dino_x' ran no student with both" in rows(f, "dino_infonce_raises_er")["note"].iloc[0]
    assert "lacks cnn_m or cnn_l" in rows(f, "dino_capacity_limit")["note"].iloc[0]
    assert not rows(f, "infonce_raises_er")["quantity"].str.contains("dino_x").any()


def factorial_summary() -> pd.DataFrame:
    """The fixture plus the factorial's two cells, named so that no name tells the teacher:
    exp_a (CLIP's key, cifar100) and exp_b (DINOv2's key, cifar10), and first a distractor
    on cifar10 with another DINOv2 key. Cosine ER: exp_b = clip_x + 10 (DINOv2 above CLIP
    on cifar10), exp_a = dino_x + 5 (below on cifar100)."""
    s = make_summary(SEEDS)
    a = s[s["experiment"] == "clip_x"].assign(experiment="exp_a", dataset="cifar100")
    b = s[s["experiment"] == "dino_x"].assign(experiment="exp_b", dataset="cifar10")
    other = s[s["experiment"] == "dino_x"].assign(
        experiment="exp_c", dataset="cifar10", teacher="dinov2_vitl14"
    )
    s = pd.concat([other, s, a, b], ignore_index=True)
    for student in ("cnn_s", "cnn_m", "cnn_l"):
        clip_er, dino_er = ER[("clip_x", "cosine")][student], ER[("dino_x", "cosine")][student]
        set_er(s, "exp_b", student, "cosine", [clip_er + 10 + k for k in SEEDS])
        set_er(s, "exp_a", student, "cosine", [dino_er + 5 + k for k in SEEDS])
    return s


def test_dino_above_clip_compares_same_dataset_pairs_when_the_run_has_them() -> None:
    """Factorial run: one row per dataset, each naming its two experiments and that they
    share the dataset, judged on its own (Welch) and under Holm with the other primary
    rows; the cross-dataset pair and the distractor teacher are not compared."""
    f = judged(factorial_summary())
    dino = rows(f, "dino_above_clip")
    assert len(dino) == 2 and dino["primary"].all()
    on10 = one(f, "dino_above_clip", "exp_b − clip_x")  # cifar10: exp_b is DINOv2's
    on100 = one(f, "dino_above_clip", "dino_x − exp_a")  # cifar100: exp_a is CLIP's
    assert on10["ours"] == pytest.approx(10.0) and on10["verdict"] == "holds"
    assert on100["ours"] == pytest.approx(-5.0) and on100["verdict"] == "fails"
    assert "same dataset (cifar10): exp_b vs clip_x" in on10["note"]
    assert "same dataset (cifar100): dino_x vs exp_a" in on100["note"]
    assert on10["test"].startswith("Welch t") and on100["test"].startswith("Welch t")
    assert np.isfinite(on100["p_holm"])  # Holm over every primary row, these two included
    assert on10["p_holm"] > float(on10["test"].split("p = ")[1])
    assert not dino["note"].str.contains("confounded|exp_c").any()


def test_dino_above_clip_falls_back_across_datasets_and_says_it_is_confounded() -> None:
    dino = rows(judged(make_summary(SEEDS)), "dino_above_clip")
    assert len(dino) == 1 and "dino_x − clip_x, raw ER" in dino["quantity"].iloc[0]
    note = dino["note"].iloc[0]
    assert "confounded by the dataset: dino_x is on cifar100, clip_x on cifar10" in note


def test_guards_stop_rows_and_name_themselves() -> None:
    s = make_summary(SEEDS)
    s["degenerate"] = (s["role"] == "teacher") & (s["experiment"] == "dino_x")
    s["fidelity_gain"] = np.where(s["student"] == "cnn_m", 0.1, 0.8)
    f = judged(s, min_fidelity_gain=0.25)
    assert (rows(f, "dino_infonce_raises_er")["verdict"] == "not tested").all()
    assert rows(f, "dino_infonce_raises_er")["note"].str.contains("dino_x' is degenerate").all()
    m = one(f, "cosine_far_below_teacher", "Student-M")
    assert m["verdict"] == "not tested" and "fidelity_gain 0.10 < evaluation." in m["note"]
    assert one(f, "cosine_far_below_teacher", "Student-S")["verdict"] == "holds"
    # InfoNCE-only arms are not under the fidelity guard
    assert one(f, "capacity_saturation", "ER(Student-S) − ER(Student-M)")["verdict"] == "holds"
    relaxed = judged(s, min_fidelity_gain=0.05)
    assert one(relaxed, "cosine_far_below_teacher", "Student-M")["verdict"] == "holds"


def test_guard_reads_degeneracy_as_teachers_csv_decides_it() -> None:
    """No ``degenerate`` column: the summary's sanity columns decide it as teachers.csv
    does (a cone: 2e-8 of the energy left after centring), and chance comes from them."""
    s = teacher_summary(SEEDS)
    s.loc[(s["role"] == "teacher") & (s["experiment"] == "dino_x"), "centred_energy_share"] = 2e-8
    f = judged(s, chance=None)
    dino = rows(f, "dino_infonce_raises_er")
    assert (dino["verdict"] == "not tested").all()
    assert (
        dino["note"].str.contains("'dino_x' is degenerate (centred energy share", regex=False).all()
    )
    assert set(rows(f, "infonce_raises_er")["verdict"]) == {"holds"}  # clip_x is sane
    assert rows(f, "dino_above_clip")["note"].str.contains("degenerate").all()  # needs both
    assert "degenerate" in rows(f, "small_student_robust", "probe accuracy")["note"].iloc[0]
    sane = judged(teacher_summary(SEEDS), chance=None)
    auc = one(sane, "small_student_robust", "range, pp), Student-S − Student-L", "probe accuracy")
    assert "chance 10.0 %" in auc["note"]  # the summary's chance_accuracy, no option given


def test_robustness_area_each_sigma_chance_and_paper_sigma() -> None:
    f = judged(make_summary(SEEDS))
    # accuracy = 0.9 − slope·σ: area / range over σ ∈ [0, 0.5] = 90 − slope·25 (pp)
    auc = one(f, "small_student_robust", "range, pp), Student-S − Student-L", "probe accuracy")
    assert auc["ours"] == pytest.approx(0.4 * 25) and auc["primary"]
    assert "chance 1.0 %" in auc["note"]
    at = rows(f, "small_student_robust", "probe accuracy")
    at = at[at["quantity"].str.startswith("accuracy at σ")]
    assert len(at) == 4 and not at["primary"].any()  # σ = 0.1, 0.5 × (M, L)
    paper = at.dropna(subset=["paper"])  # the σ nearest the paper's 19.2 %: 0.5 (40-50 %)
    assert len(paper) == 1 and "σ = 0.5" in paper.iloc[0]["quantity"]
    assert paper.iloc[0]["paper"] == pytest.approx(21.32 - 17.03)
    brittle = rows(f, "large_student_brittle", "probe accuracy").iloc[0]
    assert brittle["quantity"].endswith(", Student-L")
    assert brittle["ours"] == pytest.approx(np.mean([(19 + k) / (89 + k) for k in SEEDS]))
    assert brittle["verdict_raw"] == "holds"  # 0.22 < 0.25, interval 0.20-0.24
    clean = rows(f, "small_student_clean_cost", "probe accuracy")
    assert len(clean) == 4
    no_chance = judged(make_summary(SEEDS), chance=None)
    assert (
        one(no_chance, "large_student_brittle", "retention", "probe accuracy")["verdict"]
        == "not tested"
    )


def test_spectrum_tracking() -> None:
    t = np.exp(-0.05 * np.arange(64))
    assert tracking.tracking_length(t, t) == 64
    assert tracking.tracking_length(np.exp(-0.5 * np.arange(64)), t) == 2  # e^-0.45i ≤ 2
    spectra = {
        "teacher": t,
        "seeds": [0, 1, 2],
        "student": "cnn_s",
        "cosine": [np.exp(-(0.5 + 0.01 * k) * np.arange(64)) for k in range(3)],
        "cosine_infonce": [np.exp(-(0.1 + 0.01 * k) * np.arange(64)) for k in range(3)],
    }
    r = one(
        judged(make_summary(SEEDS), spectra=spectra),
        "spectrum_tracks_teacher",
        "InfoNCE − cosine",
        "tracking length",
    )
    assert r["ours"] == 10 and r["verdict_raw"] == "holds" and r["primary"]  # 12, 10, 8


def test_random_init_is_said_on_every_row() -> None:
    f = judged(make_summary((0, 1)), make_noise((0, 1)), random_init=True)
    assert f["note"].str.startswith("random-init teachers").all()


def test_markdown_has_every_rule_the_contradiction_banner_and_footer() -> None:
    f = judged(make_summary((0, 1)), make_noise((0, 1)), random_init=True)
    md = claims_markdown.to_markdown(f, RANDOM, ["fig2: experiment has one objective"])
    assert RANDOM.notice() in md and RANDOM.footer() in md
    for cid, (_, rule) in CLAIMS.items():
        assert f"| `{cid}` |" in md and rule in md
    assert "explicitly enforced by the\nobjective function" in md
    assert "not\ninherently caused by the cosine distance" in md
    assert "TOST in [1.92, 3]" in md and "Holm–Bonferroni" in md
    assert "## Left out of this run" in md and "- fig2: experiment has one objective" in md
    counts = claims_markdown.verdict_counts(f)
    assert sum(counts.values()) == int(f["primary"].sum())


def test_dinov2_infonce_gap_of_the_paper_comes_from_figure_2_data() -> None:
    assert paper_values.infonce_paper_gap(False, "cnn_m") == pytest.approx(82 - 53.78)
    assert np.isnan(paper_values.infonce_paper_gap(False, "cnn_s"))
    assert paper_values.infonce_paper_gap(True, "cnn_s") == pytest.approx(32.8 - 15.91)
    assert (paper_values.SMALL, paper_values.MEDIUM, paper_values.LARGE) == (
        "cnn_s",
        "cnn_m",
        "cnn_l",
    )


def _noise_slope(student: str, slope: float, intercept: float = 0.9) -> pd.DataFrame:
    n = make_noise(SEEDS)
    m = n["student"] == student
    n.loc[m, "accuracy"] = intercept - slope * n.loc[m, "sigma"] + 0.01 * n.loc[m, "seed"]
    return n


def _uniformity(s: pd.DataFrame, cos: float, nce: float) -> pd.DataFrame:
    return s.assign(uniformity=np.where(s["objective"] == "cosine", cos, nce) + 0.01 * s["seed"])


T = np.exp(-0.05 * np.arange(64))
STEEP, FLAT = ([np.exp(-(d + 0.01 * k) * np.arange(64)) for k in SEEDS] for d in (0.5, 0.1))
SPECTRA = {"teacher": T, "seeds": list(SEEDS), "student": "cnn_s"}
# id -> (summary, noise, extra options) that make its primary rows fail; each id holds on
# the fixture (or with the options of HOLDS).
FAILS = {
    "teacher_er_level": lambda s: (s.assign(effective_rank=s["effective_rank"].where(
        s["role"] != "teacher", 40.0)), None, {}),
    "cosine_far_below_teacher": lambda s: (set_er(s, "clip_x", "cnn_s", "cosine", [60, 61, 62]),
                                           None, {}),
    "cosine_er_level": lambda s: (set_er(s, "clip_x", "cnn_s", "cosine", [30, 31, 32]), None, {}),
    "cosine_flat": lambda s: (s, None, {}),
    "ablation_not_above_cnn": lambda s: (set_er(s, "clip_x", "hybrid", "cosine", [30, 31, 32]),
                                         None, {}),
    "infonce_raises_er": lambda s: (set_er(s, "clip_x", "cnn_m", "cosine_infonce", [6, 7, 8]),
                                    None, {}),
    "infonce_gain": lambda s: (s.assign(effective_rank=np.where(
        (s["objective"] == "cosine_infonce") & (s["experiment"] == "clip_x"),
        s["effective_rank"] / 2, s["effective_rank"])), None, {}),
    "infonce_uniformity": lambda s: (_uniformity(s, -2.0, -1.0), None, {}),
    "spectrum_tracks_teacher": lambda s: (s, None, {"spectra": SPECTRA | {
        "cosine": FLAT, "cosine_infonce": STEEP}}),
    "capacity_saturation": lambda s: (set_er(s, "clip_x", "cnn_s", "cosine_infonce",
                                             [50, 51, 52]), None, {}),
    "dino_above_clip": lambda s: (s.assign(effective_rank=np.where(
        (s["experiment"] == "dino_x") & (s["objective"] == "cosine"),
        2.0 + 0.5 * s["seed"], s["effective_rank"])), None, {}),
    "dino_infonce_raises_er": lambda s: (set_er(s, "dino_x", "cnn_s", "cosine_infonce",
                                                [40, 41, 42]), None, {}),
    "dino_capacity_limit": lambda s: (set_er(s, "dino_x", "cnn_l", "cosine_infonce",
                                             [120, 121, 122]), None, {}),
    "small_student_robust": lambda s: (s, _noise_slope("cnn_s", 2.0), {}),
    "small_student_clean_cost": lambda s: (s, _noise_slope("cnn_s", 0.5, 0.5), {}),
    "large_student_brittle": lambda s: (s, _noise_slope("cnn_l", 0.1), {}),
    "mirror_cosine_tracks_teacher": lambda s: with_dial(s, slope=0.0, gap=5.0),
    "mirror_infonce_above_cosine": lambda s: with_dial(s, slope=1.0, gap=-5.0),
    "expansion_survives_projector": lambda s: (with_arms(s, {"cosine_infonce_mlp": -3.0}),
                                               None, {}),
}  # fmt: skip
HOLDS = {
    "infonce_uniformity": lambda s: (_uniformity(s, -1.0, -2.0), None, {}),
    "spectrum_tracks_teacher": lambda s: (s, None, {"spectra": SPECTRA | {
        "cosine": STEEP, "cosine_infonce": FLAT}}),
    "cosine_flat": lambda s: (set_er(s, "clip_x", "cnn_l", "cosine", [16.5, 17.5, 18.5]),
                              None, {}),
    "small_student_clean_cost": lambda s: (s, _noise_slope("cnn_s", 1.0, 0.88), {}),
    "mirror_cosine_tracks_teacher": lambda s: with_dial(s, slope=1.0, gap=5.0),
    "mirror_infonce_above_cosine": lambda s: with_dial(s, slope=1.0, gap=5.0),
    "expansion_survives_projector": lambda s: (with_arms(s, {"cosine_infonce_mlp": 8.0}),
                                               None, {}),
}  # fmt: skip


@pytest.mark.parametrize("cid", list(CLAIMS))
def test_each_id_holds_and_fails_by_construction(cid: str) -> None:
    assert set(FAILS) == set(CLAIMS)
    for cases, expected in ((HOLDS, "holds"), (FAILS, "fails")):
        make = cases.get(cid, lambda s: (s, None, {}))
        summary, noise, extra = make(make_summary(SEEDS))
        f = judged(summary, noise, **extra)
        primary = f[(f["id"] == cid) & f["primary"]]
        assert len(primary) and (primary["verdict_raw"] != "not tested").all(), cid
        got = set(primary["verdict_raw"])
        if expected == "holds":
            assert got == {"holds"}, (cid, primary[["quantity", "verdict_raw"]].values)
        else:
            assert "fails" in got, (cid, primary[["quantity", "verdict_raw"]].values)
