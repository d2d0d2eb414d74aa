"""Config validation: the shipped configs are valid; each malformed config fails before
any job runs with one message naming the key, the value and what was expected."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from kdspectra import registry
from kdspectra.config import experiment_models, fill_defaults, load_schema, validate_config
from kdspectra.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "src" / "kdspectra" / "config.schema.yaml")
PAPER = yaml.safe_load((REPO / "config.yaml").read_text())


def merged(overlay: Path) -> dict[str, Any]:
    """The paper config with an overlay applied the way Snakemake's --configfile does."""
    from snakemake.utils import update_config

    cfg = copy.deepcopy(PAPER)
    update_config(cfg, yaml.safe_load(overlay.read_text()))
    return cfg


def test_paper_config_is_valid_and_complete() -> None:
    cfg = validate_config(PAPER, SCHEMA)
    assert cfg["teachers"]["clip_vit_b32"]["pretrained"] == "openai"
    assert cfg["datasets"]["cifar10"]["md5"] == "c32a1d4ab5d03f1284b67883e8d87530"
    assert cfg["datasets"]["cifar100"]["md5"] == "03b5dce01913d631647c71ecec9e9cb8"
    assert len(experiment_models(cfg, "clip_cifar10")) == 1 + 5 * 2 * len(cfg["seeds"])
    assert cfg["seeds"] == [0, 1, 2]  # claims about differences need a CI over seeds
    assert cfg["training"]["infonce"]["temperature"] > 0


def test_demo_overlay_replaces_only_what_it_names() -> None:
    cfg = validate_config(merged(REPO / "config" / "demo.yaml"), SCHEMA)
    assert cfg["name"] == "demo" and cfg["device"] == "cpu"
    assert cfg["teachers"]["clip_vit_b32"]["model"] == "ViT-B-32-quickgelu"
    assert cfg["teachers"]["clip_vit_b32"]["pretrained"] is None
    assert not cfg["experiments"]["clip_cifar10"]["enabled"]
    assert cfg["training"]["infonce"]["weight"] == 1.0
    assert cfg["threads"] == 1  # two one-thread jobs side by side on a 2-core laptop


def test_torch_jobs_default_to_four_threads() -> None:
    cfg = validate_config(copy.deepcopy(PAPER), SCHEMA)
    assert cfg["threads"] == 4


def test_defaults_fill_named_maps() -> None:
    cfg = fill_defaults({"teachers": {"t": {"library": "timm", "model": "m"}}}, SCHEMA, SCHEMA)
    assert cfg["teachers"]["t"]["pretrained"] is None
    assert cfg["teachers"]["t"]["batch_size"] == 256
    assert cfg["evaluation"]["noise_sigmas"][0] == 0.0


def test_schema_yaml_lists_the_registry_names() -> None:
    """The YAML's name lists are documentation; load_schema fills the registry's. They may
    not drift apart (the `students` and `objectives` defaults mean "all")."""
    raw = yaml.safe_load((REPO / "src" / "kdspectra" / "config.schema.yaml").read_text())
    defs = raw["definitions"]
    assert tuple(defs["student"]["enum"]) == registry.student_names()
    assert tuple(defs["objective"]["enum"]) == registry.objective_names()
    assert tuple(defs["teacher_library"]["enum"]) == registry.TEACHER_LIBRARIES
    assert tuple(defs["dataset_format"]["enum"]) == registry.DATASET_FORMATS
    assert tuple(raw["properties"]["students"]["default"]) == registry.student_names()
    objectives = raw["properties"]["experiments"]["additionalProperties"]["properties"]
    assert tuple(objectives["objectives"]["default"]) == registry.objective_names()


def test_schema_names_each_list_once() -> None:
    """Every student/objective/library/format enum is a $ref to its one definition."""
    text = (REPO / "src" / "kdspectra" / "config.schema.yaml").read_text()
    for names in (
        registry.student_names(),
        registry.objective_names(),
        registry.TEACHER_LIBRARIES,
        registry.DATASET_FORMATS,
    ):
        assert text.count(f"enum: [{', '.join(names)}]") == 1, names


