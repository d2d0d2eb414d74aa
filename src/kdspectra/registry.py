"""Every name the config may use, defined once, as data, importable without torch.

Students, objectives, teacher libraries and dataset formats are registered here; the
config schema's enums (:func:`kdspectra.config.load_schema`), the Snakemake wildcards
(:meth:`ModelId.pattern`), the students' builders, the losses, the tables and the figures
all read them from here. Adding a student is one :class:`StudentEntry` (plus a builder when
its architecture is not a :class:`~kdspectra.architectures.CNNConfig` or
:class:`~kdspectra.architectures.TransformerConfig`).

The Snakefile validates the config at parse time, which happens once per job on a
cluster; keeping this module free of heavy imports keeps that validation instant.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kdspectra.architectures import CNNConfig, TransformerConfig
from kdspectra.errors import ConfigError

# The token used for the teacher in `model` wildcards and columns.
TEACHER_MODEL = "teacher"
# Student names become a Snakemake wildcard and a folder: lower case and '_' only.
STUDENT_NAME_RE = r"[a-z_]+"


@dataclass(frozen=True)
class StudentEntry:
    """One student: its config name, the paper's names for it, its budget and architecture.

    ``params_budget`` is the paper's parameter count (with a 512-d head), which the
    students' tests hold each architecture to; ``architecture`` is a torch-free config that
    :func:`kdspectra.models.students.build_student` turns into a module.
    """

    name: str
    display_name: str
    ablation_name: str
    family: str
    params_budget: float
    architecture: object


@dataclass(frozen=True)
class ObjectiveEntry:
    """One distillation objective: its config name, how figures and tables show it, and
    whether it adds λ·InfoNCE to L_cos (what the training loop branches on)."""

    name: str
    label: str
    colour: str
    infonce: bool


# Student-S/M/L share one config up to the width factor. The widths were chosen so that
# all three land near 0.5M/2.0M/8.0M with a 512-d head (see kdspectra.models.students).
_CNN_BASE: dict[str, Any] = {"stem": 20, "widths": (20, 40, 80), "blocks": (0, 3, 3)}

_STUDENTS: dict[str, StudentEntry] = {}
# Builders of students whose architecture kdspectra.models.students does not know: name ->
# callable(embed_dim, width_mult) -> torch module.
_BUILDERS: dict[str, Callable[[int, float], Any]] = {}
_OBJECTIVES: dict[str, ObjectiveEntry] = {
    o.name: o
    for o in (
        ObjectiveEntry("cosine", "cosine", "#4C72B0", infonce=False),
        ObjectiveEntry("cosine_infonce", "cosine + InfoNCE", "#DD8452", infonce=True),
    )
}

TEACHER_LIBRARIES: tuple[str, ...] = ("open_clip", "timm")
DATASET_FORMATS: tuple[str, ...] = ("cifar10-binary", "cifar100-binary", "sklearn-digits")
# Dataset names that imply their format when `datasets.<name>.format` is not given.
DEFAULT_FORMATS: dict[str, str] = {
    "cifar10": "cifar10-binary",
    "cifar100": "cifar100-binary",
    "digits": "sklearn-digits",
}
# Formats that need no download (the data ships inside an installed package).
OFFLINE_FORMATS: frozenset[str] = frozenset({"sklearn-digits"})
# Every prepared split is uint8 N × IMAGE_SIDE × IMAGE_SIDE × 3, whatever the format (CIFAR's
# own size; the digits are upsampled to it): the view pipeline, the teachers trained here
# and the config check (crop shifts, their input size) rely on it.
IMAGE_SIDE = 32
# Train-split images of each format: CIFAR's 50,000, the digits' fixed 80 % of 1,797. The
# training loaders drop an epoch's last partial batch, so a batch may not exceed these.
TRAIN_IMAGES: dict[str, int] = {
    "cifar10-binary": 50_000,
    "cifar100-binary": 50_000,
    "sklearn-digits": 1_437,
}
# The published archives (Zenodo), keyed by the config's dataset name; the config's
# ``datasets.<name>.corruptions: {url, md5}`` defaults to these. 2.9 GB each.
CORRUPTION_SOURCES: dict[str, dict[str, str]] = {
    "cifar10": {
        "url": "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar",
        "md5": "56bf5dcef84df0e2308c6dcbcbbd8499",
    },
    "cifar100": {
        "url": "https://zenodo.org/records/3555552/files/CIFAR-100-C.tar",
        "md5": "11f0ed0f1191edbf9fa23466ae6021d3",
    },
}


def register_student(
    entry: StudentEntry, builder: Callable[[int, float], Any] | None = None
) -> None:
    """Add a student; ``builder(embed_dim, width_mult)`` builds it when its architecture is
    not one that :mod:`kdspectra.models.students` knows (CNNConfig, TransformerConfig)."""
    if not re.fullmatch(STUDENT_NAME_RE, entry.name):
        raise ConfigError(
            f"student name: expected {STUDENT_NAME_RE} (it is a Snakemake wildcard and a "
            f"folder), found {entry.name!r}"
        )
    if entry.name in _STUDENTS:
        raise ConfigError(f"student {entry.name!r}: already registered")
    if builder is None and not isinstance(entry.architecture, CNNConfig | TransformerConfig):
        raise ConfigError(
            f"student {entry.name!r}: expected a CNNConfig or TransformerConfig architecture "
            f"or a builder, found {type(entry.architecture).__name__}"
        )
    _STUDENTS[entry.name] = entry
    if builder is not None:
        _BUILDERS[entry.name] = builder


def unregister_student(name: str) -> None:
    """Remove a student added by :func:`register_student` (plugins, tests)."""
    student(name)
    del _STUDENTS[name]
    _BUILDERS.pop(name, None)


def student_names() -> tuple[str, ...]:
    """Registered students, in registration order (the paper's five first)."""
    return tuple(_STUDENTS)


def student(name: str) -> StudentEntry:
    """The entry of student ``name``; ConfigError naming the known students otherwise."""
    try:
        return _STUDENTS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"student {name!r}: unknown; known students: {list(_STUDENTS)}") from None


