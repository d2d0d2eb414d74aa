"""The package works when pip-installed, without this checkout (issue 21).

The library once found its config schema at ``parents[2]/"workflow"/"schemas"``: imported
from a wheel, ``build_teacher`` failed with FileNotFoundError. This builds the wheel from
the project's files alone, installs it into a ``--target`` directory and, from another
directory with only that directory on ``PYTHONPATH``, builds a random-init teacher and
runs the installed ``kdspectra`` command. No network: the build uses the environment's
setuptools (``--no-build-isolation``) and installs no dependencies (``--no-deps``; torch,
timm and numpy come from the environment running the tests).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# What a source distribution of the project holds (pyproject names README.md as readme).
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")
# Files the library reads at run time, which the wheel must carry as package data.
PACKAGE_DATA = ("kdspectra/config.schema.yaml", "kdspectra/paper/paper_numbers.yaml")

# Run in the installed copy: builds a random-init timm teacher from a config entry (which
# reads the schema's defaults) and embeds four images.
BUILD_TEACHER = """
import json, sys
import numpy as np
import kdspectra
from kdspectra.models.teachers import build_teacher

spec = {"name": "tiny", "library": "timm", "model": "test_vit.r160_in1k",
        "pretrained": False, "image_size": 32}
teacher = build_teacher(spec)
images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
emb = teacher.embed(images, batch_size=2, progress=False)
loaded = sorted({m.__file__ for n, m in sys.modules.items()
                 if n.split(".")[0] == "kdspectra" and getattr(m, "__file__", None)})
print(json.dumps({"file": kdspectra.__file__, "modules": loaded, "shape": list(emb.shape),
                  "finite": bool(np.isfinite(emb).all())}))
"""


def _project_copy(dest: Path) -> Path:
    """The files a build reads, copied: the build writes nothing into the checkout, and
    build outputs of an earlier run (build/, *.egg-info) cannot leak into the wheel."""
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "src", dest / "src", ignore=ignore)
    return dest


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the --target directory it is installed in)."""
    root = tmp_path_factory.mktemp("wheel")
    project = root / "project"
    project.mkdir()
    _project_copy(project)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [sys.executable, "-m", "pip"]
    dist, site = root / "dist", root / "site"
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(project)],
         cwd=root, env=env)  # fmt: skip
    (wheel,) = dist.glob("kdspectra-*.whl")
    _run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], cwd=root, env=env)
    return wheel, site


def _outside_env(site: Path) -> dict[str, str]:
    """The environment of a user's shell: the installed copy only, no checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return env | {"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}


def _elsewhere(tmp_path: Path) -> Path:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    return cwd


@pytest.mark.slow
def test_wheel_carries_the_package_data(installed: tuple[Path, Path]) -> None:
    wheel, site = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in PACKAGE_DATA if f not in names]
    assert not missing, f"{wheel.name} lacks {missing}: [tool.setuptools.package-data]"
    assert (site / "bin" / "kdspectra").is_file(), "the console script [project.scripts]"


@pytest.mark.slow
def test_installed_build_teacher_runs_without_the_checkout(
    installed: tuple[Path, Path], tmp_path: Path
) -> None:
    _, site = installed
    cwd = _elsewhere(tmp_path)
    proc = _run([sys.executable, "-c", BUILD_TEACHER], cwd=cwd, env=_outside_env(site))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(site), out["file"]
    outside = [f for f in out["modules"] if not Path(f).is_relative_to(site)]
    assert not outside, f"modules imported from outside the install: {outside}"
    assert out["shape"][0] == 4 and out["shape"][1] > 0 and out["finite"], out


@pytest.mark.slow
def test_installed_command_help_and_geometry(installed: tuple[Path, Path], tmp_path: Path) -> None:
    """``kdspectra --help`` and ``kdspectra geometry`` through the installed console script."""
    _, site = installed
    cwd, env = _elsewhere(tmp_path), _outside_env(site)
    command = str(site / "bin" / "kdspectra")
    assert "geometry" in _run([command, "--help"], cwd=cwd, env=env).stdout
    # Rank 8 in 64 dimensions: the effective rank is at most 8 (a full-rank 64-d matrix
    # would score far above that).
    rng = np.random.default_rng(0)
    np.save(cwd / "emb.npy", rng.normal(size=(200, 8)) @ rng.normal(size=(8, 64)))
    proc = _run([command, "geometry", "emb.npy", "--json"], cwd=cwd, env=env)
    metrics = json.loads(proc.stdout)
    assert 1.0 < metrics["effective_rank"] <= 8.0 + 1e-6, metrics
