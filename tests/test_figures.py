"""Figures open, are ≥ 150 dpi, and carry title, labels, legend, notice and footer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kdspectra.errors import ArtifactError
from kdspectra.report import figures, tables
from kdspectra.report.figures_style import print_variant
from test_tables import PRETRAINED, RANDOM, make_noise, make_summary


def check_outputs(png: Path, pdf: Path) -> None:
    """Non-empty PNG of at least 150 dpi and a real PDF."""
    with Image.open(png) as im:
        assert im.format == "PNG"
        assert min(im.info["dpi"]) >= 150
        assert im.size[0] > 800 and im.size[1] > 500
        assert np.asarray(im.convert("L")).std() > 5  # not blank
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000


def texts(fig) -> list[tuple[str, object]]:
    """(text, colour) of every figure-level text (title, notice, footer)."""
    return [(t.get_text(), t.get_color()) for t in fig.texts]


def ceiling_lines(ax) -> dict[str, float]:
    """Label -> x of each dotted rank-ceiling marker of Figure 1."""
    return {
        ln.get_gid().removeprefix("ceiling:"): ln.get_xdata()[0]
        for ln in ax.get_lines()
        if (ln.get_gid() or "").startswith("ceiling:")
    }


def spectrum(decay: float, d: int = 64) -> np.ndarray:
    return 10.0 * np.exp(-decay * np.arange(d))


def test_fig1_single_and_seed_bands(tmp_path: Path) -> None:
    png, pdf = tmp_path / "fig1.png", tmp_path / "fig1.pdf"
    spectra = {
        "Teacher-CLIP": spectrum(0.02),
        "Student-S, cosine": [spectrum(0.3), spectrum(0.32)],  # e^-0.3i > 1e-6 for i ≤ 46
        "Student-S, cosine + InfoNCE": [spectrum(0.08), spectrum(0.09), np.r_[spectrum(0.1), 0]],
    }
    fig = figures.fig1(spectra, provenance=RANDOM, png=png, pdf=pdf)
    check_outputs(png, pdf)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    assert "index" in ax.get_xlabel() and "sigma" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("Teacher-CLIP (ER ") and len(labels) == 3
    # without the stage's JSON, a ceiling is where the curve stops (values above 1e-6)
    assert "ceiling 64" in labels[0] and "ceiling 47" in labels[1]
    assert ceiling_lines(ax) == {"Teacher-CLIP": 64, "Student-S, cosine": 47,
                                 "Student-S, cosine + InfoNCE": 64}  # fmt: skip
    assert len(ax.collections) == 2  # one ±std band per multi-seed curve
    assert (RANDOM.notice(), "red") in texts(fig)
    assert RANDOM.footer() in [t for t, _ in texts(fig)]


def test_fig1_without_notice_when_pretrained() -> None:
    fig = figures.fig1({"a": spectrum(0.1)}, provenance=PRETRAINED)
    assert all(colour != "red" for _, colour in texts(fig))


def test_fig1_from_spectrum_files(tmp_path: Path) -> None:
    paths = []
    for i, decay in enumerate((0.02, 0.2, 0.21, 0.08, 0.09)):
        p = tmp_path / f"s{i}.parquet"
        s = spectrum(decay)
        pd.DataFrame({"index": np.arange(len(s))[::-1], "singular_value": s[::-1]}).to_parquet(p)
        p.with_suffix(".json").write_text(json.dumps({"rank_ceiling": 20 if i else 359}))
        paths.append(p)
    np.testing.assert_allclose(figures.read_spectrum(paths[0]), spectrum(0.02))
    fig = figures.build(
        "fig1_spectrum", {"spectra": paths}, RANDOM, png=tmp_path / "f.png",
        student="cnn_s", seeds=[0, 1], teacher="clip_vit_b32", experiment="clip_x",
    )  # fmt: skip
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert [lab.split(" (ER")[0] for lab in labels] == [
        "Teacher-CLIP", "Student-S, cosine", "Student-S, cosine + InfoNCE",
    ]  # fmt: skip
    # the stage's JSON beside each spectrum gives the architecture's ceiling
    assert ceiling_lines(fig.axes[0]) == {"Teacher-CLIP": 359, "Student-S, cosine": 20,
                                          "Student-S, cosine + InfoNCE": 20}  # fmt: skip
    with pytest.raises(ArtifactError, match="expected 1 teacher"):
        figures.fig1_from_files(paths[:4], student="cnn_s", seeds=[0, 1])
    with pytest.raises(ArtifactError, match="index, singular_value"):
        pd.DataFrame({"x": [1.0]}).to_parquet(tmp_path / "bad.parquet")
        figures.read_spectrum(tmp_path / "bad.parquet")


def test_fig2_from_csv_with_error_bars(tmp_path: Path) -> None:
    data = tables.fig2_data(make_summary(seeds=(0, 1)), experiment="dino_x")
    csv = tmp_path / "fig2.csv"
    data.to_csv(csv, index=False)
    png, pdf = tmp_path / "fig2.png", tmp_path / "fig2.pdf"
    fig = figures.build("fig2_effective_rank", {"table": csv}, RANDOM, png=png, pdf=pdf)
    check_outputs(png, pdf)
    ax = fig.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    raw = [50.5, 55.5, 56.5, 80.5, 82.5, 83.5]
    assert heights == sorted(raw + [2 * h - 0.5 for h in raw])  # fixture: L2 ER = 2 ER + k
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "cosine, ER (raw)" in legend and "cosine + InfoNCE, ER (L2 rows)" in legend
    # ceilings 80 and 160 lie within the bars' scale (max 167): drawn as ticks; 320 is not
    assert "rank ceiling" in legend
    assert [t.get_text() for t in ax.texts if t.get_text().startswith("ceiling")] == [
        "ceiling 320 ↑"
    ]
    assert any(t.startswith("Teacher-DINOv2") for t in legend)
    assert "Student-S\n(0.50M)" in [t.get_text() for t in ax.get_xticklabels()]
    assert "effective rank" in ax.get_ylabel()
    assert (RANDOM.notice(), "red") in texts(fig)


def test_fig3_lines_and_bands(tmp_path: Path) -> None:
    data = tables.fig3_data(make_summary(), make_noise(seeds=(0, 1)), experiment="dino_x")
    png, pdf = tmp_path / "fig3.png", tmp_path / "fig3.pdf"
    fig = figures.fig3(data, provenance=RANDOM, chance=0.01, png=png, pdf=pdf)
    check_outputs(png, pdf)
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    student_s = lines["Student-S (0.50M)"]
    np.testing.assert_allclose(student_s.get_xdata(), [0.0, 0.1, 0.5])
    np.testing.assert_allclose(student_s.get_ydata(), [90.5, 80.5, 40.5])  # percent
    assert "Teacher-DINOv2 (87.85M)" in lines and "chance (1.0 %, 1 / classes)" in lines
    chance = [ln for ln in ax.get_lines() if ln.get_gid() == "chance"]
    assert len(chance) == 1 and list(chance[0].get_ydata()) == [1.0, 1.0]
    assert len(ax.collections) == 3  # seed bands for the three students, none for the teacher
    assert "%" in ax.get_ylabel() and "sigma" in ax.get_xlabel()


def test_fig3_chance_line_is_the_claims_majority_class_share() -> None:
    """An unbalanced test set: the line sits at the summary's chance_accuracy (what the
    robustness claims test against), not at the 1 / classes fallback."""
    summary = make_summary()
    summary["chance_accuracy"] = 0.013
    data = tables.fig3_data(summary, make_noise(seeds=(0, 1)), experiment="dino_x")
    fig = figures.fig3(data, provenance=RANDOM, chance=0.01)
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "chance"]
    assert list(line.get_ydata()) == [1.3, 1.3]
    assert line.get_label() == "chance (1.3 %, majority class)"


def test_figure_errors() -> None:
    with pytest.raises(ArtifactError):
        figures.fig1({})
    with pytest.raises(ArtifactError, match="fig2 data"):
        figures.fig2(pd.DataFrame())
    with pytest.raises(ValueError, match="unknown figure"):
        figures.build("fig4", {"table": "x.csv"})


@pytest.mark.parametrize("provenance", [RANDOM, PRETRAINED])
def test_print_variant_has_one_footer_line_and_no_banner(provenance) -> None:
    data = tables.fig3_data(make_summary(), make_noise(seeds=(0, 1)), experiment="dino_x")
    fig = figures.fig3(data, provenance=provenance, chance=0.01)
    top = fig.axes[0].get_position().y1
    with print_variant(fig) as line:
        visible = [t.get_text() for t in fig.texts if t.get_visible()]
        assert visible == [line.get_text()]  # no title, no banner: one footer line
        assert provenance.footer() in line.get_text() and line.get_fontsize() <= 6
        assert line.get_text().startswith("⚠") == (provenance is RANDOM)
        assert fig.axes[0].get_position().y1 > top + 0.05  # the plot takes the freed space
    assert fig.axes[0].get_position().y1 == pytest.approx(top)  # screen variant restored
    assert len(fig.texts) == len([t for t in fig.texts if t.get_visible()])


def test_every_figure_saves_a_print_pdf_with_the_notice(tmp_path: Path) -> None:
    """The PDF is the print variant: its text holds the notice and the provenance once."""
    pdf = tmp_path / "fig2.pdf"
    figures.fig2(tables.fig2_data(make_summary(seeds=(0, 1)), experiment="dino_x"),
                 provenance=RANDOM, pdf=pdf)  # fmt: skip
    assert pdf.read_bytes()[:5] == b"%PDF-"
    fig = figures.fig1({"a": spectrum(0.1)}, provenance=RANDOM)
    with print_variant(fig) as line:
        assert line.get_text().startswith("⚠ " + RANDOM.notice())


def test_fig4_and_fig5_print_variants_keep_only_the_footer_line() -> None:
    from kdspectra.report.corruption_figure import fig5
    from test_corruption_report import SEEDS, STUDENTS, _corruptions
    from test_tracking import synthetic_fig4

    noise = pd.DataFrame(
        [
            {"experiment": "e", "role": "student", "student": s, "objective": "cosine_infonce"}
            | {"seed": k, "sigma": sigma, "accuracy": 0.8 - sigma}
            for s in STUDENTS
            for k in SEEDS
            for sigma in (0.0, 0.5)
        ]
    )
    for fig in (
        figures.fig4(synthetic_fig4(), provenance=RANDOM),
        fig5(_corruptions(), noise, RANDOM, experiment="e"),
    ):
        with print_variant(fig) as line:
            assert [t for t in fig.texts if t.get_visible()] == [line]
            assert RANDOM.notice() in line.get_text() and RANDOM.footer() in line.get_text()
