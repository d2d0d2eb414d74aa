"""Config validation: the JSON schema (:mod:`kdspectra.schema`: types, ranges, defaults)
plus the checks a schema cannot state: cross-key references, files that must exist, and
rules by key name (every number finite, seeds below 2**32, temperatures not tiny).

Runs when the Snakefile is parsed, so a bad config fails before any job starts, with one
message that names the key, the value found and what was expected. Kept free of torch so
parsing stays instant (Snakemake re-parses the Snakefile for every cluster job).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

# The lookups on a validated config live in kdspectra.config_lookup; callers import them
# from here or from there.
from kdspectra.config_lookup import HUB_PREFIXES as HUB_PREFIXES
from kdspectra.config_lookup import WEIGHT_SUFFIXES as WEIGHT_SUFFIXES
from kdspectra.config_lookup import corruption_key as corruption_key
from kdspectra.config_lookup import corruption_source as corruption_source
from kdspectra.config_lookup import data_key as data_key
from kdspectra.config_lookup import dataset_format as dataset_format
from kdspectra.config_lookup import dataset_of_key as dataset_of_key
from kdspectra.config_lookup import enabled_experiments as enabled_experiments
from kdspectra.config_lookup import experiment_models as experiment_models
from kdspectra.config_lookup import experiment_objectives as experiment_objectives
from kdspectra.config_lookup import experiment_students as experiment_students
from kdspectra.config_lookup import experiment_training as experiment_training
from kdspectra.config_lookup import needs_download as needs_download
from kdspectra.config_lookup import probe_options as probe_options
from kdspectra.config_lookup import weights_file as weights_file
from kdspectra.dials import expand_recolour, recolour_problems
from kdspectra.errors import ConfigError
from kdspectra.registry import (
    IMAGE_SIDE,
    TRAIN_IMAGES,
    parse_arm,
)

# The schema and its validator live in kdspectra.schema; callers import these from here.
from kdspectra.schema import SCHEMA_PATH as SCHEMA_PATH
from kdspectra.schema import check_entry as check_entry
from kdspectra.schema import check_schema, fill_defaults, key_text
from kdspectra.schema import load_schema as load_schema

# A run name is one folder under results/; the schema's `name` pattern says the same.
# Matched with fullmatch: Python's `$` also matches before a trailing newline.
RUN_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
# Seeds go to numpy's legacy seeding and scikit-learn's random_state, which take < 2**32.
SEED_LIMIT = 2**32
# The smallest softmax/kNN temperature: CLIP clamps its logit scale at 100 (T >= 0.01).
MIN_TEMPERATURE = 0.01
# Longest run, dataset, teacher or experiment name (the schema's maxLength says the same):
# names become folders and file names, and 300 characters fail deep inside a job.
MAX_NAME_LENGTH = 64
# Folders under results/ that every run shares: prepared data, downloads, job logs, and
# the benchmark reports of `make bench`.
RESERVED_RUN_NAMES = frozenset({"data", "downloads", "logs", "bench"})


def _check_name(config: Mapping[str, Any]) -> Iterator[str]:
    """The run name becomes ``results/<name>/``: it must stay one visible folder there.

    ``..`` or a separator would put tables, students and checkpoints outside ``results/``
    (and outside ``.gitignore`` and ``make clean``); a leading dot hides the run; a reserved
    name lands in a folder every run shares. Compared case-insensitively, for filesystems
    that are (macOS, Windows).
    """
    name = config.get("name")
    if not isinstance(name, str):
        return  # absent (the default applies) or not a string: the schema says which
    rule = (
        "expected letters, digits, '_', '-' or '.', not starting with '.', and none of the "
        f"shared folders under results/ {sorted(RESERVED_RUN_NAMES)}"
    )
    if len(name) > MAX_NAME_LENGTH:
        yield (
            f"config key 'name': expected at most {MAX_NAME_LENGTH} characters (it becomes a "
            f"folder name), found {len(name)}"
        )
    elif not RUN_NAME_RE.fullmatch(name):
        yield f"config key 'name': {rule}; found {name!r}"
    elif name.lower() in RESERVED_RUN_NAMES:
        yield (
            f"config key 'name': {name!r} is results/{name.lower()}/, a folder shared by every "
            f"run; {rule}"
        )


def _leaves(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(key path, value) of every scalar in ``node``; list items get their index."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _leaves(value, (*path, str(key)))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _leaves(value, (*path, str(i)))
    else:
        yield path, node


def non_finite_numbers(config: Mapping[str, Any]) -> Iterator[str]:
    """Every NaN or infinite number anywhere in ``config``, as a message naming its key.

    Walks the whole config, not only the keys the schema types as numbers: no job can use
    a NaN, and one that passes the config check makes Snakemake rerun (and first delete)
    the outputs of every job whose params hold it, before that job refuses it.
    """
    for path, value in _leaves(config):
        if isinstance(value, float) and not math.isfinite(value):
            yield f"config key '{key_text(path)}': expected a finite number, found {value!r}"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_by_name(config: Mapping[str, Any]) -> Iterator[str]:
    """Rules for keys by what they are, wherever they sit (so a section added later, such
    as a teacher's pretraining, follows them without a schema edit):

    * a seed (``seeds`` items, ``seed``, ``*_seed``) is below 2**32, what numpy's legacy
      seeding and scikit-learn's ``random_state`` accept (the probe job refused more);
    * a temperature (``temperature``, ``*_temperature``) is at least
      :data:`MIN_TEMPERATURE`: exp(cos / T) overflows float64 below T ≈ 0.0014, and the
      kNN then votes with inf weights for the smallest class, silently.
    """
    for path, value in _leaves(config):
        name = path[-1] if path else ""
        is_seed = name == "seed" or name.endswith("_seed") or path[-2:-1] == ("seeds",)
        if is_seed and _is_number(value) and not 0 <= value < SEED_LIMIT:
            yield f"config key '{key_text(path)}': expected a seed in [0, 2**32), found {value!r}"
        is_temperature = name == "temperature" or name.endswith("_temperature")
        if is_temperature and _is_number(value) and value < MIN_TEMPERATURE:
            yield (
                f"config key '{key_text(path)}': expected a temperature >= {MIN_TEMPERATURE} "
                f"(exp(1/T) must stay finite), found {value!r}"
            )


def _check_evaluation(config: Mapping[str, Any]) -> Iterator[str]:
    """Ranges the spectrum stage refuses: ``alpha_req_fit`` must be ``[lo, hi)`` with lo < hi."""
    lo, hi = config["evaluation"]["alpha_req_fit"]
    if lo >= hi:
        yield (
            f"config key 'evaluation.alpha_req_fit': expected [lo, hi) with lo < hi, "
            f"found {[lo, hi]}"
        )


def _check_datasets(config: Mapping[str, Any]) -> Iterator[str]:
    for exp in enabled_experiments(config):
        name = config["experiments"][exp]["dataset"]
        if name not in config["datasets"]:
            yield (
                f"config key 'experiments.{exp}.dataset': unknown dataset {name!r}; "
                f"known: {sorted(config['datasets'])}"
            )
            continue
        dataset_format(config, name)
        spec = config["datasets"][name]
        if needs_download(config, name):
            for key in ("url", "md5"):
                if key not in spec:
                    yield f"config key 'datasets.{name}.{key}': required for a downloaded archive"


def _check_corruptions(config: Mapping[str, Any]) -> Iterator[str]:
    """With ``evaluation.corruptions`` on, every evaluated dataset needs an archive source."""
    if not config.get("evaluation", {}).get("corruptions"):
        return
    for name in sorted({config["experiments"][e]["dataset"] for e in enabled_experiments(config)}):
        try:
            corruption_source(config, name)
        except ConfigError as exc:
            yield str(exc)


def pretrain_conflict(name: str, spec: Mapping[str, Any]) -> str | None:
    """Why ``teachers.<name>`` cannot be trained here as written, or None.

    ``pretrain`` (train the teacher here) and ``pretrained`` (load weights from elsewhere)
    exclude each other; the teachers trained here are timm ViTs.
    """
    if "pretrain" not in spec:
        return None
    key = f"teachers.{name}"
    if spec.get("pretrained") not in (None, False, ""):
        return (
            f"config key '{key}.pretrained': {key}.pretrain trains this teacher here, so it "
            f"takes no weights from elsewhere; found pretrained: {spec['pretrained']!r} (remove "
            f"one of the two keys)"
        )
    if spec.get("library") != "timm":
        return (
            f"config key '{key}.library': teachers with a 'pretrain' key are timm ViTs; "
            f"expected 'timm', found {spec.get('library')!r}"
        )
    return None


def _check_teachers(config: Mapping[str, Any]) -> Iterator[str]:
    for name, spec in config["teachers"].items():
        conflict = pretrain_conflict(name, spec)
        if conflict:
            yield conflict
        dataset = spec.get("pretrain", {}).get("dataset")
        if dataset is not None and dataset not in config["datasets"]:
            yield (
                f"config key 'teachers.{name}.pretrain.dataset': unknown dataset {dataset!r}; "
                f"known: {sorted(config['datasets'])}"
            )
        pre = spec.get("pretrained")
        path = weights_file(pre)
        if path is not None and not path.is_file():
            yield (
                f"config key 'teachers.{name}.pretrained': weights file {pre!r} does not exist "
                "(expected a tag such as 'openai', a local file, or null for random init)"
            )
        if (
            spec["library"] == "open_clip"
            and pre == "openai"
            and "quickgelu" not in spec["model"].lower()
        ):
            yield (
                f"config key 'teachers.{name}.model': OpenAI weights need the QuickGELU "
                f"architecture (e.g. 'ViT-B-32-quickgelu'), found {spec['model']!r}"
            )


def _check_experiments(config: Mapping[str, Any]) -> Iterator[str]:
    if not enabled_experiments(config):
        yield "config key 'experiments': no experiment is enabled; expected at least one"
    for name in enabled_experiments(config):
        exp = config["experiments"][name]
        if exp["teacher"] not in config["teachers"]:
            yield (
                f"config key 'experiments.{name}.teacher': unknown teacher {exp['teacher']!r}; "
                f"known: {sorted(config['teachers'])}"
            )


def _check_arms(config: Mapping[str, Any]) -> Iterator[str]:
    """A λ list names one arm per value (distinct folder names), and a per-student λ would
    contradict the arm names, so ``per_student`` may not set one under a list."""
    sweeps = []
    for exp in enabled_experiments(config):
        try:
            experiment_objectives(config, exp)
        except ConfigError as exc:
            own = "weight" in config["experiments"][exp].get("infonce", {})
            yield str(exc).replace("'training.infonce", f"'experiments.{exp}.infonce", int(own))
        if isinstance(experiment_training(config, exp)["infonce"]["weight"], list):
            sweeps.append(exp)
    if not sweeps:
        return
    for student, override in config["training"].get("per_student", {}).items():
        if "weight" in (override or {}).get("infonce", {}):
            yield (
                f"config key 'training.per_student.{student}.infonce.weight': the weight of "
                f"experiment {sweeps[0]!r} is a list (each λ is an objective arm named by its "
                f"value); expected no per-student λ, found {override['infonce']['weight']!r}"
            )


def _crop_paddings(config: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(key, value) of every crop shift a training or pretraining job will use."""
    training = config["training"]
    yield "training.augment.crop_padding", training["augment"]["crop_padding"]
    for student, override in (training.get("per_student") or {}).items():
        pad = ((override or {}).get("augment") or {}).get("crop_padding")
        if pad is not None:
            yield f"training.per_student.{student}.augment.crop_padding", pad
    for name, spec in config["teachers"].items():
        if "pretrain" in spec:
            yield f"teachers.{name}.pretrain.crop_padding", spec["pretrain"]["crop_padding"]


def _train_batches(config: Mapping[str, Any]) -> Iterator[tuple[str, int, str]]:
    """(key, batch size, dataset) of every training and pretraining job's loader."""
    training = config["training"]
    per_student = training.get("per_student") or {}
    for exp in enabled_experiments(config):
        dataset = config["experiments"][exp]["dataset"]
        for student in experiment_students(config, exp):
            override = per_student.get(student) or {}
            if "batch_size" in override:
                key = f"training.per_student.{student}.batch_size"
                yield key, override["batch_size"], dataset
            else:
                yield "training.batch_size", training["batch_size"], dataset
    for name, spec in config["teachers"].items():
        if "pretrain" in spec:
            pre = spec["pretrain"]
            yield f"teachers.{name}.pretrain.batch_size", pre["batch_size"], pre["dataset"]


def _check_training(config: Mapping[str, Any]) -> Iterator[str]:
    """Training values the jobs refuse that depend on the data, which the schema cannot
    bound: a crop shift of at least the image side (the view pipeline refuses it,
    :mod:`kdspectra.data.views`), a batch larger than the train split (the loader drops
    the last partial batch: no step would run), and a teacher trained here at another
    input size than the prepared images (pretraining does not resize)."""
    for key, pad in _crop_paddings(config):
        if pad >= IMAGE_SIDE:
            yield (
                f"config key '{key}': expected a crop shift below the images' side "
                f"{IMAGE_SIDE} (every prepared image is {IMAGE_SIDE}x{IMAGE_SIDE}), found {pad}"
            )
    for key, batch, dataset in _train_batches(config):
        if dataset not in config["datasets"]:
            continue  # named by _check_datasets / _check_teachers
        n = TRAIN_IMAGES.get(dataset_format(config, dataset))
        if n is not None and batch > n:
            yield (
                f"config key '{key}': expected at most the {n} train images of dataset "
                f"{dataset!r} (an epoch's last partial batch is dropped), found {batch}"
            )
    for name, spec in config["teachers"].items():
        size = spec.get("image_size")
        if "pretrain" in spec and size not in (None, IMAGE_SIDE):
            yield (
                f"config key 'teachers.{name}.image_size': a teacher trained here sees the "
                f"prepared {IMAGE_SIDE}x{IMAGE_SIDE} images; expected null or {IMAGE_SIDE}, "
                f"found {size}"
            )


def _check_report(config: Mapping[str, Any]) -> Iterator[str]:
    """``report.tables`` / ``report.figures`` must name enabled experiments.

    Students or objectives they lack are not an error: the tables and figures those
    experiments cannot fill are left out of the run, with a note
    (:func:`kdspectra.report.plan.plan_report`).
    """
    enabled = enabled_experiments(config)
    fig3 = config["report"]["fig3_objective"]
    try:
        parse_arm(fig3)
    except ConfigError as exc:
        yield f"config key 'report.fig3_objective': {exc}"
    for key in ("tables", "figures"):
        exp = config["report"][key]
        if exp not in enabled:
            yield (
                f"config key 'report.{key}': {exp!r} is not an enabled experiment; known: {enabled}"
            )


def validate_config(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``config`` and return it with defaults filled in.

    Raises :class:`ConfigError` with the first problem found: the run name first (its
    message says more than the schema's pattern) and any NaN/inf (named by its full key,
    wherever it is), then schema violations (types, ranges, names), then cross-key checks
    (references between sections, files that must exist). The rule: no value a job would
    refuse passes here, because Snakemake deletes a job's old outputs before running it.
    CUDA is not checked here: the machine that parses the Snakefile
    (a cluster's login node) is not the one that computes; the jobs check it
    (:func:`kdspectra.runtime.device.resolve_device`).
    """
    for check in (_check_name, non_finite_numbers):
        for problem in check(config):
            raise ConfigError(problem)
    check_schema(config, schema)
    # An experiment's recolour grid becomes its cells before any cross-key check.
    resolved = expand_recolour(fill_defaults(dict(config), schema, schema), MAX_NAME_LENGTH)
    for check in (
        _check_by_name,
        _check_evaluation,
        _check_datasets,
        _check_corruptions,
        _check_teachers,
        _check_experiments,
        recolour_problems,
        _check_arms,
        _check_training,
        _check_report,
    ):
        for problem in check(resolved):
            raise ConfigError(problem)
    return resolved
