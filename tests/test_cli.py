"""``kdspectra rank``: prints the effective rank; bad input → one-line error, exit code 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kdspectra
from kdspectra.cli import main
from kdspectra.metrics.spectrum import effective_rank


@pytest.fixture
def emb_file(tmp_path: Path) -> Path:
    x = np.random.default_rng(0).standard_normal((300, 12)).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, x)
    return path


def printed_rank(out: str, label: str) -> float:
    match = re.search(rf"{label}.*: ([0-9.]+)$", out, flags=re.MULTILINE)
    assert match, out
    return float(match.group(1))


def test_rank_prints_shape_and_entropy_rank(emb_file: Path, capsys) -> None:
    assert main(["rank", str(emb_file)]) == 0
    out = capsys.readouterr().out
    assert "300 rows × 12 columns" in out
    assert printed_rank(out, "entropy") == pytest.approx(
        effective_rank(np.load(emb_file)), abs=1e-4
    )
    assert "Roy–Vetterli" not in out


def test_both_variants_are_labelled(emb_file: Path, capsys) -> None:
    assert main(["rank", str(emb_file), "--variant", "both"]) == 0
    out = capsys.readouterr().out
    x = np.load(emb_file)
    assert printed_rank(out, "entropy") == pytest.approx(effective_rank(x), abs=1e-4)
    rv = printed_rank(out, "Roy–Vetterli")
    assert rv == pytest.approx(effective_rank(x, "roy_vetterli"), abs=1e-4)
    assert "RankMe-style" in out


def test_plot_writes_png(emb_file: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "spec.png"
    assert main(["rank", str(emb_file), "--plot", str(png)]) == 0
    assert str(png) in capsys.readouterr().out
    with Image.open(png) as im:
        assert im.format == "PNG" and min(im.info["dpi"]) >= 150


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        (np.ones(5), "expected 2 dimensions"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.ones((1, 4)), "at least 2 rows"),
        (np.full((10, 3), 2.0), "no variance"),
    ],
)
def test_bad_input_exit_code_2(tmp_path: Path, capsys, content, message: str) -> None:
    path = tmp_path / "bad.npy"
    if content is not None:
        np.save(path, content)
    assert main(["rank", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_usage_errors_return_2(capsys) -> None:
    assert main([]) == 2
    assert main(["rank", "x.npy", "--variant", "rankme"]) == 2
    assert main(["--help"]) == 0
    assert "rank" in capsys.readouterr().out


def test_module_entry_point_has_no_traceback(tmp_path: Path) -> None:
    src = str(Path(kdspectra.__file__).resolve().parents[1])
    env = os.environ | {"PYTHONPATH": src}
    bad = tmp_path / "corrupt.npy"
    bad.write_bytes(b"not an array")
    proc = subprocess.run(
        [sys.executable, "-m", "kdspectra.cli", "rank", str(bad)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "corrupt.npy" in proc.stderr and "Traceback" not in proc.stderr


def test_version_prints_version_and_commit(capsys) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(
        rf"kdspectra {re.escape(kdspectra.__version__)} "
        r"\((commit [0-9a-f]{10}(-dirty)?|commit unknown|not a git checkout)\)",
        out,
    ), out


def test_help_texts_name_every_format_rank_and_geometry_read(capsys) -> None:
    from kdspectra.data.embedding_files import SUFFIXES

    for command in ("rank", "geometry"):
        assert main([command, "--help"]) == 0
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert all(suffix in out for suffix in SUFFIXES), (command, out)


def _spread(rng: np.random.Generator, n: int, d: int, decay: float) -> np.ndarray:
    return (rng.standard_normal((n, d)) * np.arange(1, d + 1) ** -decay).astype(np.float32)


def test_geometry_compares_several_files_one_row_each(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(3)
    paths = []
    for name, decay in (("flat", 0.0), ("steep", 1.5)):
        paths.append(tmp_path / f"{name}.npy")
        np.save(paths[-1], _spread(rng, 200, 16, decay))
    assert main(["geometry", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["file", "n", "dim", "dtype"] and len(lines) == 3
    ers = {}
    for line, path in zip(lines[1:], paths, strict=True):
        cells = line.split()
        assert cells[0] == str(path) and cells[1:3] == ["200", "16"]
        ers[path.stem] = float(cells[lines[0].split().index("effective_rank")])
    assert ers["flat"] > 2 * ers["steep"]
    assert ers["flat"] == pytest.approx(effective_rank(np.load(paths[0])), abs=1e-4)
    assert main(["geometry", *map(str, paths), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [row["file"] for row in listed] == list(map(str, paths))
    assert listed[0]["effective_rank"] == pytest.approx(ers["flat"], abs=1e-4)


def test_geometry_warns_when_the_alpha_window_passes_the_rank(tmp_path: Path, capsys) -> None:
    path = tmp_path / "narrow.npy"
    np.save(path, _spread(np.random.default_rng(4), 100, 30, 0.5))  # centred rank 30
    assert main(["geometry", str(path), "--alpha-fit", "5", "20"]) == 0
    assert "warning" not in capsys.readouterr().err  # [5, 20) lies inside the rank
    assert main(["geometry", str(path)]) == 0  # default [10, 100)
    err = capsys.readouterr().err
    assert "warning" in err and "[10, 100)" in err and "rank 30" in err
    assert "21 eigenvalue(s)" in err and str(path) in err
