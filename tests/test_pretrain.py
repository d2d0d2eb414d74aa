"""Teachers trained here (``teachers.<name>.pretrain``): objectives, reproducibility,
resume after SIGTERM or a crash, train split only, loading back, config errors, the DAG.

Tiny towers (24-d, one block) on 64 real digits, a few epochs: seconds each.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file

import conftest
from kdspectra import stages
from kdspectra.errors import ArtifactError, ConfigError
from kdspectra.models.teacher_spec import parse_spec
from kdspectra.models.teachers import build_teacher
from kdspectra.models.towers import ImageTower, TowerArch
from kdspectra.training.checkpoint import Preempted
from kdspectra.training.pretrain import PretrainConfig, pretrain
from kdspectra.training.pretrain_losses import clip_loss, koleo, nt_xent

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny_config.yaml"
CLASSES = [str(d) for d in range(10)]
TINY_SHAPE = {"patch_size": 8, "embed_dim": 24, "depth": 1, "num_heads": 2, "proj_dim": 16,
              "text_depth": 1}  # fmt: skip


def spec(objective: str, **pretrain: Any) -> dict[str, Any]:
    """A tiny ``teachers.<name>`` entry trained here."""
    entry = {"objective": objective, "dataset": "digits", "epochs": 3, "batch_size": 16,
             "lr": 3e-3, "warmup_epochs": 0.5, **TINY_SHAPE, **pretrain}  # fmt: skip
    return {"name": f"t_{objective}", "library": "timm", "model": "vit_tiny_patch16_224",
            "pretrain": entry}  # fmt: skip


def parts(entry: dict[str, Any]) -> tuple[TowerArch, PretrainConfig]:
    parsed = parse_spec(entry)
    assert parsed.pretrain is not None
    return TowerArch.from_spec(parsed.model, 32, parsed.pretrain), PretrainConfig.from_spec(
        parsed.pretrain
    )


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    """64 train digits (uint8 N×32×32×3) and their labels."""
    from kdspectra.data.datasets import prepare_dataset

    out = tmp_path_factory.mktemp("digits")
    prepare_dataset("sklearn-digits", None, out)
    images, labels = np.load(out / "train_images.npy"), np.load(out / "train_labels.npy")
    return images[:64], labels[:64]


def train(entry: dict[str, Any], data: tuple[np.ndarray, np.ndarray], out: Path, **kw: Any) -> dict:
    arch, cfg = parts(entry)
    return pretrain(
        arch, cfg, *data, CLASSES, device=torch.device("cpu"),
        weights_out=out / "model.safetensors", meta_out=out / "meta.json",
        checkpoint=out / "ck.pt", **kw,
    )  # fmt: skip


# --------------------------------------------------------------------------- losses


def test_clip_loss_with_one_image_per_caption_is_clips_loss() -> None:
    """Deduplication changes nothing when every caption appears once: CLIP's loss."""
    gen = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 8, generator=gen), torch.randn(6, 8, generator=gen)
    scale = torch.tensor(np.log(1 / 0.07))
    logits = scale.exp() * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    target = torch.arange(6)
    clip = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    assert torch.allclose(clip_loss(img, txt, target, scale), clip, atol=1e-6)


def test_clip_loss_rewards_same_class_images_together() -> None:
    """Two images of one caption both on it beat the same images split apart."""
    txt = torch.eye(3)
    labels = torch.tensor([0, 0, 1, 2])
    together = torch.stack([txt[0], txt[0], txt[1], txt[2]])
    apart = torch.stack([txt[0], -txt[0] + 0.1 * txt[1], txt[1], txt[2]])
    scale = torch.tensor(2.0)
    assert clip_loss(together, txt, labels, scale) < clip_loss(apart, txt, labels, scale)


def test_nt_xent_is_low_for_matching_views_and_log_2n_minus_1_for_identical_rows() -> None:
    z = torch.eye(4)
    assert nt_xent(z, z, 0.1) < 0.01
    same = torch.ones(4, 3)
    assert torch.allclose(nt_xent(same, same, 0.1), torch.tensor(np.log(7.0)).float())


