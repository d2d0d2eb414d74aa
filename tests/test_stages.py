"""The per-rule glue, exercised without Snakemake on small synthetic artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kdspectra import stages
from kdspectra.config import load_schema, validate_config
from kdspectra.data.embeddings import save_embeddings
from kdspectra.errors import ArtifactError
from kdspectra.io import save_json, save_npy
from kdspectra.metrics.spectrum import effective_rank, effective_rank_l2, norm_cv
from kdspectra.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


def prepare_digits(outdir: Path) -> None:
    """The prepare_dataset stage on the built-in digits (no archive)."""
    params = {"fmt": "sklearn-digits", "outdir": outdir, "source": {"format": "sklearn-digits"}}
    stages.prepare_dataset({}, {"source": outdir / "source.json"}, params)


def _emb(rng: np.random.Generator, n: int, d: int, labels: np.ndarray) -> np.ndarray:
    """Class-clustered embeddings; the class centres are fixed so splits share them."""
    centres = np.random.default_rng(123).normal(size=(labels.max() + 1, d))
    return (centres[labels] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)


def test_spectrum_stage_writes_values_rank_and_alignment(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 3
    teacher = _emb(rng, 60, 8, labels)
    student = teacher + 0.01 * rng.normal(size=teacher.shape).astype(np.float32)
    save_embeddings(tmp_path / "t.npy", tmp_path / "t.parquet", teacher, labels, "test")
    save_embeddings(tmp_path / "s.npy", tmp_path / "s.parquet", student, labels, "test")
    save_json(tmp_path / "meta.json", {"feature_width": 5})
    stages.measure_model(
        {"test": tmp_path / "s.npy", "teacher": tmp_path / "t.npy", "meta": tmp_path / "meta.json"},
        {"values": tmp_path / "sv.parquet", "stats": tmp_path / "sv.json"},
        {},
    )
    stats = json.loads((tmp_path / "sv.json").read_text())
    assert stats["effective_rank"] == pytest.approx(effective_rank(student))
    assert stats["effective_rank_l2"] == pytest.approx(effective_rank_l2(student))
    assert stats["norm_cv"] == pytest.approx(norm_cv(student))
    assert stats["rank_ceiling"] == 5  # the feature width, below N - 1 = 59 and D = 8
    assert stats["cos_to_teacher"] > 0.99
    stages.measure_model(
        {"test": tmp_path / "t.npy"},
        {"values": tmp_path / "tv.parquet", "stats": tmp_path / "tv.json"},
        {},
    )
    assert json.loads((tmp_path / "tv.json").read_text())["rank_ceiling"] == 8  # min(N-1, D)
    sv = pd.read_parquet(tmp_path / "sv.parquet")["singular_value"].to_numpy()
    assert len(sv) == 8 and np.all(np.diff(sv) <= 0)


def test_spectrum_stage_refuses_student_meta_without_feature_width(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    labels = np.arange(10) % 2
    emb = _emb(rng, 10, 4, labels)
    for name in ("s", "t"):
        save_embeddings(tmp_path / f"{name}.npy", tmp_path / f"{name}.parquet", emb, labels, "test")
    save_json(tmp_path / "meta.json", {"params": 10})
    with pytest.raises(ArtifactError, match="feature_width"):
        stages.measure_model(
            {
                "test": tmp_path / "s.npy",
                "teacher": tmp_path / "t.npy",
                "meta": tmp_path / "meta.json",
            },
            {"values": tmp_path / "o.parquet", "stats": tmp_path / "o.json"},
            {},
        )
    assert not (tmp_path / "o.json").exists()


def test_spectrum_stage_refuses_mismatched_teacher(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    labels = np.arange(10) % 2
    save_embeddings(
        tmp_path / "s.npy", tmp_path / "s.parquet", _emb(rng, 10, 4, labels), labels, "test"
    )
    save_npy(tmp_path / "t.npy", rng.normal(size=(9, 4)).astype(np.float32))
    save_json(tmp_path / "meta.json", {"feature_width": 4})
    with pytest.raises(ArtifactError, match=r"t\.npy"):
        stages.measure_model(
            {
                "test": tmp_path / "s.npy",
                "teacher": tmp_path / "t.npy",
                "meta": tmp_path / "meta.json",
            },
            {"values": tmp_path / "o.parquet", "stats": tmp_path / "o.json"},
            {},
        )
    assert not (tmp_path / "o.json").exists()


def test_mean_cosine() -> None:
    # The stage's cos_to_teacher is kdspectra.metrics.geometry's (one definition).
    from kdspectra.metrics.geometry import cos_to_teacher

    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    assert cos_to_teacher(a, a) == pytest.approx(1.0)
    assert cos_to_teacher(a, -a) == pytest.approx(-1.0)
    assert cos_to_teacher(a, a[::-1]) == pytest.approx(0.0)


def test_model_keys() -> None:
    assert stages.model_keys("teacher")["seed"] == -1
    assert stages.model_keys("cnn_m/cosine_infonce/seed3") == {
        "role": "student",
        "student": "cnn_m",
        "objective": "cosine_infonce",
        "seed": 3,
    }


def test_noise_stage_and_collect(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    ytr, yte = np.arange(120) % 3, np.arange(45) % 3
    save_npy(tmp_path / "ytr.npy", ytr.astype(np.int64))
    save_npy(tmp_path / "yte.npy", yte.astype(np.int64))
    save_embeddings(
        tmp_path / "tr.npy", tmp_path / "tr.parquet", _emb(rng, 120, 6, ytr), ytr, "train"
    )
    clean = _emb(rng, 45, 6, yte)
    noisy = np.stack([clean, clean + 5 * rng.normal(size=clean.shape)]).astype(np.float32)
    save_npy(tmp_path / "noisy.npy", noisy)
    probe = {"seed": 0, "Cs": [1.0], "max_iter": 100}
    inputs = {
        "train": tmp_path / "tr.npy",
        "train_labels": tmp_path / "ytr.npy",
        "noisy": tmp_path / "noisy.npy",
        "test_labels": tmp_path / "yte.npy",
    }
    stages.measure_model(
        inputs, {"accuracy": tmp_path / "noise.parquet"}, {"sigmas": [0.0, 0.5], "probe": probe}
    )
    curve = pd.read_parquet(tmp_path / "noise.parquet")
    assert list(curve["sigma"]) == [0.0, 0.5]
    assert curve["accuracy"].iloc[0] > curve["accuracy"].iloc[1]
    with pytest.raises(ArtifactError, match=r"noisy\.npy"):
        stages.measure_model(
            inputs,
            {"accuracy": tmp_path / "bad.parquet"},
            {"sigmas": [0.0, 0.2, 0.5], "probe": probe},
        )

    spec = {"effective_rank": 3.0, "effective_rank_rv": 2.5, "cos_to_teacher": 0.9}
    save_json(tmp_path / "spec.json", spec)
    save_json(tmp_path / "meta.json", {"params": 1234})
    record = {
        "experiment": "e",
        "dataset": "d",
        "teacher": "t",
        "model": "cnn_s/cosine/seed0",
        "spectrum": tmp_path / "spec.json",
        "noise": tmp_path / "noise.parquet",
        "meta": tmp_path / "meta.json",
    }
    collected = {"summary": tmp_path / "summary.parquet", "noise": tmp_path / "long.parquet"}
    with pytest.raises(ArtifactError, match="effective_rank_l2"):  # an old spectrum JSON
        stages.collect({}, collected, {"records": [record]})
    spec |= {"effective_rank_l2": 4.0, "norm_cv": 0.2, "rank_ceiling": 6}
    spec |= {m: 1.0 for m in stages.SPECTRUM_KEYS if m not in spec}  # the geometry suite
    save_json(tmp_path / "spec.json", spec)
    stages.collect({}, collected, {"records": [record]})
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    assert summary.loc[0, "params"] == 1234 and summary.loc[0, "student"] == "cnn_s"
    assert summary.loc[0, "rank_ceiling"] == 6 and summary.loc[0, "effective_rank_l2"] == 4.0
    assert summary.loc[0, "clean_accuracy"] == pytest.approx(curve["accuracy"].iloc[0])
    assert len(pd.read_parquet(tmp_path / "long.parquet")) == 2


def test_train_config_maps_every_key() -> None:
    schema = load_schema(REPO / "src" / "kdspectra" / "config.schema.yaml")
    import yaml

    cfg = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()), schema)
    tc = TrainConfig.from_config(cfg["training"], "cosine_infonce", 7)
    assert tc.seed == 7 and tc.objective == "cosine_infonce"
    assert tc.temperature == cfg["training"]["infonce"]["temperature"]
    assert tc.crop_padding == cfg["training"]["augment"]["crop_padding"]


def test_prepare_digits_and_load_split(tmp_path: Path) -> None:
    prepare_digits(tmp_path)
    images, labels = stages.load_split(tmp_path, "test")
    assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
    assert len(images) == len(labels) == 360
    assert json.loads((tmp_path / "source.json").read_text())["format"] == "sklearn-digits"


def test_report_writers_leave_a_provenance_sidecar_beside_every_csv(tmp_path: Path) -> None:
    from test_tables import RANDOM, make_noise, teacher_summary

    teacher_summary((0, 1)).to_parquet(tmp_path / "summary.parquet")
    make_noise((0, 1)).to_parquet(tmp_path / "noise.parquet")
    prov = RANDOM.to_dict()
    out = {k: tmp_path / f"t.{k}" for k in ("csv", "md")} | {"provenance": tmp_path / "t.json"}
    args = (tmp_path / "summary.parquet", tmp_path / "noise.parquet")
    inputs = dict(zip(("summary", "noise"), args, strict=True))
    out["csv"] = tmp_path / "teachers.csv"  # the table is named by its CSV
    stages.table(inputs, out, {"options": {}, "provenance": prov})
    assert json.loads(out["provenance"].read_text())["random_init"] is True
    out = {k: tmp_path / f"c.{k}" for k in ("csv", "md")} | {"provenance": tmp_path / "c.json"}
    opts = {"tables_experiment": "clip_x", "figures_experiment": "dino_x", "omitted": ["x: y"]}
    stages.claims(inputs, out, {"options": opts, "provenance": prov})
    assert json.loads(out["provenance"].read_text())["commit"] == RANDOM.commit
    frame = pd.read_csv(out["csv"])
    assert frame["note"].str.contains("random-init").all()
    assert "- x: y" in out["md"].read_text()


def _paper_config() -> dict:
    import yaml

    schema = load_schema(REPO / "src" / "kdspectra" / "config.schema.yaml")
    return validate_config(yaml.safe_load((REPO / "config.yaml").read_text()), schema)


def test_per_student_overrides_reach_only_their_student() -> None:
    training = _paper_config()["training"]
    training["per_student"]["cnn_m"] = {"augment": {"jitter": 0.1}, "infonce": {"weight": 0.5}}
    vit = TrainConfig.from_config(training, "cosine", 0, "tiny_vit")
    cnn = TrainConfig.from_config(training, "cosine", 0, "cnn_s")
    assert (vit.lr, vit.epochs, vit.warmup_epochs) == (1e-3, 60, 5)
    assert (cnn.lr, cnn.epochs, cnn.warmup_epochs) == (training["lr"], training["epochs"], 1)
    nested = TrainConfig.from_config(training, "cosine_infonce", 0, "cnn_m")
    assert nested.jitter == 0.1 and nested.infonce_weight == 0.5
    # keys the override does not name keep the section's values
    assert nested.grayscale_p == training["augment"]["grayscale_p"]
    assert nested.temperature == training["infonce"]["temperature"]


def test_per_student_keys_are_validated() -> None:
    import yaml

    from kdspectra.errors import ConfigError

    schema = load_schema(REPO / "src" / "kdspectra" / "config.schema.yaml")
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["training"]["per_student"] = {"resnet50": {"lr": 1e-3}}
    with pytest.raises(ConfigError, match="per_student"):
        validate_config(cfg, schema)
    cfg["training"]["per_student"] = {"hybrid": {"lr": -1}}
    with pytest.raises(ConfigError, match="per_student"):
        validate_config(cfg, schema)


class _LinearTeacher:
    """Stands in for a ViT: a fixed linear map of the pixels, so views can be checked."""

    dim = 6

    def __init__(self) -> None:
        self.w = np.random.default_rng(5).standard_normal((32 * 32 * 3, self.dim))

    def embed(self, images: np.ndarray, *, batch_size: int) -> np.ndarray:
        assert images.dtype == np.float32 and images.shape[1:] == (32, 32, 3)
        return (images.reshape(len(images), -1) @ self.w).astype(np.float32)

    def describe(self) -> dict:
        return {"weights_source": "linear"}


def test_teacher_views_stage_embeds_the_views_training_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    import kdspectra.models.teachers
    from kdspectra.data.views import apply_view, cached_view_params

    teacher = _LinearTeacher()
    monkeypatch.setattr(
        kdspectra.models.teachers, "build_teacher", lambda spec, device, weights=None: teacher
    )
    prepare_digits(tmp_path)
    training = {
        "augment": {"crop_padding": 4, "jitter": 0.4, "grayscale_p": 0.2},
        "teacher_views_k": 3,
        "teacher_views_seed": 11,
    }
    out = {"views": tmp_path / "views.npy", "meta": tmp_path / "views.json"}
    params = {"spec": {"name": "lin"}, "device": "cpu", "data_dir": tmp_path, "views": training}
    stages.extract_teacher_views({}, out, params)
    views = np.load(out["views"])
    images, _ = stages.load_split(tmp_path, "train")
    assert views.shape == (3, len(images), teacher.dim) and views.dtype == np.float32
    table = cached_view_params(len(images), 3, 11, crop_padding=4, jitter=0.4, grayscale_p=0.2)
    for k, i in [(0, 0), (2, 17), (1, len(images) - 1)]:
        kk, ii = torch.tensor([k]), torch.tensor([i])
        x = apply_view(torch.from_numpy(images[i : i + 1]).permute(0, 3, 1, 2), table.take(kk, ii))
        expected = teacher.embed(x.permute(0, 2, 3, 1).numpy(), batch_size=1)[0]
        np.testing.assert_allclose(views[k, i], expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(views[0], views[1])  # K distinct views, not K copies
    meta = json.loads(out["meta"].read_text())
    assert meta["teacher_views_k"] == 3 and meta["teacher_views_seed"] == 11


def test_a_deterministic_training_failure_is_not_repeated_by_a_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NaN loss fails the same way on every retry: the retry stops at once instead of
    training again; new settings (or inputs) lift the marker; success removes it."""
    import kdspectra.training.loop
    from kdspectra.training.failures import RepeatedFailureError, marker_path
    from kdspectra.training.record import NonFiniteLossError

    prepare_digits(tmp_path)
    _, labels = stages.load_split(tmp_path, "train")
    teacher = tmp_path / "teacher.npy"
    save_npy(teacher, np.ones((len(labels), 4), dtype=np.float32))
    calls: list[float] = []

    def nan_at_high_lr(student: str, images: Any, emb: Any, cfg: Any, **kw: Any) -> dict:
        calls.append(cfg.lr)
        if cfg.lr > 0.01:
            raise NonFiniteLossError("non-finite loss at epoch 1, step 3/11")
        return {}

    monkeypatch.setattr(kdspectra.training.loop, "train_student", nan_at_high_lr)
    training = _paper_config()["training"] | {"lr": 0.5}
    ckpt = tmp_path / "ckpt" / "seed0.pt"
    out = {k: tmp_path / f"out.{k}" for k in ("weights", "metrics", "meta")}
    params = {"student": "cnn_s", "objective": "cosine", "seed": 0, "training": training}
    params |= {"device": "cpu", "data_dir": tmp_path, "checkpoint": ckpt}
    args = ({"teacher": teacher}, out, params)
    with pytest.raises(NonFiniteLossError):
        stages.train_student(*args)
    with pytest.raises(RepeatedFailureError, match="non-finite loss at epoch 1"):
        stages.train_student(*args)  # the scheduler's retry: no second training
    assert calls == [0.5] and marker_path(ckpt).exists()
    stages.train_student({"teacher": teacher}, out, params | {"training": training | {"lr": 0.002}})
    assert calls == [0.5, 0.002] and not marker_path(ckpt).exists()


