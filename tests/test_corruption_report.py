"""tables/corruptions and Figure 5 from synthetic per-model records with known means."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdspectra.data.corruptions import BENCHMARK_15, CORRUPTIONS, FAMILIES
from kdspectra.report.corruption_figure import fig5
from kdspectra.report.corruption_tables import corruption_table
from kdspectra.report.render import to_markdown

STUDENTS = ("cnn_s", "cnn_l")
SEEDS = (0, 1)


def _accuracy(student: str, seed: int, corruption: str, severity: int) -> float:
    """A distinct, known value per cell: lower with severity, offset per corruption."""
    base = 0.9 if student == "cnn_l" else 0.8
    return base - 0.02 * severity - 0.001 * CORRUPTIONS.index(corruption) + 0.01 * seed


def _corruptions(names=CORRUPTIONS) -> pd.DataFrame:
    rows = [
        {
            "experiment": "e",
            "role": "student",
            "student": s,
            "objective": "cosine_infonce",
            "seed": seed,
            "corruption": c,
            "severity": sev,
            "accuracy": _accuracy(s, seed, c, sev),
            "knn_accuracy": _accuracy(s, seed, c, sev) - 0.1,
        }
        for s in STUDENTS
        for seed in SEEDS
        for c in names
        for sev in range(1, 6)
    ]
    return pd.DataFrame(rows)


def _summary() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "experiment": "e",
                "teacher": "clip_vit_b32",
                "role": "student",
                "student": s,
                "objective": "cosine_infonce",
                "seed": seed,
                "clean_accuracy": 0.95 if s == "cnn_l" else 0.85,
            }
            for s in STUDENTS
            for seed in SEEDS
        ]
    )


def _expected_mean(student: str, names) -> float:
    return float(
        np.mean(
            [
                _accuracy(student, seed, c, sev)
                for seed in SEEDS
                for c in names
                for sev in range(1, 6)
            ]
        )
    )


def test_table_means_are_over_the_named_corruptions_and_relative_to_clean():
    table = corruption_table(_corruptions(), _summary()).set_index("model")
    row = table.loc["Student-S, cosine + InfoNCE"]
    assert row["mean15_accuracy"] == pytest.approx(_expected_mean("cnn_s", BENCHMARK_15))
    assert row["mean19_accuracy"] == pytest.approx(_expected_mean("cnn_s", CORRUPTIONS))
    for family, names in FAMILIES.items():
        assert row[f"{family}_accuracy"] == pytest.approx(_expected_mean("cnn_s", names))
    assert row["relative19"] == pytest.approx(_expected_mean("cnn_s", CORRUPTIONS) / 0.85)
    assert row["knn_mean19_accuracy"] == pytest.approx(_expected_mean("cnn_s", CORRUPTIONS) - 0.1)
    assert row["n_seeds"] == len(SEEDS)
    # The benchmark's 15 exclude four corruptions, so the two means differ here.
    assert row["mean15_accuracy"] != pytest.approx(row["mean19_accuracy"])


def test_a_mean_over_corruptions_not_all_run_is_left_empty():
    run = [c for c in CORRUPTIONS if c != "fog"]
    row = corruption_table(_corruptions(run), _summary()).iloc[0]
    assert np.isnan(row["mean15_accuracy"]) and np.isnan(row["mean19_accuracy"])
    assert not np.isnan(row["noise_accuracy"])  # a family mean is over what was run


def test_table_renders_with_readable_headers():
    md = to_markdown(corruption_table(_corruptions(), _summary()))
    assert "Mean, 15 benchmark" in md and "mean15_accuracy" not in md


def test_fig5_draws_every_family_and_writes_png(tmp_path):
    noise = pd.DataFrame(
        [
            {
                "experiment": "e",
                "role": "student",
                "student": s,
                "objective": "cosine_infonce",
                "seed": seed,
                "sigma": sigma,
                "accuracy": 0.8 - sigma,
            }
            for s in STUDENTS
            for seed in SEEDS
            for sigma in (0.0, 0.1, 0.5)
        ]
    )
    png = tmp_path / "fig5.png"
    fig = fig5(_corruptions(), noise, experiment="e", teacher="clip_vit_b32", png=png)
    titles = " ".join(ax.get_title() for ax in fig.axes).lower()
    assert all(family in titles for family in FAMILIES)
    assert png.stat().st_size > 10_000