def test_registry_matches_loaded_schema() -> None:
    props = SCHEMA["properties"]
    assert SCHEMA["definitions"]["student"]["enum"] == list(registry.student_names())
    assert props["students"]["items"] == {"$ref": "#/definitions/student"}
    objectives = props["experiments"]["additionalProperties"]["properties"]["objectives"]
    assert objectives["items"] == {"$ref": "#/definitions/objective"}
    assert SCHEMA["definitions"]["objective"]["enum"] == list(registry.objective_names())


def test_experiment_models_round_trip_through_model_id() -> None:
    cfg = validate_config(copy.deepcopy(PAPER), SCHEMA)
    teacher, *students = experiment_models(cfg, "clip_cifar10")
    assert teacher == registry.TEACHER_MODEL
    assert [registry.ModelId.parse(m).format() for m in students] == students
    assert registry.ModelId("cnn_s", "cosine", 2).format() in students


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(cfg: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value

    return mutate


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(cfg: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        del node[last]

    return mutate


MALFORMED = {
    "unknown student": (
        _set("experiments.clip_cifar10.students", ["cnn_xl"]),
        ["experiments.clip_cifar10.students.0", "cnn_xl", "cnn_s"],
    ),
    "unknown objective": (
        _set("experiments.clip_cifar10.objectives", ["mse"]),
        ["objectives", "mse", "cosine_infonce"],
    ),
    "unknown teacher": (
        _set("experiments.clip_cifar10.teacher", "vit_h14"),
        ["experiments.clip_cifar10.teacher", "vit_h14", "clip_vit_b32"],
    ),
    "unknown dataset": (
        _set("experiments.clip_cifar10.dataset", "imagenet"),
        ["experiments.clip_cifar10.dataset", "imagenet", "cifar10"],
    ),
    "unknown library": (
        _set("teachers.clip_vit_b32.library", "keras"),
        ["teachers.clip_vit_b32.library", "keras", "open_clip"],
    ),
    "epochs is a string": (_set("training.epochs", "ten"), ["training.epochs", "ten", "integer"]),
    "zero epochs": (_set("training.epochs", 0), ["training.epochs", "0", ">= 1"]),
    "zero threads": (_set("threads", 0), ["threads", "0", ">= 1"]),
    "negative batch": (_set("training.batch_size", -8), ["training.batch_size", "-8"]),
    "zero lr": (_set("training.lr", 0), ["training.lr", "> 0"]),
    "negative temperature": (
        _set("training.infonce.temperature", -0.1),
        ["training.infonce.temperature", "-0.1"],
    ),
    "empty experiments": (_set("experiments", {}), ["experiments", "at least 1"]),
    "all experiments disabled": (
        lambda c: [e.update(enabled=False) for e in c["experiments"].values()],
        ["experiments", "no experiment is enabled"],
    ),
    "sigma above one": (
        _set("evaluation.noise_sigmas", [0.0, 1.5]),
        ["evaluation.noise_sigmas.1", "1.5", "<= 1"],
    ),
    "negative sigma": (
        _set("evaluation.noise_sigmas", [-0.1]),
        ["evaluation.noise_sigmas.0", "-0.1"],
    ),
    "duplicate seeds": (_set("seeds", [0, 1, 1]), ["seeds", "without duplicates"]),
    "ftp url": (
        _set("datasets.cifar10.url", "ftp://example.org/c.tar.gz"),
        ["datasets.cifar10.url", "ftp://", "https?|file"],
    ),
    "short md5": (
        _set("datasets.cifar10.md5", "abc123"),
        ["datasets.cifar10.md5", "abc123", "0-9a-f"],
    ),
    "missing md5": (_delete("datasets.cifar100.md5"), ["datasets.cifar100.md5", "required"]),
    "missing weights file": (
        _set("teachers.clip_vit_b32.pretrained", "/nonexistent/clip.bin"),
        ["teachers.clip_vit_b32.pretrained", "/nonexistent/clip.bin", "does not exist"],
    ),
    "openai weights without quickgelu": (
        _set("teachers.clip_vit_b32.model", "ViT-B-32"),
        ["teachers.clip_vit_b32.model", "QuickGELU"],
    ),
    "unknown top-level key": (_set("epochs", 3), ["Additional properties", "epochs", "training"]),
    "bad device": (_set("device", "tpu"), ["device", "tpu", "cuda"]),
    "report on disabled experiment": (_set("report.tables", "nope"), ["report.tables", "nope"]),
    "slash in experiment name": (
        lambda c: c["experiments"].update({"a/b": c["experiments"]["clip_cifar10"]}),
        ["experiments", "a/b", "[A-Za-z0-9_]+"],
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_config_fails_with_named_key(case: str) -> None:
    mutate, fragments = MALFORMED[case]
    cfg = copy.deepcopy(PAPER)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, f"{case}: {fragment!r} not in {message!r}"


def test_cuda_is_not_checked_when_the_config_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster's login node parses the Snakefile and has no GPU; the jobs check CUDA."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = copy.deepcopy(PAPER)
    cfg["device"] = "cuda"
    assert validate_config(cfg, SCHEMA)["device"] == "cuda"


# Names that would put a run's tables/students/checkpoints outside results/ (or hide them),
# or in a folder every run shares (prepared data, downloads, logs, benchmark reports).
BAD_RUN_NAMES = ["", ".", "..", ".hidden", "a/b", "../x", "a\\b", "data", "downloads", "logs",
                 "bench", "Data"]  # fmt: skip


@pytest.mark.parametrize("name", BAD_RUN_NAMES)
def test_run_names_that_escape_or_collide_are_refused(name: str) -> None:
    cfg = copy.deepcopy(PAPER)
    cfg["name"] = name
    with pytest.raises(ConfigError, match=r"^config key 'name': ") as err:
        validate_config(cfg, SCHEMA)
    assert repr(name) in str(err.value)


@pytest.mark.parametrize("name", ["paper", "demo", "run-2.b", "my_run.v1", "data2", "a..b"])
def test_ordinary_run_names_pass(name: str) -> None:
    cfg = copy.deepcopy(PAPER)
    cfg["name"] = name
    assert validate_config(cfg, SCHEMA)["name"] == name


def test_prepared_data_is_named_by_archive_content() -> None:
    """Archives get <dataset>-<md5> with the whole md5 (two archives under one name never
    collide, and a typo in the md5's last digit is another key, not a rerun of the good
    one's download); built-in sets keep their name; an md5 that no dataset has is named."""
    from kdspectra.config import data_key, dataset_of_key

    cfg = copy.deepcopy(PAPER)
    cfg["datasets"]["digits"] = {}
    good = cfg["datasets"]["cifar10"]["md5"]
    typo = {**cfg["datasets"]["cifar10"], "md5": good[:-1] + "f"}
    assert data_key(cfg, "cifar10") == f"cifar10-{good}"
    assert data_key({"datasets": {"cifar10": typo}}, "cifar10") == f"cifar10-{good[:-1]}f"
    assert data_key(cfg, "digits") == "digits"
    assert dataset_of_key(cfg, f"cifar10-{good}") == "cifar10"
    assert dataset_of_key(cfg, "digits") == "digits"
    with pytest.raises(ConfigError, match=r"'datasets'.*'cifar10-f+'"):
        dataset_of_key(cfg, "cifar10-" + "f" * 32)


# ------------------------------------------------- values a job would refuse (issue 24)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` (into SCHEMA's definitions) merged in."""
    if "$ref" not in node:
        return node
    target = SCHEMA
    for part in node["$ref"].lstrip("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _entry_name(node: dict[str, Any], existing: Any) -> str:
    """A key for a named map: one the paper config already has, else a valid name."""
    if isinstance(existing, dict) and existing:
        return next(iter(existing))
    names = _resolve(node.get("propertyNames", {}))
    return str(names["enum"][0]) if "enum" in names else "x"


def numeric_keys(
    node: dict[str, Any], cfg: Any, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], bool]]:
    """(config path, is a list item) of every key the schema types as a number or integer.

    Walks properties, named maps (additionalProperties) and list items, so a key added
    to the schema later is covered without editing this test.
    """
    node = _resolve(node)
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else types
    found = []
    if {"number", "integer"} & set(types):
        found.append((path, False))
    sub = cfg if isinstance(cfg, dict) else {}
    for key, child in node.get("properties", {}).items():
        found += numeric_keys(child, sub.get(key), (*path, key))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        name = _entry_name(node, cfg)
        found += numeric_keys(extra, sub.get(name), (*path, name))
    items = node.get("items")
    if isinstance(items, dict):
        found += [
            (p, True) if p == path else (p, item) for p, item in numeric_keys(items, None, path)
        ]
    return found


NUMERIC_KEYS = numeric_keys(SCHEMA, PAPER)


def _with_value(path: tuple[str, ...], is_item: bool, value: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(PAPER)
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    if is_item:
        old = node.get(path[-1])
        node[path[-1]] = [value, *(old[1:] if isinstance(old, list) else [])]
    else:
        node[path[-1]] = value
    return cfg


def test_schema_walk_finds_the_numbers_users_set() -> None:
    """The walk is not vacuous: keys of every kind are in it (plain, list item, named map)."""
    keys = {".".join(p) for p, _ in NUMERIC_KEYS}
    for key in (
        "evaluation.knn_temperature",
        "evaluation.noise_sigmas",
        "evaluation.probe_cs",
        "seeds",
        "teachers.clip_vit_b32.image_size",
        "training.infonce.temperature",
    ):
        assert key in keys
    assert any(k.startswith("training.per_student.") and k.endswith(".lr") for k in keys)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=repr)
@pytest.mark.parametrize(
    ("path", "is_item"), NUMERIC_KEYS, ids=[".".join(p) for p, _ in NUMERIC_KEYS]
)
def test_every_numeric_key_refuses_nan_and_inf(
    path: tuple[str, ...], is_item: bool, bad: float
) -> None:
    """A NaN passes every minimum/maximum (each comparison is False); Snakemake then deletes
    the outputs of the job whose params hold it before the job refuses it. So the config
    check refuses it, naming the key."""
    with pytest.raises(ConfigError, match="finite") as err:
        validate_config(_with_value(path, is_item, bad), SCHEMA)
    assert ".".join(path) in str(err.value)


@pytest.mark.parametrize(
    ("path", "value", "fragments"),
    [
        ("seeds", [1.0], ["seeds.0", "integer", "1.0"]),
        ("teachers.clip_vit_b32.batch_size", 256.0, ["batch_size", "integer"]),
        ("training.epochs", 3.0, ["training.epochs", "integer"]),
        ("teachers.clip_vit_b32.image_size", 100000, ["image_size", "<= 1024"]),
        ("datasets.cifar10.md5", "c32a1d4ab5d03f1284b67883e8d87530\n", ["datasets.cifar10.md5"]),
        ("datasets.cifar10.md5", "c32a1d4ab5d03f1284b67883e8d875300", ["datasets.cifar10.md5"]),
        (
            "experiments.clip_cifar10.teacher",
            "clip_vit_b32\n",
            ["experiments.clip_cifar10.teacher"],
        ),
        ("report.tables", "clip_cifar10\n", ["report.tables"]),
        ("evaluation.alpha_req_fit", [100, 10], ["evaluation.alpha_req_fit", "lo < hi"]),
        ("evaluation.alpha_req_fit", [10, 10], ["evaluation.alpha_req_fit", "lo < hi"]),
        ("seeds", [2**32], ["seeds.0", "2**32"]),
        ("evaluation.probe_seed", 2**40, ["evaluation.probe_seed", "2**32"]),
        ("training.teacher_views_seed", 2**63, ["training.teacher_views_seed", "2**32"]),
        ("evaluation.knn_temperature", 1e-4, ["evaluation.knn_temperature", ">= 0.01"]),
        ("training.infonce.temperature", 1e-300, ["training.infonce.temperature", ">= 0.01"]),
        (
            "training.per_student.hybrid.infonce",
            {"temperature": 0.001},
            ["training.per_student.hybrid.infonce.temperature", ">= 0.01"],
        ),
    ],
)
def test_values_a_job_would_refuse_fail_the_config_check(
    path: str, value: Any, fragments: list[str]
) -> None:
    """Integers are 1 not 1.0 (files are named seed1.0), patterns end at the end of the
    string, sizes that can only fail at job time are bounded, ranges are ordered."""
    cfg = copy.deepcopy(PAPER)
    _set(path, value)(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    for fragment in fragments:
        assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("path", "value", "fragments"),
    [
        ("training.augment", {"crop_padding": 32}, ["training.augment.crop_padding", "32"]),
        (
            "training.per_student.hybrid.augment",
            {"crop_padding": 40},
            ["training.per_student.hybrid.augment.crop_padding", "below", "found 40"],
        ),
        ("teachers.clip_analogue.pretrain.crop_padding", 32, ["pretrain.crop_padding", "32"]),
        ("training.batch_size", 1438, ["training.batch_size", "1437 train images", "'digits'"]),
        ("training.per_student.cnn_s", {"batch_size": 2000}, ["per_student.cnn_s.batch_size"]),
        ("teachers.dinov2_analogue.pretrain.batch_size", 1500, ["pretrain.batch_size", "1437"]),
        ("teachers.clip_analogue.image_size", 64, ["teachers.clip_analogue.image_size", "64"]),
    ],
)
def test_training_values_bounded_by_the_data_fail_the_config_check(
    path: str, value: Any, fragments: list[str]
) -> None:
    """On the demo (digits, 1,437 train images of 32x32): the view pipeline refuses a crop
    shift of the image side, the loader a batch beyond the train split, pretraining images
    of another size than its tower's; the config check refuses them first, naming the key,
    the bound and the value."""
    cfg = merged(REPO / "config" / "demo.yaml")
    _set(path, value)(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_factorial_overlay_crosses_both_teachers_with_both_datasets() -> None:
    """config/factorial.yaml fills the two missing cells with the paper's teacher keys (the
    claims pair experiments by those keys), keeping the report's CLIP and DINOv2 runs."""
    cfg = validate_config(merged(REPO / "config" / "factorial.yaml"), SCHEMA)
    cells = {(e["teacher"], e["dataset"]) for e in cfg["experiments"].values()}
    teachers, datasets = ("clip_vit_b32", "dinov2_vitb14"), ("cifar10", "cifar100")
    assert cells == {(t, d) for t in teachers for d in datasets} and len(cfg["experiments"]) == 4
    report = cfg["report"]
    assert (report["tables"], report["figures"]) == ("clip_cifar10", "dinov2_cifar100")


def test_training_values_at_the_data_bounds_pass() -> None:
    cfg = merged(REPO / "config" / "demo.yaml")
    cfg["training"]["augment"] = {"crop_padding": 31}
    cfg["training"]["batch_size"] = registry.TRAIN_IMAGES["sklearn-digits"]
    cfg["teachers"]["clip_analogue"]["image_size"] = registry.IMAGE_SIDE
    validate_config(cfg, SCHEMA)
    paper = copy.deepcopy(PAPER)
    paper["training"]["batch_size"] = 50_000  # CIFAR's train split
    validate_config(paper, SCHEMA)


@pytest.mark.parametrize("section", ["datasets", "teachers", "experiments"])
@pytest.mark.parametrize("name", ["atk\n", "a" * 65], ids=["trailing newline", "65 chars"])
def test_names_are_matched_whole_and_capped(section: str, name: str) -> None:
    cfg = copy.deepcopy(PAPER)
    cfg[section][name] = next(iter(cfg[section].values()))
    with pytest.raises(ConfigError, match=f"config key '{section}'"):
        validate_config(cfg, SCHEMA)


@pytest.mark.parametrize("name", ["atk\n", "a" * 65, "a" * 300])
def test_run_name_is_matched_whole_and_capped(name: str) -> None:
    cfg = copy.deepcopy(PAPER)
    cfg["name"] = name
    with pytest.raises(ConfigError, match=r"^config key 'name': "):
        validate_config(cfg, SCHEMA)


def test_longest_allowed_names_pass() -> None:
    cfg = copy.deepcopy(PAPER)
    cfg["name"] = "r" * 64
    cfg["experiments"]["e" * 64] = {**cfg["experiments"]["clip_cifar10"]}
    assert validate_config(cfg, SCHEMA)["name"] == "r" * 64
