"""A student added to the registry flows through the report: the table builders show its
display name (and its ablation label), and Figures 2–3 draw it, with no other edit."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from kdspectra import registry
from kdspectra.report import figures, tables
from test_tables import make_noise, make_summary

DUMMY = registry.StudentEntry(
    name="dummy_x",
    display_name="Student-X",
    ablation_name="Dummy family",
    family="dummy",
    params_budget=1e6,
    architecture=object(),
)


@pytest.fixture
def dummy() -> Iterator[str]:
    registry.register_student(DUMMY, builder=lambda embed_dim, width_mult: None)
    try:
        yield DUMMY.name
    finally:
        registry.unregister_student(DUMMY.name)


def _with_dummy(frame: pd.DataFrame) -> pd.DataFrame:
    """The cnn_s rows again, as the dummy student's."""
    rows = frame[frame["student"] == "cnn_s"].assign(student=DUMMY.name)
    return pd.concat([frame, rows], ignore_index=True)


def _texts(fig) -> str:
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels()]
    legends = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts]
    return " | ".join(labels + legends)


def test_registered_student_flows_through_tables_and_figures(dummy: str) -> None:
    summary, noise = _with_dummy(make_summary()), _with_dummy(make_noise())
    t1 = tables.table1(summary, experiment="clip_x", students=["cnn_s", dummy])
    assert t1["model"].tolist() == ["Teacher-CLIP", "Student-S", "Student-X"]
    abl = tables.ablation(summary, experiment="clip_x", students=["cnn_s", dummy])
    assert abl["model"].tolist() == ["CNN", "Dummy family"]
    fig2 = tables.fig2_data(summary, experiment="dino_x", students=["cnn_s", dummy])
    assert "Student-X" in set(fig2["model"])
    assert "Student-X" in _texts(figures.fig2(fig2))
    fig3 = tables.fig3_data(summary, noise, experiment="dino_x", students=[dummy])
    assert set(fig3.loc[fig3["role"] == "student", "model"]) == {"Student-X"}
    assert "Student-X" in _texts(figures.fig3(fig3))
