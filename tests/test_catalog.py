"""The metric catalog is the one list: every entry is computed, carried and shown, and
everything computed, carried or shown is an entry (derived from behaviour, not restated)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdspectra import cli, stages
from kdspectra.data.embeddings import save_embeddings
from kdspectra.io import save_json, save_npy
from kdspectra.metrics.catalog import METRICS, REPORTED_METRICS
from kdspectra.metrics.geometry import geometry_metrics
from kdspectra.report import render, tables
from kdspectra.report.columns import SPECTRUM_KEYS

GEOMETRY = [m for m in METRICS if m.source == "geometry"]
N, D, CLASSES = 240, 32, 4


def _anisotropic(rng: np.random.Generator, decay: float) -> np.ndarray:
    """N × D rows whose column scales fall as i^−decay (0: isotropic), four classes."""
    scale = np.arange(1, D + 1, dtype=np.float64) ** -decay
    return (rng.normal(size=(N, D)) * scale).astype(np.float32)


def _labels() -> np.ndarray:
    return np.arange(N) % CLASSES


def test_geometry_metrics_returns_exactly_the_catalog_and_each_needs_what_it_says() -> None:
    rng = np.random.default_rng(0)
    x, ref = _anisotropic(rng, 0.5), _anisotropic(rng, 0.5)
    bare = set(geometry_metrics(x))
    with_labels = set(geometry_metrics(x, _labels()))
    with_ref = set(geometry_metrics(x, reference=ref))
    assert bare | with_labels | with_ref == {m.name for m in GEOMETRY}
    assert with_labels - bare == {m.name for m in GEOMETRY if m.needs == "labels"}
    assert with_ref - bare == {m.name for m in GEOMETRY if m.needs == "reference"}


def _spectrum(tmp: Path, name: str, emb: np.ndarray, teacher: Path | None) -> Path:
    """Run the spectrum stage on ``emb`` (a student of ``teacher`` when given)."""
    save_embeddings(tmp / f"{name}.npy", tmp / f"{name}.parquet", emb, _labels(), "test")
    inputs = {"test": tmp / f"{name}.npy", "labels": tmp / "y.npy"}
    if teacher is not None:
        save_json(tmp / "meta.json", {"feature_width": D, "params": 1000})
        # the teacher's test rows stand in for its train rows (the fidelity guard's c0)
        inputs |= {"teacher": teacher, "teacher_train": teacher, "meta": tmp / "meta.json"}
    out = {"values": tmp / f"{name}_v.parquet", "stats": tmp / f"{name}.json"}
    stages.measure_model(inputs, out, {"alpha_req_fit": [2, 20]})
    return out["stats"]


@pytest.fixture
def run(tmp_path: Path) -> dict[str, Path]:
    """Spectrum JSONs of a teacher and its student, and the run summary collect makes."""
    rng = np.random.default_rng(1)
    save_npy(tmp_path / "y.npy", _labels().astype(np.int64))
    teacher = _anisotropic(rng, 0.3)
    student = (teacher @ rng.normal(size=(D, D)) * 0.1 + _anisotropic(rng, 1.0)).astype("f4")
    t = _spectrum(tmp_path, "t", teacher, None)
    s = _spectrum(tmp_path, "s", student, tmp_path / "t.npy")
    curve = pd.DataFrame({"sigma": [0.0, 0.5], "accuracy": [0.9, 0.5]})
    curve.to_parquet(tmp_path / "noise.parquet")
    base = {
        "experiment": "e",
        "dataset": "d",
        "teacher": "tch",
        "noise": tmp_path / "noise.parquet",
    }
    records = [
        base | {"model": "teacher", "spectrum": t, "meta": tmp_path / "meta.json"},
        base | {"model": "cnn_m/cosine/seed0", "spectrum": s, "meta": tmp_path / "meta.json"},
    ]
    out = {"summary": tmp_path / "summary.parquet", "noise": tmp_path / "long.parquet"}
    stages.collect({}, out, {"records": records})
    return {"teacher": t, "student": s, "summary": out["summary"]}


def test_the_spectrum_stage_writes_every_entry_and_collect_carries_the_summary_ones(run) -> None:
    stats = json.loads(run["student"].read_text())
    assert {m.column for m in METRICS} <= set(stats)
    # a student has a reference (its teacher): its alignment metrics are numbers
    assert all(np.isfinite(stats[m.column]) for m in METRICS if m.needs == "reference")
    assert sorted(SPECTRUM_KEYS) == sorted({m.column for m in METRICS if m.summary})
    summary = pd.read_parquet(run["summary"])
    carried = [c for c in summary.columns if c in stats]
    assert carried == list(SPECTRUM_KEYS)  # the summary's order is SPECTRUM_KEYS'
    assert not {m.column for m in METRICS if not m.summary} & set(summary.columns)


def test_the_geometry_table_shows_every_reported_entry_with_its_label_and_decimals(run) -> None:
    summary = pd.read_parquet(run["summary"])
    shown = render.display_frame(tables.build("geometry", summary))
    student = shown.iloc[1]
    for m in METRICS:
        if m.column not in REPORTED_METRICS:
            continue
        cell = student[m.label]
        assert cell != "–", m.name
        assert len(cell.split(".")[1]) == m.decimals, (m.name, cell)
    assert {m.column for m in GEOMETRY if not m.diagnostic} == set(REPORTED_METRICS)


def test_the_cli_prints_every_geometry_entry_with_its_help(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(2)
    np.save(tmp_path / "x.npy", _anisotropic(rng, 0.5))
    np.save(tmp_path / "r.npy", _anisotropic(rng, 0.5))
    np.save(tmp_path / "y.npy", _labels())
    args = ["geometry", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy")]
    args += ["--reference", str(tmp_path / "r.npy"), "--alpha-fit", "2", "20"]
    assert cli.main(args) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    printed = {line.split()[0]: line for line in lines}
    assert set(printed) == {m.name for m in GEOMETRY}
    for m in GEOMETRY:
        assert printed[m.name].rstrip().endswith(m.help), m.name
    assert cli.main([*args, "--json"]) == 0
    keys = set(json.loads(capsys.readouterr().out)) - {"n", "dim", "dtype"}
    assert keys == {m.name for m in GEOMETRY}


def test_direction_says_which_way_is_more_spread(tmp_path: Path) -> None:
    """Every metric with a direction moves that way from a collapsed to an isotropic matrix
    (through the spectrum stage, so the stage-only metrics are checked too)."""
    rng = np.random.default_rng(3)
    save_npy(tmp_path / "y.npy", _labels().astype(np.int64))
    spread = json.loads(_spectrum(tmp_path, "iso", _anisotropic(rng, 0.0), None).read_text())
    narrow = json.loads(_spectrum(tmp_path, "col", _anisotropic(rng, 1.5), None).read_text())
    directed = [m for m in METRICS if m.direction is not None]
    assert directed
    for m in directed:
        more, less = spread[m.column], narrow[m.column]
        assert (more > less) if m.direction == "higher" else (more < less), (m.name, more, less)


def test_names_columns_and_labels_are_unique() -> None:
    for field in ("name", "column", "label"):
        values = [getattr(m, field) for m in METRICS]
        assert len(values) == len(set(values)), field
