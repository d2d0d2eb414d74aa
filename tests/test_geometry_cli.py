"""``kdspectra geometry``: every input format gives the array's metrics; bad input → exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.numpy import save_file

from kdspectra.cli import main
from kdspectra.metrics.geometry import geometry_metrics

X = (np.random.default_rng(0).standard_normal((120, 6)) * np.arange(1, 7)).astype(np.float32)
METRICS = {
    "effective_rank", "effective_rank_l2", "rankme", "participation_ratio", "stable_rank",
    "alpha_req", "alpha_req_r2", "alpha_req_points", "uniformity", "uniformity_subsample",
}  # fmt: skip


def write(path: Path, kind: str, x: np.ndarray = X) -> Path:
    """Save ``x`` in the format ``kind`` (one array, or one among others behind key 'emb')."""
    if kind == "npy":
        np.save(path, x)
    elif kind == "npz":
        np.savez(path, emb=x)
    elif kind == "npz_key":
        np.savez(path, emb=x, other=np.zeros(3))
    elif kind in ("pt", "pth"):
        torch.save(torch.from_numpy(x), path)
    elif kind == "pt_dict":
        torch.save({"emb": torch.from_numpy(x), "ids": torch.arange(len(x))}, path)
    elif kind == "safetensors":
        save_file({"emb": x}, str(path))
    elif kind == "parquet":
        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])])
        frame.assign(label=np.arange(len(x)) % 3).to_parquet(path)
    elif kind == "csv":
        pd.DataFrame(x, columns=[f"f{i}" for i in range(x.shape[1])]).to_csv(path, index=False)
    elif kind == "csv_headerless":
        np.savetxt(path, x, delimiter=",", fmt="%.9g")
    return path


SUFFIX = {"npz_key": "npz", "pt_dict": "pt", "csv_headerless": "csv"}


def run_json(capsys, *argv: str) -> dict:
    assert main(["geometry", *argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "kind",
    ["npy", "npz", "npz_key", "pt", "pth", "pt_dict", "safetensors", "parquet", "csv",
     "csv_headerless"],
)  # fmt: skip
def test_every_format_gives_the_arrays_metrics(tmp_path: Path, capsys, kind: str) -> None:
    path = write(tmp_path / f"emb.{SUFFIX.get(kind, kind)}", kind)
    key = ["--key", "emb"] if kind in ("npz_key", "pt_dict") else []
    out = run_json(capsys, str(path), *key)
    expected = geometry_metrics(X)
    assert out["n"] == 120 and out["dim"] == 6
    tol = 1e-6 if kind.startswith("csv") else 1e-12  # csv holds 9 significant digits
    for name, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert out[name] is None, name  # JSON has no NaN
        elif value is not None:
            assert out[name] == pytest.approx(value, rel=tol), name


def test_json_keys_and_optional_metrics(tmp_path: Path, capsys) -> None:
    emb = write(tmp_path / "emb.npy", "npy")
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(120) % 4)
    ref = tmp_path / "teacher.npy"
    np.save(ref, X @ np.random.default_rng(1).standard_normal((6, 6)))
    bare = run_json(capsys, str(emb))
    assert set(bare) == METRICS | {"n", "dim", "dtype"}
    assert bare["dtype"] == "float32"
    assert math.isnan(geometry_metrics(X)["alpha_req"]) and bare["alpha_req"] is None  # D = 6
    full = run_json(capsys, str(emb), "--labels", str(labels), "--reference", str(ref))
    assert set(full) - set(bare) == {"per_class_effective_rank", "linear_cka", "cos_to_reference"}
    x64 = X.astype(np.float64)
    want = geometry_metrics(x64, np.arange(120) % 4, np.load(ref))
    assert full["linear_cka"] == pytest.approx(want["linear_cka"], rel=1e-12)
    assert full["per_class_effective_rank"] == pytest.approx(want["per_class_effective_rank"])


def test_labels_from_a_table_with_string_classes(tmp_path: Path, capsys) -> None:
    emb = write(tmp_path / "emb.npy", "npy")
    names = np.array(["cat", "dog", "fox"])[np.arange(120) % 3]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": np.arange(120), "label": names}).to_csv(labels, index=False)
    out = run_json(capsys, str(emb), "--labels", str(labels))
    assert out["per_class_effective_rank"] == pytest.approx(
        geometry_metrics(X, names)["per_class_effective_rank"]
    )


def test_table_output_names_every_metric(tmp_path: Path, capsys) -> None:
    emb = write(tmp_path / "emb.pt", "pt")
    assert main(["geometry", str(emb)]) == 0
    out = capsys.readouterr().out
    assert "120 rows × 6 columns, float32" in out
    for name in METRICS:
        assert name in out
    er = geometry_metrics(X)["effective_rank"]
    assert f"{er:.4f}" in out


def test_plot_writes_a_png(tmp_path: Path, capsys) -> None:
    x = np.random.default_rng(2).standard_normal((300, 40)) * np.arange(1, 41) ** -0.7
    emb = write(tmp_path / "emb.npy", "npy", x)
    png = tmp_path / "plots" / "spectrum.png"
    png.parent.mkdir()
    assert main(["geometry", str(emb), "--plot", str(png)]) == 0
    assert str(png) in capsys.readouterr().out
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 500
    assert [p.name for p in png.parent.iterdir()] == ["spectrum.png"]  # no temp left behind


def test_rank_alias_reads_every_format(tmp_path: Path, capsys) -> None:
    emb = write(tmp_path / "emb.safetensors", "safetensors")
    assert main(["rank", str(emb)]) == 0
    assert f"{geometry_metrics(X)['effective_rank']:.4f}" in capsys.readouterr().out


def bad_file(tmp_path: Path, case: str) -> tuple[Path, list[str]]:
    """A file exhibiting ``case`` and extra CLI arguments."""
    p = tmp_path / "bad"
    if case == "ragged_csv":
        p = p.with_suffix(".csv")
        p.write_text("a,b\n1,2\n3,4,5\n")
    elif case == "non_numeric_csv":
        p = p.with_suffix(".csv")
        pd.DataFrame({"a": [1.0, 2.0], "name": ["x", "y"]}).to_csv(p, index=False)
    elif case == "ragged_npy":
        p = p.with_suffix(".npy")
        np.save(p, np.array([[1.0, 2.0], [3.0]], dtype=object), allow_pickle=True)
    elif case == "string_npy":
        p = p.with_suffix(".npy")
        np.save(p, np.array([["a", "b"], ["c", "d"]]))
    elif case == "nan":
        p = p.with_suffix(".npz")
        np.savez(p, emb=np.array([[1.0, np.nan], [0.0, 1.0]]))
    elif case == "inf_pt":
        p = p.with_suffix(".pt")
        torch.save(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), p)
    elif case == "one_d":
        p = p.with_suffix(".safetensors")
        save_file({"emb": np.ones(5, np.float32)}, str(p))
    elif case == "one_row":
        p = p.with_suffix(".parquet")
        pd.DataFrame({"a": [1.0], "b": [2.0]}).to_parquet(p)
    elif case == "suffix":
        p = p.with_suffix(".txt")
        p.write_text("1 2\n3 4\n")
    elif case == "several_arrays":
        p = write(p.with_suffix(".npz"), "npz_key")
    elif case == "wrong_key":
        p = write(p.with_suffix(".pt"), "pt_dict")
        return p, ["--key", "nope"]
    elif case == "pickle_pt":
        p = p.with_suffix(".pt")
        torch.save({"emb": torch.ones(3, 2), "obj": object()}, p)
    elif case == "labels_length":
        p = write(p.with_suffix(".npy"), "npy")
        labels = tmp_path / "labels.npy"
        np.save(labels, np.zeros(7))
        return p, ["--labels", str(labels)]
    elif case == "reference_rows":
        p = write(p.with_suffix(".npy"), "npy")
        ref = write(tmp_path / "ref.npy", "npy", X[:50])
        return p, ["--reference", str(ref)]
    elif case == "constant":
        p = write(p.with_suffix(".npy"), "npy", np.full((10, 3), 2.0))
    return p, []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("ragged_csv", "ragged"),
        ("non_numeric_csv", "non-numeric columns ['name']"),
        ("ragged_npy", "object array (ragged"),
        ("string_npy", "expected real numbers"),
        ("nan", "NaN/inf"),
        ("inf_pt", "NaN/inf"),
        ("one_d", "expected 2 dimensions"),
        ("one_row", "at least 2 rows"),
        ("suffix", "unknown suffix '.txt'"),
        ("several_arrays", "choose one with --key"),
        ("wrong_key", "no entry named 'nope'"),
        ("pickle_pt", "weights_only"),
        ("labels_length", "expected 120 labels"),
        ("reference_rows", "expected 120 rows"),
        ("constant", "no variance"),
    ],
)
def test_bad_input_names_the_file_and_the_problem(
    tmp_path: Path, capsys, case: str, message: str
) -> None:
    path, extra = bad_file(tmp_path, case)
    assert main(["geometry", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err and err.count("\n") == 1  # one line
    named = {"labels_length": "labels.npy", "reference_rows": "ref.npy"}.get(case, path.name)
    if case != "constant":  # the metric, not the file, is the problem there
        assert named in err, err
