"""Provenance: every figure and table can be traced to commit, config and weights."""

from __future__ import annotations

from pathlib import Path

from kdspectra.provenance import Provenance, config_hash, git_commit


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


def test_git_commit_outside_repo(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
    here = git_commit(Path(__file__).parent)
    assert here != "" and (here == "unknown" or len(here.split("-")[0]) >= 7)


def test_cpu_model_names_the_cpu_or_falls_back(monkeypatch) -> None:
    import platform

    from kdspectra import provenance

    name = provenance.cpu_model()
    assert isinstance(name, str) and name.strip()

    def unreadable(self, *args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(provenance.Path, "read_text", unreadable)
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert provenance.cpu_model() == platform.machine()
