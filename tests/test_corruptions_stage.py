"""The corruption stage (issue 17) as the workflow runs it: a format-exact archive served
through ``file://``, downloaded and verified, scored for a student and a teacher with the
noise stage's probe; a bad archive leaves no output; the config refuses unknown names;
``snakemake -n`` with the demo overlay plans the new jobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from kdspectra import stages
from kdspectra.config import load_schema, validate_config
from kdspectra.data.corruption_fixture import CLEAN_COPIES, corrupt, write_fixture
from kdspectra.data.corruptions import (
    CORRUPTIONS,
    FIXTURE_DIR,
    SEVERITY_SIGMA,
    write_corruption_archive,
)
from kdspectra.errors import ConfigError, DataError
from kdspectra.io import save_npy
from kdspectra.metrics.probe import fit_probe, knn_accuracy
from kdspectra.models.inference import embed_images
from kdspectra.models.students import build_student

PROBE = {"seed": 0, "Cs": [1.0], "max_iter": 200}
TEACHER = {
    "library": "open_clip",
    "model": "ViT-S-32",
    "pretrained": None,
    "image_size": 32,
    "batch_size": 64,
    "name": "t",
}
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared split: 3 classes, each a colour, with noise (learnable by any embedder)."""
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in (("train", 90), ("test", 30)):
        labels = np.arange(n) % 3
        base = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]])[labels]
        images = base[:, None, None, :] + rng.integers(-25, 25, size=(n, 32, 32, 3))
        save_npy(d / f"{split}_images.npy", np.clip(images, 0, 255).astype(np.uint8))
        save_npy(d / f"{split}_labels.npy", labels.astype(np.int64))
    return d


