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
from kdspectra.data.embedding_files import SUFFIXES
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


# ------------------------------------------------------------- issue 24: readers and options


def _one_line_error(capsys, *argv: str) -> str:
    assert main(["geometry", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".safetensors", ".parquet", ".csv"])
def test_empty_file_is_one_line(tmp_path: Path, capsys, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    err = _one_line_error(capsys, str(path))
    assert path.name in err and "empty" in err


def test_truncated_npy_is_named_truncated(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "cut.npy", "npy")
    path.write_bytes(path.read_bytes()[:-100])
    err = _one_line_error(capsys, str(path))
    assert "cut.npy" in err and "truncated" in err


def test_truncated_npz_is_one_line(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "cut.npz", "npz")
    path.write_bytes(path.read_bytes()[:200])
    err = _one_line_error(capsys, str(path))
    assert "cut.npz" in err


DECOY = "admin:$6$Qw3rTy$9f8e7d6c5b4a39281706f5e4d3c2b1a0:19000:0:99999:7:::"


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("first_line", [DECOY, "hunter2secret"], ids=["passwd line", "one word"])
def test_a_symlinked_text_file_is_never_quoted(
    tmp_path: Path, capsys, suffix: str, first_line: str
) -> None:
    """A file that is not a table (here a symlink to a password-file-like text) is refused
    without its content appearing in the error, whatever the suffix it is given."""
    secret = tmp_path / "shadow"
    secret.write_text(f"{first_line}\nroot:*:19000:0:99999:7:::\n")
    link = tmp_path / f"emb{suffix}"
    link.symlink_to(secret)
    err = _one_line_error(capsys, str(link))
    assert link.name in err
    for fragment in (first_line, "Qw3rTy", "9f8e7d6c", "hunter2", "root:*"):
        assert fragment not in err, err


def _exotic_tensor(kind: str) -> torch.Tensor:
    dense = torch.from_numpy(X)
    if kind == "sparse_coo":
        return dense.to_sparse()
    if kind == "sparse_csr":
        return dense.to_sparse_csr()
    if kind == "meta":
        return torch.empty(120, 6, device="meta")
    return torch.quantize_per_tensor(dense, 0.1, 0, torch.qint8)


@pytest.mark.parametrize(
    ("kind", "problem"),
    [("sparse_coo", "dense"), ("sparse_csr", "dense"), ("meta", "meta"), ("quantized", "quant")],
)
def test_exotic_tensor_layouts_are_one_line(
    tmp_path: Path, capsys, kind: str, problem: str
) -> None:
    path = tmp_path / f"{kind}.pt"
    torch.save({"emb": _exotic_tensor(kind)}, path)
    err = _one_line_error(capsys, str(path))
    assert path.name in err and problem in err


def test_npz_that_inflates_past_the_cap_is_refused_from_its_header(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small .npz whose member inflates far past the cap (a zip bomb, scaled down here:
    the cap is lowered to 1 MiB, the member is 64 MiB of zeros) is refused before
    numpy inflates it."""
    from kdspectra.data import embedding_files

    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, emb=np.zeros((8192, 1024), np.float64))
    assert path.stat().st_size < 1 << 20
    monkeypatch.setattr(embedding_files, "MAX_INFLATED_BYTES", 1 << 20)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("inflated before the check"))
    err = _one_line_error(capsys, str(path))
    assert "bomb.npz" in err and "inflates" in err


def test_parquet_row_group_that_inflates_past_the_cap_is_refused(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kdspectra.data import embedding_files

    path = tmp_path / "bomb.parquet"
    pd.DataFrame(np.zeros((200_000, 8))).rename(columns=str).to_parquet(path)
    monkeypatch.setattr(embedding_files, "MAX_INFLATED_BYTES", 1 << 20)
    err = _one_line_error(capsys, str(path))
    assert "bomb.parquet" in err and "inflates" in err


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("bool_csv", "column 'flag' is boolean"),
        ("nullable_parquet", "column 'f1' is nullable"),
        ("empty_cell_csv", "column 'f1' has 1 missing value"),
    ],
)
def test_booleans_and_missing_values_are_named_as_such(
    tmp_path: Path, capsys, case: str, fragment: str
) -> None:
    frame = pd.DataFrame(X[:, :3], columns=["f0", "f1", "f2"])
    if case == "bool_csv":
        path = tmp_path / "b.csv"
        frame.assign(flag=np.arange(len(X)) % 2 == 0).to_csv(path, index=False)
    elif case == "nullable_parquet":
        path = tmp_path / "n.parquet"
        frame.assign(f1=pd.array([1, None, *range(len(X) - 2)], dtype="Int64")).to_parquet(path)
    else:
        path = tmp_path / "e.csv"
        frame.astype(object).assign(f1=["", *frame["f1"][1:]]).to_csv(path, index=False)
    err = _one_line_error(capsys, str(path))
    assert path.name in err and fragment in err and "ragged" not in err


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        (["--seed", "-1"], "--seed: expected an integer >= 0, found -1"),
        (
            ["--alpha-fit", "100", "10"],
            "--alpha-fit: expected LO HI with 1 <= LO < HI, found 100 10",
        ),
        (["--alpha-fit", "0", "10"], "--alpha-fit"),
        (["--plot", "spectrum.xyz"], "--plot"),
    ],
)
def test_option_errors_name_the_option_and_value(
    tmp_path: Path, capsys, option: list[str], fragment: str
) -> None:
    err = _one_line_error(capsys, str(write(tmp_path / "x.npy", "npy")), *option)
    assert fragment in err


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_metrics_are_scale_invariant_at_extreme_magnitudes(
    tmp_path: Path, capsys, scale: float
) -> None:
    x = X.astype(np.float64)
    plain = run_json(capsys, str(write(tmp_path / "x.npy", "npy", x)))
    ref = write(tmp_path / "r.npy", "npy", x[:, :4] * scale)
    scaled = run_json(
        capsys, str(write(tmp_path / "s.npy", "npy", x * scale)), "--reference", str(ref)
    )
    for name, value in plain.items():
        if isinstance(value, float):
            assert scaled[name] == pytest.approx(value, rel=1e-9), name
    assert 0 < scaled["linear_cka"] <= 1


def test_reference_of_another_width_gives_cka_and_no_cosine(tmp_path: Path, capsys) -> None:
    x = write(tmp_path / "x.npy", "npy")
    wide = write(tmp_path / "wide.npy", "npy", np.hstack([X, X[:, :3] ** 2]))
    out = run_json(capsys, str(x), "--reference", str(wide))
    assert 0 < out["linear_cka"] <= 1
    assert out["cos_to_reference"] == "n/a (widths differ)"
    same = run_json(capsys, str(x), "--reference", str(write(tmp_path / "s.npy", "npy", -X)))
    assert same["cos_to_reference"] == pytest.approx(-1.0)
    assert main(["geometry", str(x), "--reference", str(wide)]) == 0
    assert "n/a (widths differ)" in capsys.readouterr().out


def _cka_by_hsic(a: np.ndarray, b: np.ndarray) -> float:
    """Kornblith's linear CKA from centred Gram matrices, as a reference value."""
    h = np.eye(len(a)) - 1.0 / len(a)
    k, gram = h @ a @ a.T @ h, h @ b @ b.T @ h
    return float(np.sum(k * gram) / (np.linalg.norm(k) * np.linalg.norm(gram)))


@pytest.mark.parametrize(("n", "da", "db"), [(40, 3, 5), (12, 50, 300), (300, 4, 2)])
def test_linear_cka_agrees_whichever_gram_it_uses(n: int, da: int, db: int) -> None:
    from kdspectra.metrics.geometry import linear_cka

    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, da))
    b = np.hstack([a[:, :1], rng.standard_normal((n, db - 1))])
    assert linear_cka(a, b) == pytest.approx(_cka_by_hsic(a, b), rel=1e-9)


