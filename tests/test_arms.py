"""Objective arms: a λ list and the projector head become arms with their own names,
folders and settings; λ = 0 through the workflow's config path trains bit-identically to
cosine; the head trains, resumes exactly and is never part of the measured embedding."""

from __future__ import annotations

import copy
import dataclasses
import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from kdspectra import registry
from kdspectra.config import (
    experiment_models,
    experiment_objectives,
    experiment_training,
    validate_config,
)
from kdspectra.errors import ConfigError
from kdspectra.models.inference import embed_images, load_student
from kdspectra.models.students import build_student
from kdspectra.training.config import TrainConfig
from kdspectra.training.loop import Preempted
from test_config import PAPER, SCHEMA
from test_train import STUDENT, D, Killed, bitwise_equal, kill_at, outputs, train, weights

SWEEP = [0, 0.1, 0.3, 1]


def config_with(**infonce: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(PAPER)
    cfg["training"]["infonce"] = {**cfg["training"]["infonce"], **infonce}
    return cfg


def arms(weight: Any, projector: Any = "none") -> list[str]:
    return [a.name for a in registry.objective_arms("cosine_infonce", weight, projector)]


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("weight", "projector", "names"),
    [
        (1.0, "none", ["cosine_infonce"]),
        (1.0, ["none"], ["cosine_infonce"]),
        (0.5, "mlp", ["cosine_infonce_mlp"]),
        (1.0, ["none", "mlp"], ["cosine_infonce", "cosine_infonce_mlp"]),
        (
            SWEEP,
            "none",
            [
                "cosine_infonce_w0",
                "cosine_infonce_w0.1",
                "cosine_infonce_w0.3",
                "cosine_infonce_w1",
            ],
        ),
        ([0.3], "none", ["cosine_infonce_w0.3"]),
        (
            [0.3, 1e-5],
            ["none", "mlp"],
            [
                "cosine_infonce_w0.3",
                "cosine_infonce_w0.3_mlp",
                "cosine_infonce_w1e-05",
                "cosine_infonce_w1e-05_mlp",
            ],
        ),
    ],
)
def test_arm_names(weight: Any, projector: Any, names: list[str]) -> None:
    assert arms(weight, projector) == names
    assert registry.objective_arms("cosine", weight, projector) == [
        registry.Arm("cosine", "cosine")
    ]  # cosine is never expanded


def test_names_round_trip_through_parse_resolve_and_the_wildcard() -> None:
    import re

    weight, projector = [0, 0.1, 0.3, 1, 2.5e-7], ["none", "mlp"]
    for arm in registry.objective_arms("cosine_infonce", weight, projector):
        assert re.fullmatch(registry.objective_pattern(), arm.name)
        parsed = registry.parse_arm(arm.name)
        assert (parsed.objective, parsed.weight, parsed.projector) == (
            arm.objective,
            arm.weight,
            arm.projector,
        )
        assert registry.resolve_arm(arm.name, weight, projector) == arm
        mid = registry.ModelId("cnn_s", arm.name, 2)
        assert registry.ModelId.parse(mid.format()) == mid
        assert re.fullmatch(registry.ModelId.pattern(), mid.format())
    assert registry.parse_arm("cosine_infonce_w0.3_mlp").label == "cosine + InfoNCE λ=0.3 (MLP)"
    assert registry.parse_arm("cosine_infonce").label == "cosine + InfoNCE"


@pytest.mark.parametrize("name", ["cosine_w0", "cosine_mlp", "mse", "cosine_infonce_wx", ""])
def test_names_that_are_no_arm_are_refused(name: str) -> None:
    import re

    with pytest.raises(ConfigError, match="expected a registered objective"):
        registry.parse_arm(name)
    assert not re.fullmatch(registry.objective_pattern(), name)


def test_an_arm_the_config_does_not_define_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"cosine_infonce_w0\.5.*its arms: \['cosine_infonce_w0'"):
        registry.resolve_arm("cosine_infonce_w0.5", SWEEP)


# --------------------------------------------------------------------------- the config


