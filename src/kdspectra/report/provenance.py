"""Provenance: what made an artifact, stamped into every table and figure.

A reader holding a figure must be able to find the exact code and config that produced
it: the git commit (with a ``-dirty`` mark when the tree had local changes), a short hash
of the resolved config, where the teacher weights came from, and the date. A copy without
``.git`` (a tarball, a pip install) has no commit: the footer then names the package
version and says "not a git checkout", which still identifies a release.

The weights' source is read from each teacher's ``meta.json`` (``weights_source``, written
by the extract stage from what the library actually loaded, e.g. ``hf-hub:timm/…``), not
derived from the config: ``pretrained: true`` says only "the library's default", and the
footer must name the weights the numbers were computed with.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kdspectra import __version__
from kdspectra.errors import ArtifactError

# What the commit field says in a copy of the code that git does not track.
NOT_A_CHECKOUT = "not a git checkout"
# The key of a teacher's meta.json (Teacher.describe) that names the weights it loaded.
WEIGHTS_KEY = "weights_source"


def teacher_weights(metas: Mapping[str, str | Path]) -> dict[str, str]:
    """Teacher name → the weights source its ``meta.json`` records (what was loaded)."""
    out = {}
    for name, path in metas.items():
        try:
            meta = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise ArtifactError(f"{path}: cannot read {name!r}'s meta.json ({err})") from err
        if not isinstance(meta, Mapping) or not isinstance(meta.get(WEIGHTS_KEY), str):
            raise ArtifactError(
                f"{path}: expected a string {WEIGHTS_KEY!r} (written by the extract stage), "
                f"found {meta.get(WEIGHTS_KEY) if isinstance(meta, Mapping) else meta!r}"
            )
        out[name] = meta[WEIGHTS_KEY]
    return out


def config_hash(config: Mapping[str, Any]) -> str:
    """Return a short, order-independent sha256 of a (resolved) config mapping."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``, else what ``platform`` knows).

    Benchmarks record it beside every figure: a throughput is only comparable with one
    measured on the same kind of machine.
    """
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _inside_checkout(repo: Path) -> bool:
    """Whether ``repo`` or a folder above it holds a ``.git`` (folder or worktree file)."""
    start = repo.resolve()
    return any((folder / ".git").exists() for folder in (start, *start.parents))


def git_commit(repo: str | Path = ".") -> str:
    """The short commit of ``repo`` (``-dirty`` if modified).

    Outside a git checkout: ``"<package version> (not a git checkout)"``. Inside one where
    git cannot answer (not installed, a broken repository): ``"unknown"``.
    """
    if not _inside_checkout(Path(repo)):
        return f"{__version__} ({NOT_A_CHECKOUT})"
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short=10", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


@dataclass(frozen=True)
class Provenance:
    """What made a result; rendered as a footer line in tables and figures."""

    commit: str
    config_hash: str
    teacher_weights: dict[str, str] = field(default_factory=dict)
    date: str = field(default_factory=lambda: _dt.date.today().isoformat())

    @property
    def random_init(self) -> bool:
        """True when any teacher used here was at random init (structural results only)."""
        return any(src == "random-init" for src in self.teacher_weights.values())

    def notice(self) -> str:
        """The warning line that random-init results must carry, or an empty string."""
        if not self.random_init:
            return ""
        names = ", ".join(k for k, v in self.teacher_weights.items() if v == "random-init")
        return (
            f"random-init teacher ({names}): numbers are structural only, "
            "not comparable with the paper"
        )

    def footer(self) -> str:
        """One line: commit (or version), config hash, teacher weights source, date."""
        weights = "; ".join(f"{k}={v}" for k, v in sorted(self.teacher_weights.items()))
        code = self.commit if NOT_A_CHECKOUT in self.commit else f"commit {self.commit}"
        return (
            f"kdspectra {code} | config {self.config_hash} | "
            f"teacher weights: {weights or 'n/a'} | {self.date}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, for JSON sidecars."""
        return asdict(self) | {"random_init": self.random_init}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """Inverse of :meth:`to_dict` (ignores derived keys).

        The report rules pass ``teacher_meta`` (teacher → its meta.json) instead of
        ``teacher_weights``: the weights are then read from those files (see the module
        docstring)."""
        weights = data.get("teacher_weights", {})
        if "teacher_meta" in data:
            weights = teacher_weights(data["teacher_meta"])
        return cls(
            commit=str(data["commit"]),
            config_hash=str(data["config_hash"]),
            teacher_weights=dict(weights),
            date=str(data.get("date", _dt.date.today().isoformat())),
        )
