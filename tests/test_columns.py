"""The artifact column contracts of kdspectra.report.columns: the kNN column rule that
writers and readers share, and the column order of the files the stages write."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kdspectra import stages
from kdspectra.report import columns


@pytest.mark.parametrize(
    ("column", "knn"),
    [
        ("knn20_accuracy", True),
        ("knn5_accuracy", True),
        ("knn_accuracy", False),  # the corruption table's first-k copy, not a k of its own
        ("knnx_accuracy", False),
        ("knn20_accuracy_std", False),
        ("accuracy", False),
    ],
)
def test_is_knn_column(column: str, knn: bool) -> None:
    assert columns.is_knn_column(column) is knn


def test_knn_and_clean_columns_round_trip() -> None:
    knn = columns.knn_columns([20, 5])
    curve = ["sigma", "accuracy", "probe_C", *knn.values()]
    accuracies = columns.accuracy_columns(curve)
    summary = ["params", *(columns.clean_column(c) for c in accuracies), "clean_knn_note"]
    assert columns.clean_accuracy_columns(summary) == [
        "clean_accuracy",
        "clean_knn20_accuracy",
        "clean_knn5_accuracy",
    ]


def test_collect_corruptions_writes_the_contract_order(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"probe_C": [1.0], "knn_k": [20], "knn5_accuracy": [0.3], "knn20_accuracy": [0.4]}
        | {"corruption": ["fog"], "severity": [1], "accuracy": [0.5], "knn_accuracy": [0.4]}
    )
    frame.to_parquet(tmp_path / "c.parquet")
    records = [
        {"experiment": "e", "model": m, "path": tmp_path / "c.parquet"}
        for m in ("teacher", "cnn_m/cosine/seed1")
    ]
    out = tmp_path / "all.parquet"
    stages.collect_corruptions({}, {"corruptions": out}, {"records": records})
    got = pd.read_parquet(out)
    want = [*columns.CORRUPTION_COLUMNS, "knn_k", "knn5_accuracy", "knn20_accuracy"]
    assert list(got.columns) == want  # probe_C stays in the per-model file
    assert got["seed"].tolist() == [-1, 1] and got["role"].tolist() == ["teacher", "student"]
