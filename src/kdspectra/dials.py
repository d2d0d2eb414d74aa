"""The anisotropy dial in the config: an experiment's ``recolour`` grid becomes one
experiment per (α, c) cell, each distilled from a derived teacher.

An experiment ``X`` with ``recolour: {alpha: [...], cone: [...], seed: s}`` on teacher
``T`` is replaced, at validation, by the experiments ``X<suffix>`` whose teacher is
``T<suffix>`` (:func:`cell_suffix`: ``_a1_c3``, ``0.5`` → ``0p5``, ``_s<seed>`` when the
seed is not 0). The derived teacher's entry in ``teachers`` is the base's (for the
record; ``pretrain`` dropped) plus ``recolour: {teacher: T, alpha, cone, seed}``; rule
``recolour_teacher`` derives its embeddings from T's (:mod:`kdspectra.models.recolour`)
instead of extracting them. Every later stage (training, measurement, summary) sees
ordinary experiments, and ``config.resolved.yaml`` validates again as written (the
expansion leaves no grid behind).

A *dial* is the cells of one base teacher on one dataset with one map seed
(:func:`dial_cells` reads them back from the resolved config); the mirror figure and
claims compare students across its cells. Names are made here only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kdspectra.errors import ConfigError

__all__ = [
    "Cell",
    "base_teacher",
    "cell_suffix",
    "dial_cells",
    "expand_recolour",
    "is_recoloured",
    "recolour_problems",
]


def _number(value: float) -> str:
    """A grid value as a name part: ``0.5`` → ``0p5``, ``2.0`` → ``2``, ``1e-05`` → ``1em05``."""
    text = f"{float(value):.6g}"
    return text.replace(".", "p").replace("-", "m").replace("+", "")


def cell_suffix(alpha: float, cone: float, seed: int = 0) -> str:
    """The suffix of a cell's experiment and teacher names (the one naming rule)."""
    seed_part = f"_s{int(seed)}" if int(seed) else ""
    return f"_a{_number(alpha)}_c{_number(cone)}{seed_part}"


@dataclass(frozen=True)
class Cell:
    """One cell of a dial: the experiment, its derived teacher, the base teacher and the
    map's parameters."""

    experiment: str
    teacher: str
    base: str
    dataset: str
    alpha: float
    cone: float
    seed: int

    @property
    def dial(self) -> str:
        """The dial this cell belongs to: base teacher, dataset and map seed."""
        seed = f", map seed {self.seed}" if self.seed else ""
        return f"{self.base} on {self.dataset}{seed}"


def is_recoloured(config: Mapping[str, Any], teacher: str) -> bool:
    """True when ``teachers.<teacher>`` is derived by re-colouring (not extracted)."""
    return "recolour" in config["teachers"].get(teacher, {})


def base_teacher(config: Mapping[str, Any], teacher: str) -> str:
    """The extracted teacher behind ``teacher``: its ``recolour.teacher``, or itself."""
    return str(config["teachers"].get(teacher, {}).get("recolour", {}).get("teacher", teacher))


def dial_cells(config: Mapping[str, Any]) -> list[Cell]:
    """Every enabled experiment of the (resolved) config whose teacher is re-coloured, in
    config order."""
    cells = []
    for name, exp in config["experiments"].items():
        if not exp.get("enabled", True) or not is_recoloured(config, exp["teacher"]):
            continue
        rec = config["teachers"][exp["teacher"]]["recolour"]
        cells.append(
            Cell(
                experiment=name,
                teacher=exp["teacher"],
                base=rec["teacher"],
                dataset=exp["dataset"],
                alpha=float(rec["alpha"]),
                cone=float(rec["cone"]),
                seed=int(rec.get("seed", 0)),
            )
        )
    return cells


def _derived_teacher(
    base: str, spec: Mapping[str, Any], alpha: float, cone: float, seed: int
) -> dict[str, Any]:
    """The base's entry (for the record; never trained here) plus the map's settings."""
    entry = {k: v for k, v in spec.items() if k != "pretrain"}
    return entry | {"recolour": {"teacher": base, "alpha": alpha, "cone": cone, "seed": seed}}