@pytest.fixture(scope="module")
def archive(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(data, tmp_path_factory.mktemp("fx") / "fixture.tar")


@pytest.fixture(scope="module")
def student(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A random-init Student-S saved like training does, with its train embeddings."""
    d = tmp_path_factory.mktemp("student")
    torch.manual_seed(0)
    model = build_student("cnn_s", 16, width_mult=0.125)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, d / "model.safetensors")
    meta = {"student": "cnn_s", "embed_dim": 16, "width_mult": 0.125}
    (d / "meta.json").write_text(json.dumps(meta))
    images = np.load(data / "train_images.npy")
    emb = embed_images(model, images, device=torch.device("cpu"), batch_size=64)
    save_npy(d / "train.npy", emb)
    return {"weights": d / "model.safetensors", "meta": d / "meta.json", "train": d / "train.npy"}


def _download(archive: Path, dest: Path) -> Path:
    from kdspectra.data.download import md5sum

    url = archive.resolve().as_uri()
    stages.download_corruptions({}, {"archive": dest}, {"url": url, "md5": md5sum(archive)})
    return dest


def _params(**extra: object) -> dict[str, object]:
    return {
        "device": "cpu",
        "batch_size": 64,
        "corruptions": ["gaussian_noise", "fog", "contrast"],
        "severities": [1, 5],
        "probe": PROBE,
        "knn_k": [5, 20],
        "knn_temperature": 0.07,
        **extra,
    }


def _inputs(data: Path, archive: Path, model: dict[str, Path]) -> dict[str, Path]:
    return {
        "archive": archive,
        "train_labels": data / "train_labels.npy",
        "test_labels": data / "test_labels.npy",
        **model,
    }


def _clean(embed, data: Path, train: Path) -> tuple[float, float]:
    """Probe and kNN(k=5) accuracy of the clean test split, fitted as the noise stage does."""
    ytr, yte = np.load(data / "train_labels.npy"), np.load(data / "test_labels.npy")
    xtr, xte = np.load(train), embed(np.load(data / "test_images.npy"))
    probe = fit_probe(xtr, ytr, **PROBE).accuracy(xte, yte)
    return probe, knn_accuracy(xtr, ytr, xte, yte, k=5, temperature=0.07)


def test_student_clean_copy_scores_the_clean_accuracy(data, archive, student, tmp_path) -> None:
    served = _download(archive, tmp_path / "digits-C-x.tar")
    out = tmp_path / "student.parquet"
    stages.measure_corruptions(_inputs(data, served, student), {"accuracy": out}, _params())
    frame = pd.read_parquet(out)
    assert list(zip(frame["corruption"], frame["severity"], strict=True)) == [
        (c, s) for c in ("gaussian_noise", "fog", "contrast") for s in (1, 5)
    ]
    assert {"accuracy", "knn5_accuracy", "knn20_accuracy", "knn_accuracy", "probe_C"} <= set(
        frame.columns
    )
    model = stages._common._load_trained(student["weights"], student["meta"], torch.device("cpu"))

    def embed(x: np.ndarray) -> np.ndarray:
        return embed_images(model, x, device=torch.device("cpu"), batch_size=64)

    probe, knn = _clean(embed, data, student["train"])
    fog = frame[frame["corruption"] == "fog"]  # the fixture's fog is the clean split
    assert "fog" in CLEAN_COPIES
    assert (fog["accuracy"] == probe).all() and (fog["knn_accuracy"] == knn).all()
    assert (fog["knn5_accuracy"] == knn).all()
    # Contrast at severity 5 scales the pixels towards the mean: not the clean images.
    assert frame.loc[frame["corruption"] == "contrast", "accuracy"].between(0, 1).all()


def test_teacher_clean_copy_scores_the_clean_accuracy(data, archive, tmp_path) -> None:
    from kdspectra.models.teachers import build_teacher

    teacher = build_teacher(TEACHER, device="cpu")
    train = tmp_path / "train.npy"
    save_npy(train, teacher.embed(np.load(data / "train_images.npy"), batch_size=64))
    out = tmp_path / "teacher.parquet"
    params = _params(spec=TEACHER, corruptions=["snow"], severities=[3])
    stages.measure_corruptions(_inputs(data, archive, {"train": train}), {"accuracy": out}, params)
    frame = pd.read_parquet(out)
    probe, knn = _clean(lambda x: teacher.embed(x, batch_size=64), data, train)
    assert frame["accuracy"].tolist() == [probe] and frame["knn_accuracy"].tolist() == [knn]


def test_wrong_labels_leave_no_output(data, student, tmp_path) -> None:
    """A CIFAR-100-C-like archive under this split: refused before any embedding."""
    images = np.load(data / "test_images.npy")
    wrong = np.tile((np.load(data / "test_labels.npy") + 1) % 3, 5)
    bad = write_corruption_archive(
        tmp_path / "bad.tar", FIXTURE_DIR, {"fog": np.concatenate([images] * 5)}, wrong
    )
    out = tmp_path / "out.parquet"
    params = _params(corruptions=["fog"])
    with pytest.raises(DataError, match=r"labels\.npy"):
        stages.measure_corruptions(_inputs(data, bad, student), {"accuracy": out}, params)
    assert list(tmp_path.iterdir()) == [bad]


def test_fixture_gaussian_noise_is_cifar_c(data) -> None:
    """uint8(clip(x/255 + N(0, σ²), 0, 1)·255), σ of the severity: truncation, as CIFAR-C."""
    images = np.load(data / "test_images.npy")[:4]
    noisy = corrupt(images, "gaussian_noise", 2, seed=0)
    diff = noisy.astype(float) / 255 - images / 255
    assert noisy.dtype == np.uint8
    assert (
        0.6 * SEVERITY_SIGMA[1]
        < np.std(diff[(noisy > 5) & (noisy < 250)])
        < 1.4 * SEVERITY_SIGMA[1]
    )
    assert np.array_equal(corrupt(images, "fog", 4), images)


def test_unknown_corruption_names_are_refused_listing_the_known() -> None:
    cfg = {
        "datasets": {"digits": {"format": "sklearn-digits"}},
        "teachers": {"t": {"library": "open_clip", "model": "ViT-S-32"}},
        "experiments": {"e": {"dataset": "digits", "teacher": "t"}},
        "report": {"tables": "e", "figures": "e"},
        "evaluation": {"corruptions": ["gaussian_noise", "fgo"]},
    }
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, load_schema())
    assert "evaluation.corruptions" in str(err.value) and "'fgo'" in str(err.value)
    assert all(name in str(err.value) for name in CORRUPTIONS)
    cfg["evaluation"] = {"corruptions": ["fog"]}  # digits has no default archive
    with pytest.raises(ConfigError, match=r"datasets\.digits\.corruptions"):
        validate_config(cfg, load_schema())


def test_demo_overlay_plans_the_corruption_jobs(tmp_path) -> None:
    from conftest import run_snakemake

    (tmp_path / "config.yaml").write_text((REPO / "tests/data/tiny_config.yaml").read_text())
    overlay = str(REPO / "config/demo-corruptions.yaml")
    proc = run_snakemake(tmp_path, "-n", "--cores", "1", "--configfile", "config.yaml", overlay)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = proc.stdout
    for rule in (
        "corruptions_fixture",
        "download_corruptions",
        "measure_corruptions_teacher",
        "measure_corruptions_student",
        "collect_corruptions",
        "corruption_table",
        "fig5",
    ):
        assert f"rule {rule}:" in plan or f"localrule {rule}:" in plan, rule
    assert "fig5_corruptions.png" in plan and "tables/corruptions.md" in plan
