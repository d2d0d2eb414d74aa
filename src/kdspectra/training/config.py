"""The settings of one training run, converted once from the validated config.

The JSON schema (``kdspectra/config.schema.yaml``, package data) holds every bound: the
workflow validates ``config.yaml`` against it at parse time, and :class:`TrainConfig`
checks its own fields against the same schema (so a config built in Python, by a test or
a benchmark, fails exactly like a YAML file would, naming the same key). There is no
second copy of the bounds. :data:`TRAINING_KEYS` is the one map from a field to its
config key, used both to read the config and to name keys in errors.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kdspectra import registry
from kdspectra.config import SCHEMA_PATH, check_schema, load_schema
from kdspectra.data.views import has_colour
from kdspectra.errors import ConfigError

SCHEMA = SCHEMA_PATH
# TrainConfig field -> its key path under `training:` in config.yaml.
TRAINING_KEYS: dict[str, tuple[str, ...]] = {
    "epochs": ("epochs",),
    "batch_size": ("batch_size",),
    "lr": ("lr",),
    "weight_decay": ("weight_decay",),
    "warmup_epochs": ("warmup_epochs",),
    "infonce_weight": ("infonce", "weight"),
    "temperature": ("infonce", "temperature"),
    "projector": ("infonce", "projector"),
    "crop_padding": ("augment", "crop_padding"),
    "jitter": ("augment", "jitter"),
    "grayscale_p": ("augment", "grayscale_p"),
    "width_mult": ("width_mult",),
    "compile": ("compile",),
    "teacher_view": ("teacher_view",),
    "teacher_views_seed": ("teacher_views_seed",),
    "deterministic": ("deterministic",),
    "track_every": ("track_every",),
    "track_samples": ("track_samples",),
}


@dataclass
class TrainConfig:
    """Everything that determines a training run besides the data and the student name.

    Defaults after ``lr`` are our choices where the paper is silent (they match
    ``config.yaml``); the workflow builds it with :meth:`from_config`.
    """

    objective: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    infonce_weight: float = 1.0
    temperature: float = 0.1
    # Where InfoNCE acts: on the embedding ("none") or on a SimCLR head's output ("mlp").
    projector: str = "none"
    crop_padding: int = 4
    jitter: float = 0.4
    grayscale_p: float = 0.2
    width_mult: float = 1.0
    compile: bool = False
    teacher_view: str = "clean"
    teacher_views_seed: int = 0
    deterministic: bool = False
    # Geometry tracked during training (kdspectra.training.tracking): every `track_every` epochs
    # and the last (None = five points per run, 0 = off), on `track_samples` train images.
    track_every: int | None = None
    track_samples: int = 2048
    seed: int = 0
    # The objective arm (registry.objective_arms) when it is not `objective` itself, e.g.
    # "cosine_infonce_w0.3_mlp"; `objective` stays the registered objective it trains.
    arm: str | None = None

    def __post_init__(self) -> None:
        """Fail at construction, naming the config key, rather than mid-training."""
        known = registry.objective_names()
        if self.objective not in known:
            raise ConfigError(
                f"config key 'objective': expected one of {list(known)}, found {self.objective!r}"
            )
        if self.projector != "none" and not registry.objective(self.objective).infonce:
            raise ConfigError(
                f"config key 'training.infonce.projector': a head carries InfoNCE, which "
                f"objective {self.objective!r} lacks; expected 'none', found {self.projector!r}"
            )
        for name, path in TRAINING_KEYS.items():
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                key = ".".join(("training", *path))
                raise ConfigError(f"config key '{key}': expected a finite number, found {value!r}")
        check_schema({"training": self.training_section(), "seeds": [self.seed]}, _schema())

    @classmethod
    def from_config(
        cls, training: Mapping[str, Any], objective: str, seed: int, student: str | None = None
    ) -> TrainConfig:
        """The run's settings from a validated ``training`` section (with ``student``'s
        ``per_student`` overrides merged over it). ``objective`` may be an objective arm
        (``cosine_infonce_w0.3_mlp``, :func:`kdspectra.registry.resolve_arm`): its λ and
        projector replace ``training.infonce``'s list or single value. Integers given for
        float settings (``lr: 1``) become floats; nothing else is converted."""
        arm = _arm(training, objective)
        if student is not None:
            training = student_training(training, student)
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        values = {}
        for name, path in TRAINING_KEYS.items():
            if name == "projector":  # the arm's (absent from the section = none)
                continue
            value: Any = training
            for part in path:
                value = value[part]
            is_number = isinstance(value, int) and not isinstance(value, bool)
            values[name] = float(value) if fields[name] == "float" and is_number else value
        values["projector"] = arm.projector
        if arm.weight is not None:
            values["infonce_weight"] = arm.weight
        elif isinstance(values["infonce_weight"], list):  # cosine under a λ sweep: no term
            values["infonce_weight"] = 0.0
        named = arm.name if arm.name != arm.objective else None
        return cls(objective=arm.objective, seed=seed, arm=named, **values)

    @property
    def arm_name(self) -> str:
        """The arm's name (its folder, the summary's ``objective``): ``arm`` or ``objective``."""
        return self.arm or self.objective

    def training_section(self) -> dict[str, Any]:
        """The ``training`` keys this config stands for, nested as in config.yaml."""
        section: dict[str, Any] = {}
        for name, path in TRAINING_KEYS.items():
            node = section
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = getattr(self, name)
        return section

    @property
    def colour(self) -> bool:
        """Whether the view pipeline has a colour step (any jitter or grayscale)."""
        return has_colour(self.jitter, self.grayscale_p)


def _arm(training: Mapping[str, Any], name: str) -> registry.Arm:
    """Arm ``name`` under the top-level ``training.infonce`` (per-student overrides may not
    set a λ under a list: :func:`kdspectra.config.validate_config` refuses it)."""
    infonce = training.get("infonce", {})
    return registry.resolve_arm(name, infonce.get("weight", 1.0), infonce.get("projector", "none"))


@functools.cache
def _schema() -> dict[str, Any]:
    """The parts of the config schema a TrainConfig answers to (read once per process)."""
    try:
        root = load_schema(SCHEMA)
    except OSError as exc:
        raise ConfigError(
            f"{SCHEMA}: the config schema is needed to check settings: {exc}"
        ) from exc
    props = root["properties"]
    training = {k: v for k, v in props["training"].items() if k != "default"}
    return {
        "definitions": root.get("definitions", {}),
        "type": "object",
        "properties": {"training": training, "seeds": props["seeds"]},
    }


def student_training(training: Mapping[str, Any], student: str) -> dict[str, Any]:
    """The ``training`` section with ``training.per_student.<student>`` merged over it.

    Per-student overrides let the transformer students of the ablation train with the
    settings a ViT needs (longer warmup, lower LR) instead of the CNNs'.
    """
    override = dict(training.get("per_student", {}).get(student) or {})
    merged = {k: v for k, v in training.items() if k != "per_student"}
    for key in ("augment", "infonce"):
        if key in override:
            override[key] = {**merged[key], **override[key]}
    return {**merged, **override}
