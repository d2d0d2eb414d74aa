"""A teacher's typed config entry and its library's eval preprocessing, as data.

Both :mod:`kdspectra.models.teachers` (the embedding loop) and
:mod:`kdspectra.models.teacher_libraries` (the per-library loaders) need these types; they
live here so that neither imports the other's module for them (no import cycle).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdspectra.config import (
    check_entry,
    fill_defaults,
    load_schema,
    pretrain_conflict,
    weights_file,
)
from kdspectra.errors import ConfigError

# torchvision's PIL path implements these with PIL filters; antialias=True makes torch's
# bilinear/bicubic kernels the PIL ones (a = -0.5 for bicubic), also when upsampling.
INTERPOLATION = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest-exact"}


# --------------------------------------------------------------------------- spec parsing


@dataclass(frozen=True)
class TeacherSpec:
    """A validated ``teachers.<name>`` config entry."""

    name: str
    library: str
    model: str
    pretrained: str | bool | None
    image_size: int | None
    cache_dir: str | None
    init_seed: int
    # ``pretrain`` with the schema's defaults filled: the teacher is trained here
    # (kdspectra.training.pretrain) and loaded from the weights that rule wrote.
    pretrain: dict[str, Any] | None = None

    def key(self, field: str) -> str:
        """The config key of ``field``, for error messages a user can act on."""
        return f"teachers.{self.name}.{field}"

    @property
    def weights_file(self) -> Path | None:
        """The local weights file ``pretrained`` names, or None for a tag/hub/random init."""
        return weights_file(self.pretrained)


def parse_spec(spec: Mapping[str, Any]) -> TeacherSpec:
    """A typed ``teachers.<name>`` entry; ``spec["name"]`` (optional) names it in errors.

    The config schema is the validator (the same rules the Snakefile applies, so callers
    that skip it, such as benchmarks and tests, get the same bounds and messages); this
    only builds the typed spec.
    """
    name = str(spec.get("name", "teacher"))
    entry = {k: v for k, v in spec.items() if k != "name"}
    check_entry(entry, "teachers", name)
    conflict = pretrain_conflict(name, entry)
    if conflict:
        raise ConfigError(conflict)
    pretrained = entry.get("pretrained")
    cache_dir = entry.get("cache_dir")
    return TeacherSpec(
        name=name,
        library=entry["library"],
        model=entry["model"],
        pretrained=pretrained if pretrained != "" else None,
        image_size=entry.get("image_size"),
        cache_dir=os.path.expanduser(str(cache_dir)) if cache_dir else None,
        init_seed=entry.get("init_seed", 0),
        pretrain=_pretrain_defaults(entry.get("pretrain")),
    )


def _pretrain_defaults(pretrain: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A ``pretrain`` entry with every schema default filled (the Snakefile does the same)."""
    if pretrain is None:
        return None
    schema = load_schema()
    return fill_defaults(dict(pretrain), schema["definitions"]["pretrain"], schema)


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """The library's eval preprocessing, as data: resize, centre crop, normalise.

    ``scale_size`` is what the shorter side (``crop="center"``) or both sides
    (``crop="squash"``) are resized to before the centre crop to ``size``; it equals
    ``size`` unless timm's ``crop_pct`` < 1 (``scale_size = floor(size / crop_pct)``).
    """

    size: int
    scale_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop: str = "center"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATION:
            raise ConfigError(
                f"preprocessing interpolation: expected one of {sorted(INTERPOLATION)}, "
                f"found {self.interpolation!r}"
            )
        if self.crop not in ("center", "squash"):
            raise ConfigError(
                f"preprocessing crop: expected 'center' or 'squash', found {self.crop!r}"
            )
        if self.scale_size < self.size:
            raise ConfigError(
                f"preprocessing: resize target {self.scale_size} is smaller than the crop "
                f"{self.size} (crop_pct > 1 is not supported)"
            )