def test_reference_with_100k_columns_is_cheap(tmp_path: Path, capsys) -> None:
    """A D×D Gram of a 100,000-column reference is 74.5 GiB; the N×N one is tiny."""
    rng = np.random.default_rng(2)
    x = write(tmp_path / "x.npy", "npy", X[:24])
    wide = write(
        tmp_path / "wide.npy", "npy", rng.standard_normal((24, 100_000)).astype(np.float32)
    )
    out = run_json(capsys, str(x), "--reference", str(wide))
    assert 0 < out["linear_cka"] <= 1 and out["cos_to_reference"] == "n/a (widths differ)"


@pytest.mark.parametrize("kind", ["directory", "device", "missing"])
def test_paths_that_are_not_regular_files_are_named_for_what_they_are(
    tmp_path: Path, capsys, kind: str
) -> None:
    path = tmp_path / "emb.npy"
    if kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")  # a reader that tried would never finish
    err = _one_line_error(capsys, str(path))
    expected = {"directory": "is a directory", "device": "not a regular file"}
    assert "emb.npy" in err and expected.get(kind, "file not found") in err


def test_reference_key_without_reference_is_named(tmp_path: Path, capsys) -> None:
    err = _one_line_error(capsys, str(write(tmp_path / "x.npy", "npy")), "--reference-key", "t")
    assert "--reference-key" in err and "'t'" in err
