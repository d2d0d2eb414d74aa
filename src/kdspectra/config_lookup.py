"""Lookups on a validated config: what a dataset, teacher or experiment resolves to.

Split from :mod:`kdspectra.config` (the checks) so that each stays one concern: these
functions read a config that has passed validation (data keys, weights files, the
experiments' students, objective arms and models, the probe's options) and are what the
rules and stages call; :mod:`kdspectra.config` re-exports them for its callers. Free of
torch, like the checks: the Snakefile imports them at parse time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdspectra.errors import ConfigError
from kdspectra.registry import (
    CORRUPTION_SOURCES,
    DEFAULT_FORMATS,
    OFFLINE_FORMATS,
    TEACHER_MODEL,
    ModelId,
    objective_arms,
)

# A `pretrained` string that ends in one of these names a local weights file, not a tag.
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt", ".npz")
# `pretrained` / `model` prefixes that the libraries resolve themselves (never a file of ours).
HUB_PREFIXES = ("hf-hub:", "local-dir:")


def dataset_format(config: Mapping[str, Any], dataset: str) -> str:
    """The archive layout of ``dataset``: explicit ``format`` or inferred from its name."""
    spec = config["datasets"][dataset]
    fmt = spec.get("format") or DEFAULT_FORMATS.get(dataset)
    if fmt is None:
        raise ConfigError(
            f"config key 'datasets.{dataset}.format': cannot infer the archive layout from the "
            f"name {dataset!r}; expected one of {sorted(set(DEFAULT_FORMATS.values()))}"
        )
    return fmt


def needs_download(config: Mapping[str, Any], dataset: str) -> bool:
    """True when the dataset comes from an archive (not shipped in a package)."""
    return dataset_format(config, dataset) not in OFFLINE_FORMATS


def data_key(config: Mapping[str, Any], dataset: str) -> str:
    """The folder name of ``dataset``'s prepared data and download: ``<dataset>-<md5>``.

    Prepared data is shared by every run in a directory, so it is named by content: two
    configs that give the name ``cifar10`` to different archives (a mirror, a subset, a
    fixture) get two folders and neither overwrites the other's arrays. The whole md5, not
    a prefix: with a prefix, a typo in the last digits kept the key, Snakemake saw a changed
    param, deleted the good archive and then the download refused the typo. Now any change
    of md5 is a new key, and a failed download leaves the old key's files as they were.
    Built-in sets (no archive) keep their plain name.
    """
    if not needs_download(config, dataset):
        return dataset
    return f"{dataset}-{config['datasets'][dataset]['md5']}"


def dataset_of_key(config: Mapping[str, Any], key: str) -> str:
    """The config's dataset name whose :func:`data_key` is ``key`` (the inverse, for rules).

    Only names that ``key`` starts with are asked: a dataset no experiment uses may lack
    the ``format`` or ``md5`` that :func:`data_key` needs.
    """
    names = [n for n in config["datasets"] if key == n or key.startswith(f"{n}-")]
    for name in names:
        if data_key(config, name) == key:
            return name
    raise ConfigError(
        f"config key 'datasets': no dataset has the data key {key!r} (expected <dataset>-"
        f"<md5> of a dataset in this config; its datasets: {sorted(config['datasets'])})"
    )


def corruption_source(config: Mapping[str, Any], dataset: str) -> dict[str, str]:
    """``{url, md5}`` of ``dataset``'s corruption archive: ``datasets.<name>.corruptions``,
    else the published archive for that name (:data:`kdspectra.registry.CORRUPTION_SOURCES`), the
    way a dataset's ``format`` is inferred from its name."""

    spec = config["datasets"][dataset].get("corruptions") or CORRUPTION_SOURCES.get(dataset)
    if spec is None:
        raise ConfigError(
            f"config key 'datasets.{dataset}.corruptions': evaluation.corruptions is on but "
            f"no corruption archive is known for {dataset!r} (defaults exist for "
            f"{sorted(CORRUPTION_SOURCES)}); expected {{url, md5}} of a <DIR>/<corruption>.npy tar"
        )
    return {"url": str(spec["url"]), "md5": str(spec["md5"])}


def corruption_key(config: Mapping[str, Any], dataset: str) -> str:
    """The download's name: ``<dataset>-C-<md5>``, keyed by the whole md5 like the datasets."""
    return f"{dataset}-C-{corruption_source(config, dataset)['md5']}"


def weights_file(pretrained: Any) -> Path | None:
    """The local weights file a ``pretrained`` value names, or None for a tag, the hub,
    ``true`` or random init.

    A string is a file when it has a path separator, a weights suffix, or exists on disk;
    the file itself may be missing (the caller says so, naming the key).
    """
    if not isinstance(pretrained, str) or not pretrained or pretrained.startswith(HUB_PREFIXES):
        return None
    if os.sep in pretrained or pretrained.endswith(WEIGHT_SUFFIXES) or os.path.exists(pretrained):
        return Path(os.path.expanduser(pretrained)).resolve()
    return None


def enabled_experiments(config: Mapping[str, Any]) -> list[str]:
    """Names of the experiments this run computes, in config order."""
    return [name for name, exp in config["experiments"].items() if exp.get("enabled", True)]


def experiment_students(config: Mapping[str, Any], experiment: str) -> list[str]:
    """The experiment's students (default: the top-level ``students`` list)."""
    exp = config["experiments"][experiment]
    return list(exp.get("students") or config["students"])


def experiment_training(config: Mapping[str, Any], experiment: str) -> Mapping[str, Any]:
    """The ``training`` section an experiment's jobs train with: ``training`` itself, or,
    when ``experiments.<e>.infonce`` sets a λ sweep or projector, a copy with it merged
    over ``training.infonce`` (so the other experiments' job params stay as they were)."""
    override = config["experiments"][experiment].get("infonce")
    if not override:
        return config["training"]
    training = config["training"]
    return {**training, "infonce": {**training["infonce"], **override}}


def experiment_objectives(config: Mapping[str, Any], experiment: str) -> list[str]:
    """The experiment's objective arms: each of its ``objectives`` expanded over the λ and
    projector settings of its ``training.infonce`` (:func:`experiment_training`,
    :func:`kdspectra.registry.objective_arms`; without a sweep, the objectives themselves)."""
    infonce = experiment_training(config, experiment)["infonce"]
    weight, projector = infonce["weight"], infonce.get("projector", "none")
    return [
        arm.name
        for o in config["experiments"][experiment]["objectives"]
        for arm in objective_arms(o, weight, projector)
    ]


def experiment_models(config: Mapping[str, Any], experiment: str) -> list[str]:
    """Model ids of an experiment: ``teacher`` and ``<student>/<objective arm>/seed<k>``."""
    students = [
        ModelId(s, o, k).format()
        for s in experiment_students(config, experiment)
        for o in experiment_objectives(config, experiment)
        for k in config["seeds"]
    ]
    return [TEACHER_MODEL, *students]


def probe_options(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The ``evaluation`` section as :func:`kdspectra.metrics.probe.fit_probe` keyword arguments.

    Rules pass only these (not the whole section) so that changing, say, the noise levels
    does not re-run teacher extraction through Snakemake's params trigger.
    """
    return {
        "seed": int(evaluation["probe_seed"]),
        "Cs": [float(c) for c in evaluation["probe_cs"]],
        "max_iter": int(evaluation["probe_max_iter"]),
    }