# --------------------------------------------------------------------------- stages mirror rules

RULES_DIR = REPO / "workflow" / "rules"
# Rules that share another rule's script: the script calls that rule's stage, and the
# package exports the rule's own name as an alias of it (or, for the per-role corruption
# rules, the rule is one stage run on a teacher or a student).
SHARED_SCRIPTS = {
    "data_table": "table",
    "geometry_table": "table",
    "measure_corruptions_teacher": "measure_corruptions",
    "measure_corruptions_student": "measure_corruptions",
}


def _rule_scripts() -> dict[str, tuple[str, Path]]:
    """rule name -> (its rule file's stem, its script), read from workflow/rules/*.smk."""
    import re

    found: dict[str, tuple[str, Path]] = {}
    for smk in sorted(RULES_DIR.glob("*.smk")):
        blocks = re.split(r"^rule (\w+):\n", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            script = re.search(r"^    script:\n\s+\"([^\"]+)\"", body, flags=re.M)
            assert script, f"{smk.name}: rule {name} runs no script (so no stage)"
            found[name] = (smk.stem, (smk.parent / script.group(1)).resolve())
    return found


def _stage_calls(script: Path) -> list[str]:
    """The ``stages.<name>(...)`` calls of one workflow script."""
    import ast

    return [
        node.func.attr
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "stages"
    ]


def test_every_rule_calls_the_stage_of_its_name_from_its_rule_files_module() -> None:
    """`stages/<file>.py` implements the rules of `workflow/rules/<file>.smk`: each rule's
    script calls exactly one stage, named like the rule (or, for a shared script, the
    rule's name is an alias of the stage it calls), defined in the module of its file."""
    rules = _rule_scripts()
    assert {"download", "train_student", "measure_model", "claims", "fig5"} <= set(rules)
    for rule, (smk, script) in rules.items():
        calls = _stage_calls(script)
        expected = SHARED_SCRIPTS.get(rule, rule)
        assert calls == [expected], f"rule {rule} ({script.name}) calls stages.{calls}"
        stage = getattr(stages, expected)
        assert stage.__module__ == f"kdspectra.stages.{smk}", f"{rule}: {stage.__module__}"
        if hasattr(stages, rule):
            assert getattr(stages, rule) is stage, f"stages.{rule} is not stages.{expected}"
        assert rule in stages.__all__ or rule in SHARED_SCRIPTS, rule


def test_every_stage_is_a_rule_of_its_module_and_exported() -> None:
    """No stage without a rule, none in another rule file's module, none the package
    forgets to export: every public ``(inputs, outputs, params)`` function of a stage
    module is a rule of the same-named .smk file and ``stages.<rule>``."""
    import importlib
    import inspect

    # rule or stage name (an alias is both) -> the rule file of the rules that run it
    rules = _rule_scripts()
    homes = {SHARED_SCRIPTS.get(rule, rule): smk for rule, (smk, _) in rules.items()}
    homes |= {rule: smk for rule, (smk, _) in rules.items()}
    modules = sorted(Path(stages.__file__).parent.glob("[!_]*.py"))
    assert {p.stem for p in modules} == {p.stem for p in RULES_DIR.glob("*.smk")} - {"common"}
    for path in modules:
        module = importlib.import_module(f"kdspectra.stages.{path.stem}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            own = fn.__module__ == module.__name__ and not name.startswith("_")
            if own and list(inspect.signature(fn).parameters) == ["inputs", "outputs", "params"]:
                assert homes.get(name) == path.stem, f"{path.name}: {name} is no rule of its .smk"
                assert getattr(stages, name) is fn, f"stages.{name} is not exported"
