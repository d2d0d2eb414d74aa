"""Figures open, are ≥ 150 dpi, and carry title, labels, legend, notice and footer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kdspectra.errors import ArtifactError
from kdspectra.report import figures, tables
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


def spectrum(decay: float, d: int = 64) -> np.ndarray:
    return 10.0 * np.exp(-decay * np.arange(d))


def test_fig1_single_and_seed_bands(tmp_path: Path) -> None:
    png, pdf = tmp_path / "fig1.png", tmp_path / "fig1.pdf"
    spectra = {
        "Teacher-CLIP": spectrum(0.02),
        "Student-S, cosine": [spectrum(0.2), spectrum(0.22)],
        "Student-S, cosine + InfoNCE": [spectrum(0.08), spectrum(0.09), np.r_[spectrum(0.1), 0]],
    }
    fig = figures.fig1(spectra, provenance=RANDOM, png=png, pdf=pdf)
    check_outputs(png, pdf)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert "index" in ax.get_xlabel() and "sigma" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("Teacher-CLIP (ER ") and len(labels) == 3
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
    assert "Teacher-DINOv2 (87.85M)" in lines and "chance (1.0%)" in lines
    assert len(ax.collections) == 3  # seed bands for the three students, none for the teacher
    assert "%" in ax.get_ylabel() and "sigma" in ax.get_xlabel()


def test_figure_errors() -> None:
    with pytest.raises(ArtifactError):
        figures.fig1({})
    with pytest.raises(ArtifactError, match="fig2 data"):
        figures.fig2(pd.DataFrame())
    with pytest.raises(ValueError, match="unknown figure"):
        figures.build("fig4", {"table": "x.csv"})