def _check_name(key: str, name: str, limit: int) -> None:
    if len(name) > limit:
        raise ConfigError(
            f"config key '{key}': the cell name {name!r} has {len(name)} characters, expected "
            f"at most {limit} (it becomes a folder); shorten the experiment or "
            "teacher name"
        )


def _expand_one(
    name: str,
    exp: Mapping[str, Any],
    config: Mapping[str, Any],
    teachers: dict[str, Any],
    limit: int,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The cells of experiment ``name``; registers their derived teachers in ``teachers``."""
    key, base = f"experiments.{name}.recolour", exp["teacher"]
    if base not in config["teachers"]:
        raise ConfigError(
            f"config key 'experiments.{name}.teacher': unknown teacher {base!r}; "
            f"known: {sorted(config['teachers'])}"
        )
    if is_recoloured(config, base):
        raise ConfigError(
            f"config key '{key}': teacher {base!r} is itself re-coloured; expected the "
            "teacher whose embeddings are extracted"
        )
    grid, seed = exp["recolour"], int(exp["recolour"].get("seed", 0))
    for alpha in grid["alpha"]:
        for cone in grid["cone"]:
            suffix = cell_suffix(alpha, cone, seed)
            cell, teacher = f"{name}{suffix}", f"{base}{suffix}"
            _check_name(key, cell, limit)
            _check_name(key, teacher, limit)
            derived = _derived_teacher(base, config["teachers"][base], alpha, cone, seed)
            if teachers.get(teacher, derived) != derived:
                raise ConfigError(
                    f"config key '{key}': the cell teacher {teacher!r} clashes with "
                    f"teachers.{teacher}, which is not that cell; rename that teacher"
                )
            teachers[teacher] = derived
            yield cell, {k: v for k, v in exp.items() if k != "recolour"} | {"teacher": teacher}


def expand_recolour(config: Mapping[str, Any], max_name_length: int) -> dict[str, Any]:
    """``config`` with every enabled experiment that has a ``recolour`` grid replaced, in
    place, by its cells (see the module docstring). A disabled one is kept as written. A
    cell name longer than ``max_name_length`` (names become folders) is refused."""
    experiments: dict[str, Any] = {}
    teachers = dict(config["teachers"])
    for name, exp in config["experiments"].items():
        if "recolour" not in exp or not exp.get("enabled", True):
            experiments[name] = exp
            continue
        for cell, entry in _expand_one(name, exp, config, teachers, max_name_length):
            if cell in config["experiments"] or cell in experiments:
                raise ConfigError(
                    f"config key 'experiments.{name}.recolour': the cell experiment {cell!r} "
                    "exists already; rename one of the two"
                )
            experiments[cell] = entry
    return {**config, "experiments": experiments, "teachers": teachers}


def recolour_problems(config: Mapping[str, Any]) -> Iterator[str]:
    """What a resolved config with derived teachers cannot run, one message per problem:
    a derived teacher whose base is unknown, derived, or trained here under the same
    entry; and the corruption stage, which embeds images with the teacher's network and
    so has no re-coloured teacher to run."""
    for name, spec in config["teachers"].items():
        rec = spec.get("recolour")
        if rec is None:
            continue
        key = f"teachers.{name}.recolour.teacher"
        if rec["teacher"] not in config["teachers"]:
            yield (
                f"config key '{key}': unknown teacher {rec['teacher']!r}; known: "
                f"{sorted(config['teachers'])}"
            )
        elif is_recoloured(config, rec["teacher"]):
            yield f"config key '{key}': {rec['teacher']!r} is itself re-coloured"
        if "pretrain" in spec:
            yield (
                f"config key 'teachers.{name}.pretrain': a re-coloured teacher is derived "
                "from its base's embeddings, not trained; remove one of the two keys"
            )
    cells = dial_cells(config)
    if cells and config.get("evaluation", {}).get("corruptions"):
        yield (
            "config key 'evaluation.corruptions': the corruption stage embeds images with "
            f"each teacher's network, which re-coloured teachers ({cells[0].teacher}, ...) "
            "do not have; expected [] in a run with a recolour experiment"
        )
