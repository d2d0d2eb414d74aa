"""``kdspectra rank``: prints the effective rank; bad input → one-line error, exit code 2."""

from __future__ import annotations

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