def student_builder(name: str) -> Callable[[int, float], Any] | None:
    """The builder registered with student ``name``, or None when its config type says how."""
    student(name)
    return _BUILDERS.get(name)


def display_name(name: str) -> str:
    """The paper's name of student ``name`` (e.g. ``Student-S``); the teacher is the
    callers' to name."""
    return student(name).display_name


def objective_names() -> tuple[str, ...]:
    """Registered objectives, in registration order."""
    return tuple(_OBJECTIVES)


def objective(name: str) -> ObjectiveEntry:
    """The entry of objective ``name``; ConfigError naming the known objectives otherwise."""
    try:
        return _OBJECTIVES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"objective {name!r}: unknown; known objectives: {list(_OBJECTIVES)}"
        ) from None


def _alternatives(names: tuple[str, ...]) -> str:
    """A regex group matching exactly one of ``names``."""
    return "(?:" + "|".join(re.escape(n) for n in names) + ")"


# --------------------------------------------------------------------------- objective arms
# An objective with `infonce` becomes one *arm* per (λ, projector) the config sweeps
# (`training.infonce.weight` a number or a list, `training.infonce.projector` none | mlp or
# a list); each arm is a folder, a Snakemake wildcard value and an `objective` column value.
# The name says what differs from the config's plain setting, so a run without a sweep keeps
# the paths it always had: `cosine_infonce` for one number and no projector,
# `cosine_infonce_w<λ>` (λ as format(λ, 'g')) when the weight is a list, `_mlp` appended
# with the projector. This block is the one map between a name and its settings.
PROJECTORS: tuple[str, ...] = ("none", "mlp")
_WEIGHT_RE = r"[0-9]+(?:\.[0-9]+)?(?:e[+-][0-9]+)?"  # what format(λ >= 0, 'g') prints
_ARM_RE = re.compile(rf"(?P<base>.+?)(?:_w(?P<weight>{_WEIGHT_RE}))?(?P<mlp>_mlp)?")


@dataclass(frozen=True)
class Arm:
    """One objective arm: its name, the registered objective it trains, its λ (None: the
    config's single ``training.infonce.weight``) and where InfoNCE acts (``projector``)."""

    name: str
    objective: str
    weight: float | None = None
    projector: str = "none"

    @property
    def label(self) -> str:
        """How tables and figures name it: ``cosine + InfoNCE λ=0.3 (MLP)``."""
        parts = [objective(self.objective).label]
        if self.weight is not None:
            parts.append(f"λ={weight_text(self.weight)}")
        if self.projector != "none":
            parts.append(f"({self.projector.upper()})")
        return " ".join(parts)


def weight_text(weight: float) -> str:
    """λ as arm names print it (``0.3``, ``0``, ``1``, ``1e-05``)."""
    return format(float(weight), "g")


def arm_name(objective_name: str, weight: float | None = None, projector: str = "none") -> str:
    """``cosine_infonce``, ``cosine_infonce_w0.3``, ``cosine_infonce_w0.3_mlp``, ..."""
    name = objective_name if weight is None else f"{objective_name}_w{weight_text(weight)}"
    return f"{name}_mlp" if projector == "mlp" else name


