"""Tables from synthetic run summaries with known values: the numbers out equal the numbers in."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from kdspectra.errors import ArtifactError
from kdspectra.paper import comparison as paper
from kdspectra.report import render, tables
from kdspectra.report.provenance import Provenance

PARAMS = {
    "teacher": 87_849_216,
    "cnn_s": 500_123,
    "cnn_m": 2_001_234,
    "cnn_l": 7_998_765,
    "hybrid": 1_234_567,
    "tiny_vit": 5_432_100,
}
# Effective rank for seed 0; seed k adds k (so seeds 0, 1, 2 → mean + 1, std 1).
ER = {
    ("clip_x", "cosine"): {"cnn_s": 15.0, "cnn_m": 16.5, "cnn_l": 17.0}
    | {"hybrid": 14.0, "tiny_vit": 9.0},
    ("clip_x", "cosine_infonce"): {"cnn_s": 33.0, "cnn_m": 38.0, "cnn_l": 39.0},
    ("dino_x", "cosine"): {"cnn_s": 50.0, "cnn_m": 55.0, "cnn_l": 56.0},
    ("dino_x", "cosine_infonce"): {"cnn_s": 80.0, "cnn_m": 82.0, "cnn_l": 83.0},
}
TEACHERS = {
    "clip_x": ("cifar10", "clip_vit_b32", 88.68),
    "dino_x": ("cifar100", "dinov2_vitb14", 70.0),
}
# Rank ceilings: min(feature width, N − 1, D) for students, min(N − 1, D) for teachers.
CEILING = {"teacher": 512, "cnn_s": 80, "cnn_m": 160, "cnn_l": 320, "hybrid": 96, "tiny_vit": 96}
SIGMAS = (0.0, 0.1, 0.5)
SLOPE = {"cnn_s": 1.0, "cnn_m": 1.2, "cnn_l": 1.4}

RANDOM = Provenance("abc1234", "cfg0hash", {"clip_vit_b32": "random-init"}, "2025-01-01")
PRETRAINED = Provenance("abc1234", "cfg0hash", {"clip_vit_b32": "openai"}, "2025-01-01")


def make_summary(seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """One row per experiment × model × seed, in the schema of docs/architecture.md."""
    rows = []
    for exp, (dataset, teacher, ter) in TEACHERS.items():
        base = {"experiment": exp, "dataset": dataset, "teacher": teacher}
        rows.append(
            base
            | {"role": "teacher", "student": "", "objective": "", "seed": -1}
            | {"params": PARAMS["teacher"], "effective_rank": ter, "effective_rank_rv": ter + 5}
            | {"effective_rank_l2": ter + 1, "norm_cv": 0.1, "rank_ceiling": CEILING["teacher"]}
            | {"cos_to_teacher": math.nan, "fidelity_gain": math.nan, "clean_accuracy": 0.95}
        )
        for obj in ("cosine", "cosine_infonce"):
            for student, er in ER[(exp, obj)].items():
                for k in seeds:
                    rows.append(
                        base
                        | {"role": "student", "student": student, "objective": obj, "seed": k}
                        | {"params": PARAMS[student], "effective_rank": er + k}
                        | {"effective_rank_rv": er + k + 3, "clean_accuracy": 0.8}
                        | {"effective_rank_l2": 2 * er + k, "norm_cv": 0.3 + 0.1 * k}
                        | {"rank_ceiling": CEILING[student]}
                        | {"cos_to_teacher": 0.9 - 0.2 * (obj != "cosine") + 0.01 * k}
                        | {"fidelity_gain": 0.5 - 0.1 * (obj != "cosine") + 0.02 * k}
                    )
    return pd.DataFrame(rows)


def teacher_summary(seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """:func:`make_summary` with the teacher-sanity columns the spectrum and noise stages
    add (docs/design.md "Guards"): a sane teacher, chance 0.1."""
    s = make_summary(seeds)
    guards = {"rankme": 90.0, "uniformity": -3.0, "mean_pairwise_cosine": 0.2}
    guards |= {"centred_energy_share": 0.8, "constant_cosine": 0.3, "chance_accuracy": 0.1}
    return s.assign(**guards, clean_knn20_accuracy=0.9)


def make_noise(seeds: Sequence[int] = (0,)) -> pd.DataFrame:
    """Accuracy = 0.9 − slope·σ + 0.01·seed for every DINOv2 student; teacher 0.95 − σ."""
    rows = []
    for sigma in SIGMAS:
        rows.append(
            {"experiment": "dino_x", "role": "teacher", "student": "", "objective": ""}
            | {"seed": -1, "sigma": sigma, "accuracy": 0.95 - sigma}
        )
        for obj in ("cosine", "cosine_infonce"):
            for student, slope in SLOPE.items():
                for k in seeds:
                    rows.append(
                        {"experiment": "dino_x", "role": "student", "student": student}
                        | {"objective": obj, "seed": k, "sigma": sigma}
                        | {"accuracy": 0.9 - slope * sigma + 0.01 * k}
                    )
    return pd.DataFrame(rows)


def test_table1_exact_contents() -> None:
    t = tables.table1(make_summary(), experiment="clip_x")
    assert list(t.columns) == [
        "model", "params", "effective_rank", "effective_rank_l2", "rank_ceiling", "norm_cv",
        "cos_to_teacher", "fidelity_gain",
    ]  # fmt: skip
    assert t["model"].tolist() == ["Teacher-CLIP", "Student-S", "Student-M", "Student-L"]
    assert t["effective_rank_l2"].tolist() == [89.68, 30.0, 33.0, 34.0]
    assert t["rank_ceiling"].tolist() == [512, 80, 160, 320]
    assert t["norm_cv"].tolist() == pytest.approx([0.1, 0.3, 0.3, 0.3])
    assert t["params"].dtype == np.int64
    assert t["params"].tolist() == [PARAMS[k] for k in ("teacher", "cnn_s", "cnn_m", "cnn_l")]
    assert t["effective_rank"].tolist() == [88.68, 15.0, 16.5, 17.0]
    assert math.isnan(t["cos_to_teacher"].iloc[0])
    assert t["cos_to_teacher"].iloc[1:].tolist() == pytest.approx([0.9, 0.9, 0.9])
    assert math.isnan(t["fidelity_gain"].iloc[0])  # the teacher has no fit to itself
    assert t["fidelity_gain"].iloc[1:].tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_table2_and_ablation_names() -> None:
    s = make_summary()
    t2 = tables.table2(s, experiment="clip_x")
    assert t2["model"].tolist() == ["Student-S", "Student-M", "Student-L"]
    assert t2["effective_rank"].tolist() == [33.0, 38.0, 39.0]
    assert t2["cos_to_teacher"].tolist() == pytest.approx([0.7] * 3)
    assert t2["fidelity_gain"].tolist() == pytest.approx([0.4] * 3)
    ab = tables.ablation(s, experiment="clip_x")
    assert ab["model"].tolist() == ["CNN", "Hybrid", "Tiny ViT"]
    assert ab["effective_rank"].tolist() == [15.0, 14.0, 9.0]
    assert ab["params"].tolist() == [PARAMS["cnn_s"], PARAMS["hybrid"], PARAMS["tiny_vit"]]


def test_seeds_give_mean_and_std() -> None:
    t = tables.table1(make_summary(seeds=(0, 1, 2)), experiment="clip_x")
    assert list(t.columns) == [
        "model", "params", "effective_rank", "effective_rank_std",
        "effective_rank_l2", "effective_rank_l2_std", "rank_ceiling", "norm_cv", "norm_cv_std",
        "cos_to_teacher", "cos_to_teacher_std", "fidelity_gain", "fidelity_gain_std", "n_seeds",
    ]  # fmt: skip
    assert t["effective_rank_l2_std"].iloc[1:].tolist() == pytest.approx([1.0] * 3)
    assert t["norm_cv_std"].iloc[1:].tolist() == pytest.approx([0.1] * 3)
    assert t["effective_rank"].tolist() == pytest.approx([88.68, 16.0, 17.5, 18.0])
    assert math.isnan(t["effective_rank_std"].iloc[0])  # one teacher row: no spread
    assert t["effective_rank_std"].iloc[1:].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert t["cos_to_teacher_std"].iloc[1:].tolist() == pytest.approx([0.01] * 3)
    assert t["fidelity_gain_std"].iloc[1:].tolist() == pytest.approx([0.02] * 3)
    assert t["n_seeds"].tolist() == [1, 3, 3, 3]


def test_teachers_table() -> None:
    t = tables.teachers(teacher_summary())
    assert list(t.columns) == [
        "teacher", "dataset", "effective_rank", "effective_rank_l2", "norm_cv", "rank_ceiling",
        "rankme", "uniformity", "mean_pairwise_cosine", "centred_energy_share",
        "constant_cosine", "clean_accuracy", "clean_knn20_accuracy", "chance_accuracy",
        "degenerate", "degenerate_reasons",
    ]  # fmt: skip
    assert t.values.tolist() == [
        ["clip_vit_b32", "cifar10", 88.68, 89.68, 0.1, 512, 90.0, -3.0, 0.2, 0.8, 0.3, 0.95,
         0.9, 0.1, False, ""],
        ["dinov2_vitb14", "cifar100", 70.0, 71.0, 0.1, 512, 90.0, -3.0, 0.2, 0.8, 0.3, 0.95,
         0.9, 0.1, False, ""],
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"centred_energy_share": 2e-8}, "centred energy share 2e-08 < 0.05"),
        ({"clean_knn20_accuracy": 0.15}, "kNN-20 0.150 within 0.10 of chance (0.100)"),
        ({"clean_accuracy": 0.12}, "linear probe 0.120 within 0.10 of chance (0.100)"),
    ],
)
def test_teachers_table_flags_a_degenerate_teacher(change: dict, reason: str) -> None:
    """A cone (2e-8 of the energy left after centring, as timm's random-init DINOv2) or a
    teacher whose probe or kNN is near chance is degenerate, and the table says why."""
    s = teacher_summary()
    s.loc[s["role"] == "teacher", list(change)] = list(change.values())
    t = tables.teachers(s)
    assert t["degenerate"].tolist() == [True, True]
    assert t["degenerate_reasons"].tolist() == [reason, reason]


def test_fig2_data() -> None:
    f = tables.fig2_data(make_summary(seeds=(0, 1)), experiment="dino_x")
    teacher = f[f["role"] == "teacher"]
    assert teacher["model"].tolist() == ["Teacher-DINOv2"]
    assert teacher["effective_rank"].tolist() == [70.0]
    st = f[f["role"] == "student"].set_index(["student", "objective"])
    assert len(st) == 6
    assert st.loc[("cnn_m", "cosine_infonce"), "effective_rank"] == pytest.approx(82.5)
    assert st.loc[("cnn_m", "cosine_infonce"), "effective_rank_std"] == pytest.approx(
        np.std([82, 83], ddof=1)
    )
    assert st.loc[("cnn_m", "cosine_infonce"), "effective_rank_l2"] == pytest.approx(164.5)
    assert st.loc[("cnn_l", "cosine"), "rank_ceiling"] == 320
    assert st.loc[("cnn_l", "cosine"), "model"] == "Student-L"
    assert (st["n_seeds"] == 2).all()


def test_fig3_data_means_over_seeds() -> None:
    f = tables.fig3_data(make_summary(), make_noise(seeds=(0, 2)), experiment="dino_x")
    st = f[f["role"] == "student"]
    assert set(st["objective"]) == {"cosine_infonce"}
    assert len(st) == 3 * len(SIGMAS)
    row = st[(st["student"] == "cnn_l") & (st["sigma"] == 0.5)].iloc[0]
    assert row["accuracy"] == pytest.approx(0.9 - 1.4 * 0.5 + 0.01)
    assert row["accuracy_std"] == pytest.approx(np.std([0.0, 0.02], ddof=1))
    assert row["params"] == PARAMS["cnn_l"] and row["n_seeds"] == 2
    teacher = f[f["role"] == "teacher"]
    assert teacher["accuracy"].tolist() == pytest.approx([0.95, 0.85, 0.45])


def test_build_dispatches_and_rejects_unknown() -> None:
    s, n = make_summary(), make_noise()
    pd.testing.assert_frame_equal(
        tables.build("table1", s, n, experiment="clip_x", students=["cnn_s"]),
        tables.table1(s, experiment="clip_x", students=["cnn_s"]),
    )
    assert len(tables.build("fig3", s, n, experiment="dino_x", objective="cosine")) == 12
    with pytest.raises(ValueError, match="unknown table"):
        tables.build("table3", s, n)


def test_missing_rows_name_what_exists() -> None:
    with pytest.raises(ArtifactError, match=r"no rows.*available"):
        tables.table1(make_summary(), experiment="nope")
    with pytest.raises(ArtifactError, match="missing columns"):
        tables.table1(make_summary().drop(columns=["params"]), experiment="clip_x")


@pytest.mark.parametrize(
    ("n", "text"),
    [(500_123, "0.50M"), (2_001_234, "2.00M"), (87_849_216, "87.85M"), (1.2e9, "1.20B"),
     (12_345, "12.3K"), (999, "999")],
)  # fmt: skip
def test_human_params(n: float, text: str) -> None:
    assert render.human_params(n) == text


def test_markdown_has_title_notice_footer_and_values() -> None:
    t = tables.table1(make_summary(seeds=(0, 1, 2)), experiment="clip_x")
    md = render.to_markdown(t, "table1", RANDOM)
    assert md.startswith("## Table I")
    assert RANDOM.notice() in md and RANDOM.footer() in md
    assert "| Student-S" in md and "0.50M" in md and "16.00 ± 1.00" in md
    assert "88.68" in md and "87.85M" in md
    pre = render.to_markdown(t, "table1", PRETRAINED, title="Custom")
    assert pre.startswith("## Custom") and "random-init" not in pre
    assert PRETRAINED.footer() in pre


def test_latex_is_booktabs_with_notice_and_footer() -> None:
    t = tables.teachers(teacher_summary())
    tex = render.to_latex(t, "teachers", RANDOM)
    for token in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}{l" + "r" * 15 + "}"):
        assert token in tex
    assert r"clip\_vit\_b32 & cifar10 & 88.68 & 89.68 & 0.100 & 512 & 90.00 & -3.000" in tex
    assert r"& 0.100 & False &  \\" in tex  # chance, degenerate and no reasons
    assert r"\caption{" in tex and "random-init" in tex.split(r"\caption{")[1].split("\n")[0]
    assert f"% {RANDOM.footer()}" in tex
    assert r"\label{tab:teachers}" in tex


def test_write_table_round_trips_csv(tmp_path) -> None:
    """The workflow's path (stages.table): exact CSV, Markdown and LaTeX renderings."""
    from kdspectra import stages

    t = tables.table1(make_summary(), experiment="clip_x")
    make_summary().to_parquet(tmp_path / "summary.parquet")
    make_noise().to_parquet(tmp_path / "noise.parquet")
    paths = {k: tmp_path / f"table1.{k}" for k in ("csv", "md", "tex", "provenance")}
    inputs = {"summary": tmp_path / "summary.parquet", "noise": tmp_path / "noise.parquet"}
    params = {"options": {"experiment": "clip_x"}, "provenance": RANDOM.to_dict()}
    stages.table(inputs, paths, params)
    back = pd.read_csv(paths["csv"])
    assert back["params"].tolist() == t["params"].tolist()
    assert back["effective_rank"].tolist() == t["effective_rank"].tolist()
    assert RANDOM.notice() in paths["md"].read_text()
    assert r"\bottomrule" in paths["tex"].read_text()


def test_paper_numbers_are_the_papers() -> None:
    p = {k: v.value for k, v in paper.PAPER.items()}
    assert p["teacher_clip"] == 88.68
    assert [p["t1_s"], p["t1_m"], p["t1_l"]] == [15.91, 16.62, 16.66]
    assert [p["abl_cnn"], p["abl_hybrid"], p["abl_vit"]] == [15.90, 14.54, 8.70]
    assert [p["t2_s"], p["t2_m"], p["t2_l"]] == [32.80, 38.41, 38.30]
    assert p["dino_cos_m"] == 53.78 and p["dino_nce_m"] == p["dino_nce_l"] == 82.0
    assert p["dino_nce_s"] is None  # the paper names only the 2.0M and 8.0M students
    assert (p["noise_s"], p["noise_l"]) == (21.32, 17.03)
    assert all(v.where for v in paper.PAPER.values())


def test_paper_comparison_differences() -> None:
    f = paper.paper_comparison_frame(
        make_summary(seeds=(0, 1)), make_noise(), tables_experiment="clip_x",
        figures_experiment="dino_x",
    ).set_index("key")  # fmt: skip
    assert f.loc["teacher_clip", "ours"] == pytest.approx(88.68)
    assert f.loc["teacher_clip", "diff"] == pytest.approx(0.0)
    assert f.loc["t1_m", "ours"] == pytest.approx(17.0)  # mean of 16.5 and 17.5
    assert f.loc["t1_m", "diff"] == pytest.approx(17.0 - 16.62)
    assert f.loc["abl_vit", "diff"] == pytest.approx(9.5 - 8.70)
    assert f.loc["dino_nce_m", "diff"] == pytest.approx(82.5 - 82.0)
    assert math.isnan(f.loc["dino_nce_s", "diff"]) and f.loc["dino_nce_s", "ours"] == 80.5
    # highest σ = 0.5: 0.9 − 1.0·0.5 = 40 % for Student-S, 0.9 − 1.4·0.5 = 20 % for L
    assert f.loc["noise_s", "ours"] == pytest.approx(40.0)
    assert f.loc["noise_l", "diff"] == pytest.approx(20.0 - 17.03)
    assert "σ = 0.5" in f.loc["noise_s", "note"]
    assert f.loc["t1_m", "ours_l2"] == pytest.approx(33.5) and f.loc["t1_m", "rank_ceiling"] == 160
    assert math.isnan(f.loc["noise_s", "ours_l2"])  # an accuracy has no L2 variant
    assert f.loc["params_s", "ours"] == pytest.approx(0.500123)
    assert f.loc["expansion", "ours"] == pytest.approx(
        np.mean([33.5, 38.5, 39.5]) / np.mean([15.5, 17.0, 17.5])
    )
    assert f["ours"].notna().all() or f.loc[f["ours"].isna()].index.tolist() == ["dino_teacher"]


def test_paper_comparison_teacher_rows_show_their_own_teacher() -> None:
    """One experiment plays both runs (as in the demo): the DINOv2 row shows the DINOv2
    teacher's ER from the experiment that ran it, never the CLIP teacher's."""
    opts = {"tables_experiment": "clip_x", "figures_experiment": "clip_x"}
    f = paper.paper_comparison_frame(make_summary(), **opts).set_index("key")
    assert f.loc["teacher_clip", "ours"] == pytest.approx(88.68)
    assert f.loc["dino_teacher", "ours"] == pytest.approx(70.0)
    assert f.loc["dino_teacher", "ours_l2"] == pytest.approx(71.0)
    assert "teacher of dino_x" in f.loc["dino_teacher", "note"]
    clip_only = make_summary()[lambda d: d["experiment"] == "clip_x"]
    g = paper.paper_comparison_frame(clip_only, **opts).set_index("key")
    assert math.isnan(g.loc["dino_teacher", "ours"])
    assert "no DINOv2 teacher" in g.loc["dino_teacher", "note"]


def test_paper_comparison_markdown() -> None:
    md = paper.paper_comparison(
        make_summary(), make_noise(), RANDOM, tables_experiment="clip_x",
        figures_experiment="missing_experiment",
    )  # fmt: skip
    assert "structural only" in md and RANDOM.notice() in md and RANDOM.footer() in md
    assert "| Student-M ER" in md and "16.62" in md and "-0.12" in md  # 16.50 − 16.62
    assert "not run" in md  # the DINOv2 run is absent from this summary
    assert "2.0M and 8.0M" in md
    assert "Ours, ER (L2 rows)" in md and "| 33.00" in md  # Student-M's L2 ER, 2 × 16.5
    for section in ("Table I", "Table II", "Ablation", "Figure 2", "Figure 3", "Parameters"):
        assert f"## {section}" in md
    assert "structural only" not in paper.paper_comparison(make_summary(), None, PRETRAINED)


def test_paper_comparison_opens_with_the_open_choices_and_ends_with_what_was_left_out() -> None:
    config = {
        "seeds": [0, 1, 2],
        "training": {
            "lr": 2e-3,
            "augment": {"crop_padding": 4, "grayscale_p": 0.2},
            "teacher_view": "clean",
            "per_student": {"tiny_vit": {"lr": 1e-3}},
        },
        "evaluation": {"noise_sigmas": [0.0, 0.1, 0.3], "probe": "linear", "probe_Cs": [1.0]},
        "teachers": {"clip_vit_b32": {"pretrained": None}},
    }
    md = paper.paper_comparison(
        make_summary(), make_noise(), RANDOM, tables_experiment="clip_x",
        figures_experiment="dino_x", config=config, omitted=["table2: no InfoNCE objective"],
    )  # fmt: skip
    opening = md.split("## Choices the paper leaves open")[0]
    assert "## Table I" not in opening  # the choices come before any number
    for row in (
        "| `seeds` | [0, 1, 2] |",
        "| `training.lr` | 0.002 |",
        "| `training.augment.grayscale_p` | 0.2 |",
        "| `training.teacher_view` | clean |",
        "| `training.per_student.tiny_vit.lr` | 0.001 |",
        "| `evaluation.probe_Cs` | [1.0] |",
        "| `σ of the paper's 21.32 % / 17.03 %` | 0.3 (highest configured) |",
        "| `headline effective rank` | raw rows",
        "| `teachers.clip_vit_b32.pretrained` | – |",
    ):
        assert row in md, row
    assert md.index("## Left out of this run") > md.index("## Figure 3")
    assert "- table2: no InfoNCE objective" in md


def test_paper_numbers_file_errors_name_the_entry_and_field() -> None:
    with pytest.raises(ArtifactError, match=r"'t1_s'.*\['valeu'\]"):
        paper.load_paper_numbers("t1_s: {section: s, quantity: q, valeu: 1, where: w}\n")
    with pytest.raises(ArtifactError, match=r"'x'.*metric 'accuracy'"):
        paper.load_paper_numbers(
            "x: {section: s, quantity: q, value: 1, where: w, experiment: clip, metric: accuracy}\n"
        )
    assert (
        paper.load_paper_numbers(
            "x: {section: s, quantity: q, value: 2, where: w, experiment: dino}\n"
        )["x"].value
        == 2.0
    )
