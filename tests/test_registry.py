"""The registry: one entry per name, and adding a student is one entry plus its module.

The ``dummy_student`` fixture registers a tiny student that no other module knows about;
the tests follow it through config validation, building and the model id. (Tables and
figures get their own tests of it.)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from kdspectra import registry
from kdspectra.architectures import CNNConfig
from kdspectra.config import experiment_models, load_schema, validate_config
from kdspectra.errors import ConfigError
from kdspectra.models.students import build_student
from kdspectra.registry import ModelId, StudentEntry

REPO = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((REPO / "config.yaml").read_text())
DUMMY = "dummy_mlp"


class DummyStudent(nn.Module):
    """The smallest student: flatten, one linear layer to the teacher's width."""

    def __init__(self, embed_dim: int, width_mult: float) -> None:
        super().__init__()
        hidden = max(1, round(8 * width_mult))
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@pytest.fixture
def dummy_student() -> Iterator[StudentEntry]:
    """A registered student outside the paper's five; unregistered after the test."""
    entry = StudentEntry(
        name=DUMMY,
        display_name="Dummy MLP",
        ablation_name="MLP",
        family="mlp",
        params_budget=25e3,
        architecture={"hidden": 8},  # a config students.py does not know: the builder builds it
    )
    registry.register_student(entry, builder=DummyStudent)
    try:
        yield entry
    finally:
        registry.unregister_student(DUMMY)


def _config_with(student: str) -> dict:
    cfg = copy.deepcopy(PAPER)
    cfg["students"] = [*cfg["students"], student]
    cfg["experiments"]["clip_cifar10"]["students"] = ["cnn_s", student]
    cfg["report"] = {**cfg.get("report", {}), "fig1_student": student}
    cfg["training"] = {**cfg.get("training", {}), "per_student": {student: {"lr": 1e-3}}}
    return cfg


def test_paper_students_and_objectives_in_order() -> None:
    assert registry.student_names() == ("cnn_s", "cnn_m", "cnn_l", "hybrid", "tiny_vit")
    assert registry.objective_names() == ("cosine", "cosine_infonce")
    assert [registry.display_name(n) for n in ("cnn_s", "cnn_m", "cnn_l")] == [
        "Student-S",
        "Student-M",
        "Student-L",
    ]
    assert registry.student("hybrid").ablation_name == "Hybrid"
    assert [registry.objective(o).infonce for o in registry.objective_names()] == [False, True]


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'resnet50'.*cnn_s.*tiny_vit"):
        registry.student("resnet50")
    with pytest.raises(ConfigError, match=r"'mse'.*cosine_infonce"):
        registry.objective("mse")


def test_dummy_student_validates_in_the_config(dummy_student: StudentEntry) -> None:
    cfg = validate_config(_config_with(DUMMY), load_schema())
    assert DUMMY in cfg["experiments"]["clip_cifar10"]["students"]
    assert f"{DUMMY}/cosine/seed0" in experiment_models(cfg, "clip_cifar10")


def test_unregistered_student_is_refused_by_the_config() -> None:
    with pytest.raises(ConfigError, match=r"config key '.*'.*one of .*cnn_s.*found 'dummy_mlp'"):
        validate_config(_config_with(DUMMY), load_schema())


def test_dummy_student_builds(dummy_student: StudentEntry) -> None:
    model = build_student(DUMMY, 16, width_mult=0.5)
    assert isinstance(model, DummyStudent) and model.head.in_features == 4
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 16)
    with pytest.raises(ConfigError, match="embed_dim"):  # the same checks as the paper's five
        build_student(DUMMY, 0)


def test_dummy_model_id_round_trips_and_matches_the_wildcard(
    dummy_student: StudentEntry,
) -> None:
    mid = ModelId(DUMMY, "cosine_infonce", 3)
    assert ModelId.parse(mid.format()) == mid
    assert re.fullmatch(ModelId.pattern(), mid.format())


def test_model_id_format_parse_and_order() -> None:
    assert ModelId("cnn_s", "cosine", 0).format() == "cnn_s/cosine/seed0"
    assert ModelId.parse("tiny_vit/cosine_infonce/seed12") == ModelId(
        "tiny_vit", "cosine_infonce", 12
    )
    assert sorted([ModelId("cnn_s", "cosine", 2), ModelId("cnn_s", "cosine", 1)])[0].seed == 1


@pytest.mark.parametrize(
    "text", ["teacher", "cnn_s/cosine", "cnn_s/cosine/0", "cnn_s/cosine/seed-1", "a/b/c/seed0"]
)
def test_model_id_parse_names_the_text_and_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=rf"<student>/<objective>/seed<k>.*{re.escape(text)}"):
        ModelId.parse(text)


def test_wildcard_pattern_takes_registered_names_only() -> None:
    pattern = f"{registry.TEACHER_MODEL}|{ModelId.pattern()}"
    assert re.fullmatch(pattern, "teacher")
    assert re.fullmatch(pattern, "cnn_l/cosine/seed7")
    assert not re.fullmatch(pattern, "cnn_xl/cosine/seed7")
    assert not re.fullmatch(pattern, "cnn_s/mse/seed0")
    assert re.fullmatch(registry.objective_pattern(), "cosine_infonce")


@pytest.mark.parametrize(
    ("name", "architecture", "match"),
    [
        ("Bad-Name", CNNConfig(stem=4, widths=(4,), blocks=(0,)), "student name"),
        ("cnn_s", CNNConfig(stem=4, widths=(4,), blocks=(0,)), "already registered"),
        ("no_builder", {"hidden": 8}, "CNNConfig or TransformerConfig"),
    ],
)
def test_register_refuses_what_would_break_later(
    name: str, architecture: object, match: str
) -> None:
    entry = StudentEntry(name, name, name, "cnn", 1e5, architecture)
    with pytest.raises(ConfigError, match=match):
        registry.register_student(entry)
    assert registry.student_names() == ("cnn_s", "cnn_m", "cnn_l", "hybrid", "tiny_vit")


def test_config_architecture_needs_no_builder() -> None:
    entry = StudentEntry("cnn_xs", "Student-XS", "CNN", "cnn", 1e5, CNNConfig(4, (4, 8), (0, 1)))
    registry.register_student(entry)
    try:
        assert build_student("cnn_xs", 8).head.in_features == 8
    finally:
        registry.unregister_student("cnn_xs")
    with pytest.raises(ConfigError, match="cnn_xs"):
        build_student("cnn_xs", 8)