def objective_arms(
    objective_name: str,
    weight: float | Sequence[float],
    projector: str | Sequence[str] = "none",
) -> list[Arm]:
    """The arms ``objective_name`` runs under ``training.infonce.{weight, projector}``
    (λ-major); an objective without InfoNCE is its own single arm (no λ, no head).

    ConfigError naming ``training.infonce.weight`` when two λ print alike (they would
    share a folder)."""
    if not objective(objective_name).infonce:
        return [Arm(objective_name, objective_name)]
    weights: list[float | None] = (
        [float(w) for w in weight] if isinstance(weight, list | tuple) else [None]
    )
    projectors = list(projector) if isinstance(projector, list | tuple) else [projector]
    arms = [
        Arm(arm_name(objective_name, w, p), objective_name, w, p)
        for w in weights
        for p in projectors
    ]
    names = [a.name for a in arms]
    if len(set(names)) < len(names):
        raise ConfigError(
            f"config key 'training.infonce.weight': expected values distinct in "
            f"format(λ, 'g') (each names an arm's folder), found {list(weight)!r} "  # type: ignore[arg-type]
            f"giving the arms {names}"
        )
    return arms


def parse_arm(name: str) -> Arm:
    """The settings an arm's name states (λ parsed from its text; None when the name has
    none). ConfigError when ``name`` is no arm of a registered objective."""
    m = _ARM_RE.fullmatch(str(name))
    base = m["base"] if m else ""
    if m is None or base not in _OBJECTIVES or (name != base and not objective(base).infonce):
        raise ConfigError(
            f"objective {name!r}: expected a registered objective {list(_OBJECTIVES)} or an "
            f"arm of one with InfoNCE (<objective>[_w<λ>][_mlp], e.g. 'cosine_infonce_w0.3_mlp')"
        )
    weight = None if m["weight"] is None else float(m["weight"])
    return Arm(str(name), base, weight, "mlp" if m["mlp"] else "none")


def resolve_arm(
    name: str, weight: float | Sequence[float], projector: str | Sequence[str] = "none"
) -> Arm:
    """Arm ``name`` as this config defines it (its λ exactly the config's value), or
    ConfigError naming the arms ``training.infonce`` gives."""
    arms = {a.name: a for a in objective_arms(parse_arm(name).objective, weight, projector)}
    if name not in arms:
        raise ConfigError(
            f"objective {name!r}: not an arm of this config's training.infonce (weight "
            f"{weight!r}, projector {projector!r}); its arms: {list(arms)}"
        )
    return arms[name]


def objective_pattern() -> str:
    """Regex of a registered objective or one of its arms (the ``objective`` Snakemake
    wildcard, the ``objective`` part of a :class:`ModelId`)."""
    suffix = rf"(?:_w{_WEIGHT_RE})?(?:_mlp)?"
    names = [re.escape(o.name) + (suffix if o.infonce else "") for o in _OBJECTIVES.values()]
    return "(?:" + "|".join(names) + ")"


@dataclass(frozen=True, order=True)
class ModelId:
    """A student model's id ``<student>/<objective>/seed<k>``: its folder under
    ``students/`` and its ``model`` column (``objective`` is an arm name, see
    :func:`objective_arms`). The teacher is :data:`TEACHER_MODEL`."""

    student: str
    objective: str
    seed: int

    def format(self) -> str:
        """``cnn_s/cosine/seed0``."""
        return f"{self.student}/{self.objective}/seed{self.seed}"

    @classmethod
    def parse(cls, text: str) -> ModelId:
        """The inverse of :meth:`format`; ValueError naming ``text`` and the form expected."""
        m = re.fullmatch(r"([A-Za-z0-9_]+)/([A-Za-z0-9_.+-]+)/seed([0-9]+)", str(text))
        if m is None:
            raise ValueError(
                f"model id: expected <student>/<objective>/seed<k> (e.g. 'cnn_s/cosine/seed0'),"
                f" found {text!r}"
            )
        return cls(m[1], m[2], int(m[3]))

    @staticmethod
    def pattern() -> str:
        """Regex of a registered student's model id (for Snakemake wildcards)."""
        return f"{_alternatives(student_names())}/{objective_pattern()}/seed[0-9]+"


for _entry in (
    StudentEntry("cnn_s", "Student-S", "CNN", "cnn", 0.5e6, CNNConfig(**_CNN_BASE, width=1.0)),
    StudentEntry("cnn_m", "Student-M", "CNN", "cnn", 2.0e6, CNNConfig(**_CNN_BASE, width=2.0)),
    StudentEntry("cnn_l", "Student-L", "CNN", "cnn", 8.0e6, CNNConfig(**_CNN_BASE, width=4.0)),
    # Conv stem to 8×8 = 64 tokens, then attention over the feature map (semi-global).
    StudentEntry(
        "hybrid",
        "Hybrid",
        "Hybrid",
        "hybrid",
        0.5e6,
        TransformerConfig(stem="conv", dim=96, depth=3, heads=3, stem_channels=(32, 96)),
    ),
    # 4×4 patches = 64 tokens, global attention from the first layer.
    StudentEntry(
        "tiny_vit",
        "Tiny ViT",
        "Tiny ViT",
        "vit",
        0.5e6,
        TransformerConfig(stem="patch", dim=96, depth=4, heads=3, patch=4),
    ),
):
    register_student(_entry)