def test_koleo_is_minus_log_nearest_neighbour_distance() -> None:
    """Unit vectors at 90°: nearest distance √2 for all, so −log √2; a collapse costs more."""
    assert torch.allclose(koleo(torch.eye(3)), torch.tensor(-0.5 * np.log(2.0)).float())
    near = torch.tensor([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0]])
    assert koleo(near) > koleo(torch.eye(2))


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("objective", ["clip", "ssl"])
def test_each_objective_loss_decreases(objective: str, digits, tmp_path: Path) -> None:
    meta = train(spec(objective, epochs=6), digits, tmp_path)
    losses = [row["loss"] for row in meta["epochs"]]
    assert losses[-1] < losses[0] - 0.05, losses
    assert meta["inputs"]["images_digest"] and meta["versions"]["timm"]
    assert not (tmp_path / "ck.pt").exists()  # removed once the weights are written


def test_same_seed_same_weights_other_seed_other_weights(digits, tmp_path: Path) -> None:
    weights = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        (tmp_path / name).mkdir()
        train(spec("ssl", epochs=2, seed=seed), digits, tmp_path / name)
        weights.append(load_file(tmp_path / name / "model.safetensors"))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


class Crash(RuntimeError):
    """Stands in for kill -9: the process dies between two steps."""


@pytest.mark.parametrize("objective", ["clip", "ssl"])
@pytest.mark.parametrize("how", ["sigterm", "crash"])
def test_resume_gives_the_uninterrupted_weights(
    objective: str, how: str, digits, tmp_path: Path
) -> None:
    """SIGTERM mid-epoch checkpoints at the next step; a crash loses the epoch in flight;
    either way the rerun ends bit-identical to a run that was never interrupted."""
    entry = spec(objective, epochs=3)
    (tmp_path / "whole").mkdir()
    train(entry, digits, tmp_path / "whole")
    out = tmp_path / "cut"
    out.mkdir()

    def interrupt(epoch: int, step: int) -> None:
        if (epoch, step) == (2, 2):
            if how == "crash":
                raise Crash
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Preempted if how == "sigterm" else Crash):
        train(entry, digits, out, callback=interrupt)
    assert (out / "ck.pt").exists() and not (out / "model.safetensors").exists()
    meta = train(entry, digits, out)
    assert meta["resumed_from"] == {"epoch": 1, "step": 2 if how == "sigterm" else 0}
    whole, resumed = (load_file(d / "model.safetensors") for d in (tmp_path / "whole", out))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_pretraining_logs_steps_rate_and_eta(digits, tmp_path: Path, monkeypatch, caplog) -> None:
    """A pretraining longer than the log interval (shortened here) says how far it is."""
    monkeypatch.setattr("kdspectra.runtime.progress.INTERVAL_S", 1e-9)
    caplog.set_level(logging.INFO, logger="kdspectra.training.pretrain")
    train(spec("ssl", epochs=2), digits, tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pretrain ssl")]
    steps = len(lines) - 1  # one line per step, then the closing one
    assert steps >= 2 and lines[0].startswith(f"pretrain ssl: 1/{steps} step (")
    assert "step/s, ETA" in lines[0] and lines[-1].startswith(f"pretrain ssl: done, {steps} step")


def test_checkpoint_of_other_settings_is_refused(digits, tmp_path: Path) -> None:
    def stop(epoch: int, step: int) -> None:
        if epoch == 2:
            raise Crash

    with pytest.raises(Crash):
        train(spec("ssl", epochs=3), digits, tmp_path, callback=stop)
    with pytest.raises(ArtifactError, match="koleo_weight"):
        train(spec("ssl", epochs=3, koleo_weight=0.5), digits, tmp_path)


# --------------------------------------------------------------------------- the stage


def stage_run(entry: dict[str, Any], data_dir: Path, out: Path) -> dict[str, Path]:
    outputs = {"weights": out / "model.safetensors", "meta": out / "meta.json"}
    inputs = {"data": [str(data_dir / "train_images.npy"), str(data_dir / "train_labels.npy")],
              "classes": str(data_dir / "classes.txt")}  # fmt: skip
    params = {"spec": entry, "device": "cpu", "data_dir": str(data_dir),
              "checkpoint": str(out / "ck.pt")}  # fmt: skip
    stages.pretrain_teacher(inputs, outputs, params)
    return outputs


@pytest.fixture
def train_only_dir(digits, tmp_path: Path) -> Path:
    """A prepared-data folder holding the train split and class names, no test files."""
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "train_images.npy", digits[0])
    np.save(data / "train_labels.npy", digits[1])
    (data / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return data


@pytest.mark.parametrize("objective", ["clip", "ssl"])
def test_stage_trains_on_the_train_split_alone_and_build_teacher_loads_it(
    objective: str, train_only_dir: Path, digits, tmp_path: Path
) -> None:
    """No test file exists, so the stage cannot have read one; the weights load back
    through build_teacher and embed as the trained tower does (projected for clip)."""
    entry = spec(objective, epochs=1)
    out = stage_run(entry, train_only_dir, tmp_path)
    teacher = build_teacher(entry, weights=out["weights"])
    images = digits[0][:10]
    arch, _ = parts(entry)
    tower = ImageTower(arch).eval()
    tower.load_state_dict(load_file(out["weights"]))
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        expected = tower(x).numpy()
        backbone = tower.features(x).numpy()
    got = teacher.embed(images)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert teacher.dim == (16 if objective == "clip" else 24)
    if objective == "ssl":
        np.testing.assert_allclose(got, backbone, rtol=1e-5, atol=1e-5)
    assert teacher.describe()["weights_source"] == str(out["weights"])


def test_weights_of_another_shape_are_refused(train_only_dir: Path, tmp_path: Path) -> None:
    out = stage_run(spec("ssl", epochs=1), train_only_dir, tmp_path)
    with pytest.raises(ArtifactError, match="embed_dim"):
        build_teacher(spec("ssl", embed_dim=32), weights=out["weights"])


def test_a_teacher_trained_here_needs_its_weights_and_others_take_none() -> None:
    with pytest.raises(ConfigError, match=r"teachers\.t_clip\.pretrain"):
        build_teacher(spec("clip"))
    plain = {"name": "r", "library": "timm", "model": "vit_tiny_patch16_224", "image_size": 32}
    with pytest.raises(ConfigError, match="only for teachers with"):
        build_teacher(plain, weights="x.safetensors")


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epoch": 3}, r"teachers\.t_clip\.pretrain.*'epoch'"),
        ({"objective": "dino"}, r"teachers\.t_clip\.pretrain\.objective"),
        ({"lr": 0}, r"teachers\.t_clip\.pretrain\.lr"),
        ({"caption_template": "no slot"}, r"teachers\.t_clip\.pretrain\.caption_template"),
    ],
)
def test_a_bad_pretrain_key_is_refused_naming_it(change: dict[str, Any], message: str) -> None:
    entry = spec("clip")
    entry["pretrain"].update(change)
    with pytest.raises(ConfigError, match=message):
        parse_spec(entry)