def test_a_sweep_expands_the_experiment_models() -> None:
    cfg = validate_config(config_with(weight=SWEEP, projector=["none", "mlp"]), SCHEMA)
    objectives = experiment_objectives(cfg, "dinov2_cifar100")
    assert objectives == ["cosine", *arms(SWEEP, ["none", "mlp"])]
    models = experiment_models(cfg, "dinov2_cifar100")
    assert len(models) == 1 + 3 * (1 + 8) * len(cfg["seeds"])
    assert "cnn_m/cosine_infonce_w0.3_mlp/seed1" in models
    plain = validate_config(copy.deepcopy(PAPER), SCHEMA)  # no sweep: the paths of today
    assert experiment_objectives(plain, "dinov2_cifar100") == ["cosine", "cosine_infonce"]
    assert "projector" not in plain["training"]["infonce"]  # no default: params unchanged


@pytest.mark.parametrize(
    ("infonce", "key", "found"),
    [
        ({"weight": -0.1}, "training.infonce.weight", "-0.1"),
        ({"weight": [0.1, -1]}, "training.infonce.weight.1", "-1"),
        ({"weight": []}, "training.infonce.weight", "[]"),
        ({"weight": [0.1, 0.1]}, "training.infonce.weight", "[0.1, 0.1]"),
        ({"weight": "0.3"}, "training.infonce.weight", "'0.3'"),
        ({"projector": "linear"}, "training.infonce.projector", "'linear'"),
        ({"projector": ["none", "deep"]}, "training.infonce.projector.1", "'deep'"),
        ({"weight": [0.1234567, 0.1234568]}, "training.infonce.weight", "0.1234567"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_key(
    infonce: dict[str, Any], key: str, found: str
) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(config_with(**infonce), SCHEMA)
    assert f"config key '{key}'" in str(err.value) and found in str(err.value)


def test_one_experiment_may_sweep_alone() -> None:
    """experiments.<e>.infonce scopes a sweep: the other experiments keep their arm and
    their jobs' training section (Snakemake's params) is the very same mapping."""
    cfg = copy.deepcopy(PAPER)
    cfg["experiments"]["dinov2_cifar100"]["infonce"] = {"weight": [0, 0.3], "projector": "mlp"}
    cfg = validate_config(cfg, SCHEMA)
    assert experiment_objectives(cfg, "clip_cifar10") == ["cosine", "cosine_infonce"]
    assert experiment_training(cfg, "clip_cifar10") is cfg["training"]
    assert experiment_objectives(cfg, "dinov2_cifar100") == [
        "cosine",
        "cosine_infonce_w0_mlp",
        "cosine_infonce_w0.3_mlp",
    ]
    training = experiment_training(cfg, "dinov2_cifar100")
    assert training["infonce"]["temperature"] == cfg["training"]["infonce"]["temperature"]
    arm = TrainConfig.from_config(training, "cosine_infonce_w0.3_mlp", 1, "cnn_m")
    assert (arm.infonce_weight, arm.projector) == (0.3, "mlp")
    with pytest.raises(ConfigError, match="not an arm of this config"):
        TrainConfig.from_config(cfg["training"], "cosine_infonce_w0.3_mlp", 1, "cnn_m")


@pytest.mark.parametrize(
    ("infonce", "found"),
    [({"weight": [-1]}, "-1"), ({"weight": [1e-7, 1.0000001e-7]}, "1e-07"), ({"seed": 1}, "seed")],
)
def test_a_bad_experiment_sweep_names_its_key(infonce: dict[str, Any], found: str) -> None:
    cfg = copy.deepcopy(PAPER)
    cfg["experiments"]["clip_cifar10"]["infonce"] = infonce
    with pytest.raises(ConfigError, match=r"config key 'experiments\.clip_cifar10\.infonce") as err:
        validate_config(cfg, SCHEMA)
    assert found in str(err.value)


def test_a_per_student_weight_under_a_sweep_is_refused() -> None:
    cfg = config_with(weight=SWEEP)
    cfg["training"]["per_student"]["tiny_vit"]["infonce"] = {"weight": 0.5}
    with pytest.raises(ConfigError, match=r"training\.per_student\.tiny_vit\.infonce\.weight"):
        validate_config(cfg, SCHEMA)


def test_train_config_takes_the_arms_settings() -> None:
    training = validate_config(config_with(weight=SWEEP, projector=["none", "mlp"]), SCHEMA)[
        "training"
    ]
    cfg = TrainConfig.from_config(training, "cosine_infonce_w0.3_mlp", 0, "cnn_s")
    assert (cfg.objective, cfg.infonce_weight, cfg.projector) == ("cosine_infonce", 0.3, "mlp")
    assert cfg.arm_name == "cosine_infonce_w0.3_mlp"
    cosine = TrainConfig.from_config(training, "cosine", 0, "cnn_s")
    assert (cosine.arm, cosine.projector, cosine.infonce_weight) == (None, "none", 0.0)
    plain = validate_config(copy.deepcopy(PAPER), SCHEMA)["training"]
    cfg = TrainConfig.from_config(plain, "cosine_infonce", 0, "tiny_vit")
    assert (cfg.arm, cfg.projector, cfg.arm_name) == (None, "none", "cosine_infonce")
    with pytest.raises(ConfigError, match=r"training\.infonce\.projector"):
        dataclasses.replace(cosine, projector="mlp")  # cosine has no InfoNCE to carry


# --------------------------------------------------------------------------- training


def _workflow_cfg(arm: str, training: dict[str, Any]) -> TrainConfig:
    """The TrainConfig rule train_student builds, at the tiny size of test_train."""
    small = {**training, "epochs": 2, "batch_size": 16, "lr": 3e-3, "warmup_epochs": 0.5}
    small["width_mult"], small["track_every"] = 0.25, 0
    return TrainConfig.from_config(small, arm, 0, STUDENT)


def test_lambda_zero_arm_is_bit_identical_to_cosine(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """The arm cosine_infonce_w0 of a sweep, built the way the workflow builds it, gives
    cosine's weights and embeddings element for element (on the CPU), with the head too
    (λ = 0 sends it no gradient, and it is built after the student)."""
    training = validate_config(config_with(weight=SWEEP, projector=["none", "mlp"]), SCHEMA)[
        "training"
    ]
    images = data[0]
    out = {}
    for arm in ("cosine", "cosine_infonce_w0", "cosine_infonce_w0_mlp", "cosine_infonce_w0.1"):
        cfg = _workflow_cfg(arm, training)
        paths = outputs(tmp_path, arm)
        meta = train(data, paths, cfg)
        model = load_student(paths["weights_out"], STUDENT, D, width_mult=0.25, device="cpu")
        emb = torch.from_numpy(embed_images(model, images, device=torch.device("cpu")))
        out[arm] = (weights(paths["weights_out"]), emb, meta)
    cos, zero, tenth = out["cosine"], out["cosine_infonce_w0"], out["cosine_infonce_w0.1"]
    assert (
        zero[2]["config"]["infonce_weight"] == 0.0 and zero[2]["objective"] == "cosine_infonce_w0"
    )
    assert zero[2]["final_loss_infonce"] > 0  # computed, weighted by 0
    assert bitwise_equal(cos[0], zero[0]) and torch.equal(cos[1], zero[1])
    head = out["cosine_infonce_w0_mlp"]
    assert head[2]["projector"]["kind"] == "mlp"
    assert bitwise_equal(cos[0], head[0]) and torch.equal(cos[1], head[1])
    assert not bitwise_equal(cos[0], tenth[0])  # λ > 0 moves the weights: not vacuous


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    from conftest import distillation_data

    return distillation_data(64, D)


MLP = TrainConfig(
    objective="cosine_infonce",
    epochs=3,
    batch_size=16,
    lr=3e-3,
    warmup_epochs=0.5,
    width_mult=0.25,
    projector="mlp",
    arm="cosine_infonce_mlp",
)


@pytest.fixture(scope="module")
def with_head(data: tuple[np.ndarray, np.ndarray], tmp_path_factory: Any) -> dict[str, Any]:
    paths = outputs(tmp_path_factory.mktemp("mlp"))
    meta = train(data, paths, MLP)
    return {"meta": meta, "paths": paths, "weights": weights(paths["weights_out"])}


def test_the_head_trains_but_is_not_in_the_measured_student(
    data: tuple[np.ndarray, np.ndarray], with_head: dict[str, Any], tmp_path: Path
) -> None:
    meta, saved = with_head["meta"], with_head["weights"]
    plain = build_student(STUDENT, D, width_mult=0.25).state_dict()
    assert saved.keys() == plain.keys()  # the student's tensors, nothing of the head
    assert meta["projector"] == {
        "kind": "mlp",
        "width": D,
        "params": 2 * D * D + 3 * D,
        "saved": False,
    }
    assert meta["objective"] == "cosine_infonce_mlp" and meta["final_loss_infonce"] > 0
    from safetensors import safe_open

    with safe_open(str(with_head["paths"]["weights_out"]), "pt") as f:
        assert f.metadata()["projector"].startswith("mlp")
    # The head changes training (InfoNCE sees its output, not the embedding) ...
    no_head = outputs(tmp_path, "none")
    train(data, no_head, dataclasses.replace(MLP, projector="none", arm=None))
    assert not bitwise_equal(weights(no_head["weights_out"]), saved)
    # ... while the saved student embeds exactly like the student it holds.
    model = load_student(
        with_head["paths"]["weights_out"], STUDENT, D, width_mult=0.25, device="cpu"
    )
    emb = embed_images(model, data[0], device=torch.device("cpu"))
    assert emb.shape == (64, D)
    with torch.inference_mode():
        x = torch.from_numpy(data[0][:8]).permute(0, 3, 1, 2).float().div(255)
        direct = model(x).numpy()
    np.testing.assert_allclose(emb[:8], direct, rtol=1e-5, atol=1e-6)


def test_the_head_resumes_bit_identically_after_kill_and_sigusr1(
    data: tuple[np.ndarray, np.ndarray], with_head: dict[str, Any], tmp_path: Path
) -> None:
    paths = outputs(tmp_path, "killed")
    with pytest.raises(Killed):  # dies mid-epoch 2: the epoch-1 checkpoint holds the head
        train(data, paths, MLP, callback=kill_at(2, 2))
    state = torch.load(paths["checkpoint"], weights_only=True)
    assert "head" in state and state["config"]["projector"] == "mlp"
    assert train(data, paths, MLP)["resumed_from"] == {"epoch": 1, "step": 0}
    assert bitwise_equal(weights(paths["weights_out"]), with_head["weights"])

    def preempt(epoch: int, step: int) -> None:
        if (epoch, step) == (2, 1):
            os.kill(os.getpid(), signal.SIGUSR1)

    paths = outputs(tmp_path, "preempted")
    with pytest.raises(Preempted):
        train(data, paths, MLP, callback=preempt)
    assert train(data, paths, MLP)["resumed_from"] == {"epoch": 1, "step": 1}
    assert bitwise_equal(weights(paths["weights_out"]), with_head["weights"])


def test_a_checkpoint_without_the_head_is_not_resumed_with_one(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from kdspectra.errors import ArtifactError

    paths = outputs(tmp_path)
    with pytest.raises(Killed):
        train(
            data,
            paths,
            dataclasses.replace(MLP, projector="none", arm=None),
            callback=kill_at(2, 1),
        )
    with pytest.raises(ArtifactError, match="projector: checkpoint has 'none', this run 'mlp'"):
        train(data, paths, MLP)


def test_sweep_yaml_of_the_docs_is_valid() -> None:
    """The λ sweep with the projector as docs/computations.md writes it."""
    overlay = yaml.safe_load(
        "training:\n  infonce: {weight: [0, 0.1, 0.3, 1], projector: [none, mlp]}\n"
    )
    cfg = config_with(**overlay["training"]["infonce"])
    assert len(experiment_objectives(validate_config(cfg, SCHEMA), "clip_cifar10")) == 9
