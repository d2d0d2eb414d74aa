"""tools/check_pins.py: the env file and pyproject.toml must pin the same versions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = """\
[project]
name = "toy"
dependencies = ["torch==2.14.1", "open_clip_torch==3.3.0", "snakemake==9.27.1"]
"""
ENV = """\
dependencies:
  - python=3.11
  - pip
  - pip:
      - torch==2.14.1
      - open-clip-torch==3.3.0
"""


@pytest.fixture(scope="module")
def check_pins() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_pins", ROOT / "tools/check_pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_pins"] = module
    spec.loader.exec_module(module)
    return module


def run(check_pins: ModuleType, tmp_path: Path, pyproject: str, env: str) -> int:
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "env.yaml").write_text(env)
    (tmp_path / "src").mkdir(exist_ok=True)
    args = ["--pyproject", str(tmp_path / "pyproject.toml"), "--env", str(tmp_path / "env.yaml")]
    return check_pins.main([*args, "--src", str(tmp_path / "src")])


def write_module(tmp_path: Path, body: str) -> None:
    package = tmp_path / "src" / "toy"
    package.mkdir(parents=True, exist_ok=True)
    (package / "mod.py").write_text(body)


def test_agreeing_files_pass(check_pins, tmp_path: Path, capsys) -> None:
    # Names compare as PEP 503 names; the workflow engine need not be in the jobs' env.
    assert run(check_pins, tmp_path, PYPROJECT, ENV) == 0
    assert "agree on 2 pins" in capsys.readouterr().out


def test_a_different_version_fails_naming_package_and_both_versions(
    check_pins, tmp_path: Path, capsys
) -> None:
    assert run(check_pins, tmp_path, PYPROJECT, ENV.replace("torch==2.14.1", "torch==2.13.0")) == 1
    err = capsys.readouterr().err
    assert "torch" in err and "2.14.1" in err and "2.13.0" in err
    assert "open-clip-torch" not in err


def test_a_pin_in_only_one_file_fails(check_pins, tmp_path: Path, capsys) -> None:
    extra_env = ENV + "      - numpy==2.4.6\n"
    assert run(check_pins, tmp_path, PYPROJECT, extra_env) == 1
    assert "numpy" in capsys.readouterr().err
    missing = PYPROJECT.replace('"torch==2.14.1"', '"torch==2.14.1", "pandas==3.1.1"')
    assert run(check_pins, tmp_path, missing, ENV) == 1
    assert "pandas" in capsys.readouterr().err


def test_a_conda_entry_is_compared_too(check_pins, tmp_path: Path, capsys) -> None:
    conda = ENV.replace("  - pip\n", "  - pip\n  - numpy=2.4.5\n")
    pyproject = PYPROJECT.replace('"torch==2.14.1"', '"torch==2.14.1", "numpy==2.4.6"')
    assert run(check_pins, tmp_path, pyproject, conda) == 1
    err = capsys.readouterr().err
    assert "numpy" in err and "2.4.6" in err and "2.4.5" in err


def test_a_range_is_not_a_pin(check_pins, tmp_path: Path, capsys) -> None:
    assert run(check_pins, tmp_path, PYPROJECT.replace("torch==", "torch>="), ENV) == 1
    assert "exact pin" in capsys.readouterr().err


def test_the_real_files_agree(check_pins, capsys) -> None:
    assert check_pins.main([]) == 0, capsys.readouterr().err


def test_an_unpinned_import_fails_naming_module_and_distribution(
    check_pins, tmp_path: Path, capsys
) -> None:
    # A lazy import inside a function counts: it breaks a clean install just the same.
    write_module(tmp_path, "import torch\n\ndef f():\n    from scipy import stats\n")
    assert run(check_pins, tmp_path, PYPROJECT, ENV) == 1
    err = capsys.readouterr().err
    assert "mod.py" in err and "'scipy'" in err and "torch" not in err


def test_import_names_map_to_their_distribution(check_pins, tmp_path: Path, capsys) -> None:
    # open_clip is pinned as open_clip_torch; sklearn is scikit-learn, which is not pinned.
    write_module(tmp_path, "import open_clip\nimport os, json\nfrom sklearn import svm\n")
    assert run(check_pins, tmp_path, PYPROJECT, ENV) == 1
    err = capsys.readouterr().err
    assert "'scikit-learn'" in err and "open" not in err and "'os'" not in err


def test_relative_and_own_imports_are_not_third_party(check_pins, tmp_path: Path) -> None:
    write_module(tmp_path, "from . import sibling\nfrom kdspectra import io\nimport torch\n")
    assert run(check_pins, tmp_path, PYPROJECT, ENV) == 0