def test_pretrain_and_pretrained_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match=r"teachers\.t_clip\.pretrained.*remove one"):
        parse_spec({**spec("clip"), "pretrained": "w.safetensors"})
    with pytest.raises(ConfigError, match=r"teachers\.t_clip\.library.*'timm'"):
        parse_spec({**spec("clip"), "library": "open_clip", "model": "ViT-S-32"})


def test_defaults_fill_a_minimal_pretrain_entry() -> None:
    parsed = parse_spec({"name": "m", "library": "timm", "model": "vit_tiny_patch16_224",
                         "pretrain": {"objective": "ssl", "dataset": "digits"}})  # fmt: skip
    assert parsed.pretrain is not None
    assert parsed.pretrain["epochs"] == 30 and parsed.pretrain["koleo_weight"] == 0.1


# --------------------------------------------------------------------------- workflow


@pytest.mark.workflow
def test_dry_run_plans_pretraining_before_extraction(tmp_path: Path) -> None:
    config = yaml.safe_load(TINY.read_text())
    config["teachers"] = {"here": spec("ssl")}
    config["teachers"]["here"].pop("name")
    config["experiments"]["clip_digits"]["teacher"] = "here"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = conftest.run_snakemake(tmp_path, "-n", "--cores", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts = dict(line.split()[:2] for line in proc.stdout.splitlines() if len(line.split()) == 2)
    assert counts.get("pretrain_teacher") == "1", proc.stdout[-3000:]
    assert "results/tiny/teachers/here/model.safetensors" in proc.stdout
    shutil.rmtree(tmp_path / ".snakemake", ignore_errors=True)
