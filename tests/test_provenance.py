"""Provenance: every figure and table can be traced to commit, config and weights."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import kdspectra
from kdspectra.report.provenance import Provenance, config_hash, git_commit


def test_config_hash_is_order_independent_and_sensitive() -> None:
    a = {"x": 1, "y": {"z": [1, 2]}}
    b = {"y": {"z": [1, 2]}, "x": 1}
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash({"x": 2, "y": {"z": [1, 2]}})


def test_notice_only_for_random_init() -> None:
    real = Provenance("abc", "123", {"clip": "openai"})
    assert not real.random_init and real.notice() == ""
    rand = Provenance("abc", "123", {"clip": "random-init", "dino": "pretrained"})
    assert rand.random_init and "random-init teacher (clip)" in rand.notice()
    footer = rand.footer()
    assert "abc" in footer and "123" in footer and "clip=random-init" in footer


def test_round_trip() -> None:
    p = Provenance("c0ffee", "h", {"t": "openai"}, date="2026-01-01")
    assert Provenance.from_dict(p.to_dict()) == p


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}  # fmt: skip
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_commit_names_the_commit_and_a_dirty_tree(tmp_path: Path) -> None:
    """Inside a checkout the commit is never "unknown": a figure must name its code."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f.txt").write_text("a\n")
    _git(repo, "add", "f.txt")
    _git(repo, "commit", "-q", "-m", "first")
    sha = _git(repo, "rev-parse", "--short=10", "HEAD")
    assert len(sha) == 10
    assert git_commit(repo) == sha
    (repo / "untracked.txt").write_text("not part of the code\n")
    assert git_commit(repo) == sha, "untracked files do not make the tree dirty"
    (repo / "f.txt").write_text("b\n")
    assert git_commit(repo) == f"{sha}-dirty"


def test_outside_a_checkout_the_package_version_stands_in(tmp_path: Path) -> None:
    """A tarball or a copy: the footer names the release instead of "commit unknown"."""
    if any((p / ".git").exists() for p in (tmp_path, *tmp_path.parents)):
        pytest.skip("the temporary folder lies inside a git checkout")
    assert git_commit(tmp_path) == f"{kdspectra.__version__} (not a git checkout)"
    footer = Provenance(git_commit(tmp_path), "h", {}).footer()
    assert footer.startswith(f"kdspectra {kdspectra.__version__} (not a git checkout) | ")
    assert "commit" not in footer


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_checkout_git_cannot_read_is_unknown(tmp_path: Path) -> None:
    """A .git that is no repository: say "unknown", never pass it off as a release."""
    (tmp_path / ".git").write_text("gitdir: /nowhere\n")
    assert git_commit(tmp_path) == "unknown"
    assert Provenance("abc123", "h").footer().startswith("kdspectra commit abc123 | ")


def test_cpu_model_names_the_cpu_or_falls_back(monkeypatch) -> None:
    import platform

    from kdspectra.report import provenance

    name = provenance.cpu_model()
    assert isinstance(name, str) and name.strip()

    def unreadable(self, *args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(provenance.Path, "read_text", unreadable)
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert provenance.cpu_model() == platform.machine()


def test_footer_names_the_weights_the_teachers_meta_json_records(tmp_path) -> None:
    """`pretrained: true` loads e.g. hf-hub:timm/…; the footer must say that, read from the
    meta.json the extract stage wrote, not a label derived from the config."""
    from kdspectra.errors import ArtifactError

    meta = tmp_path / "meta.json"
    meta.write_text('{"library": "timm", "weights_source": "hf-hub:timm/x"}')
    params = {"commit": "c0ffee", "config_hash": "h", "teacher_meta": {"dino": str(meta)}}
    prov = Provenance.from_dict(params)
    assert "dino=hf-hub:timm/x" in prov.footer()
    assert "library default" not in prov.footer() and not prov.random_init
    meta.write_text('{"weights_source": "random-init"}')
    assert Provenance.from_dict(params).random_init
    meta.write_text('{"library": "timm"}')
    with pytest.raises(ArtifactError, match=r"meta\.json: expected a string 'weights_source'"):
        Provenance.from_dict(params)
