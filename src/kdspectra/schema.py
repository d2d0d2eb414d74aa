"""The config's JSON schema and the one validator every config check uses.

Draft 7, with three corrections that make "valid" mean "a job can use it": a ``number`` is
finite (YAML's ``.nan`` passes every minimum and maximum otherwise), an ``integer`` is
``1`` and not ``1.0`` (``seeds: [1.0]`` named files ``seed1.0``), and a pattern's final
``$`` is the end of the string (Python's also matches before a trailing newline). Kept
apart from :mod:`kdspectra.config`'s cross-key checks and queries; free of torch, since the
Snakefile parses it on every (cluster) job start.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from kdspectra import registry
from kdspectra.errors import ConfigError
from kdspectra.io import parse_yaml

# The schema the Snakefile validates with; library code that receives one config entry
# (kdspectra.models.teachers.parse_spec) validates it against the same rules.
# It is package data (read through importlib.resources), so an installed wheel validates
# exactly as a checkout does.
SCHEMA_FILE = "config.schema.yaml"
SCHEMA_PATH = Path(str(resources.files("kdspectra").joinpath(SCHEMA_FILE)))


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Read the YAML JSON-schema, with its name enums taken from :mod:`kdspectra.registry`.

    The YAML lists the names too (as documentation, kept equal by a test); replacing them
    here means a student or objective registered in code validates without editing the
    schema. The ``students`` and ``objectives`` defaults mean "all registered" and follow.
    """
    schema = parse_yaml(Path(path).read_text())
    names = {
        "student": registry.student_names(),
        "objective": registry.objective_names(),
        "teacher_library": registry.TEACHER_LIBRARIES,
        "dataset_format": registry.DATASET_FORMATS,
    }
    for key, values in names.items():
        schema["definitions"][key]["enum"] = list(values)
    props = schema["properties"]
    props["students"]["default"] = list(registry.student_names())
    objectives = props["experiments"]["additionalProperties"]["properties"]["objectives"]
    objectives["default"] = list(registry.objective_names())
    return schema


def _is_number(_checker: Any, instance: Any) -> bool:
    """JSON ``number`` as a job can use it: an int or a *finite* float (never a bool).

    YAML's ``.nan``/``.inf`` are floats, and NaN passes every ``minimum``/``maximum``
    (each comparison is False), so a bounded key would otherwise accept it.
    """
    if isinstance(instance, bool) or not isinstance(instance, (int, float)):
        return False
    return isinstance(instance, int) or math.isfinite(instance)


def _is_integer(_checker: Any, instance: Any) -> bool:
    """JSON ``integer`` as Python means it: ``1``, not ``1.0`` (a seed of 1.0 names files
    ``seed1.0``) and never a bool."""
    return isinstance(instance, int) and not isinstance(instance, bool)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    """``pattern`` with JSON Schema's (ECMA-262) ``$``: the end of the string.

    Python's ``re.search`` lets ``$`` match before a final newline, so ``"atk\n"`` would
    pass ``^[A-Za-z0-9_]+$``; a final ``$`` is read as ``\\Z`` here.
    """
    if not isinstance(instance, str):
        return
    end_anchored = pattern.endswith("$") and not pattern.endswith("\\$")
    anchored = pattern[:-1] + r"\Z" if end_anchored else pattern
    if not re.search(anchored, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


# Draft 7 with finite numbers, strict integers and end-anchored patterns: what every
# config check (validate_config, check_entry, TrainConfig) validates with.
Validator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    validators={"pattern": _pattern},
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine_many(
        {"number": _is_number, "integer": _is_integer}
    ),
)


def key_text(path: Any) -> str:
    """A config key path as users write it: ``teachers.clip.image_size``."""
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "<top level>"


def _expected(err: jsonschema.ValidationError) -> str:
    v = err.validator_value
    return {
        "enum": f"one of {v}",
        "type": {"number": "a finite number", "integer": "an integer (1, not 1.0)"}.get(
            str(v), f"a value of type {v}"
        ),
        "minimum": f"a number >= {v}",
        "maximum": f"a number <= {v}",
        "exclusiveMinimum": f"a number > {v}",
        "pattern": f"a string matching {v!r}",
        "minItems": f"a list with at least {v} item(s)",
        "minProperties": f"a mapping with at least {v} entry(ies)",
        "uniqueItems": "a list without duplicates",
        "minLength": "a non-empty string",
        "maxLength": f"a string of at most {v} characters",
    }.get(str(err.validator), err.message)


def _format_error(err: jsonschema.ValidationError) -> str:
    key = key_text(err.absolute_path)
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        return f"config key '{key}': {err.message}; known keys: {known}"
    if err.validator == "required":
        return f"config key '{key}': {err.message}"
    if err.validator == "propertyNames":
        return f"config key '{key}': names must match [A-Za-z0-9_]+, found {err.instance!r}"
    return f"config key '{key}': expected {_expected(err)}, found {err.instance!r}"


def check_schema(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first (shallowest) schema violation."""
    validator = Validator(schema)
    errors = sorted(
        validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.path))
    )
    if errors:
        raise ConfigError(_format_error(errors[0]))


def check_entry(
    entry: Mapping[str, Any], section: str, name: str, schema: Mapping[str, Any] | None = None
) -> None:
    """Validate one entry of a named map (``teachers.<name>``) against the schema's rules.

    For library code that is handed a single entry rather than a validated config: the
    schema stays the one validator, and messages name the full key (``teachers.clip.model``).
    """
    schema = load_schema() if schema is None else schema
    part = {
        "definitions": schema.get("definitions", {}),
        "properties": {section: schema["properties"][section]},
    }
    check_schema({section: {name: dict(entry)}}, part)


def _resolve_ref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not ref:
        return schema
    target: Any = root
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}


def fill_defaults(config: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """Return ``config`` with every schema default filled in, recursively.

    Handles ``properties`` and ``additionalProperties`` (the named maps: datasets,
    teachers, experiments), which ``snakemake.utils.validate`` leaves untouched.
    """
    schema = _resolve_ref(schema, root)
    if not isinstance(config, dict):
        return config
    out = dict(config)
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve_ref(sub, root)
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = fill_defaults(out[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in set(out) - set(schema.get("properties", {})):
            out[key] = fill_defaults(out[key], extra, root)
    return out
