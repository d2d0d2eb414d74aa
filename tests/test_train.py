"""Training loop: outputs, learning, exact resume after kill -9 / SIGTERM, failure messages.

Everything runs on a tiny random set (64 images, Student-S at width 0.25, 4 steps per
epoch) so the whole file stays within seconds on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from conftest import distillation_data
from kdspectra.errors import ArtifactError, ConfigError
from kdspectra.models.inference import embed_images, load_student
from kdspectra.models.students import build_student
from kdspectra.training.loop import (
    METRIC_COLUMNS,
    NonFiniteLossError,
    NonFiniteParametersError,
    Preempted,
    TrainConfig,
    train_student,
    warmup_cosine,
)
from kdspectra.training.losses import cosine_distillation

SRC = Path(__file__).resolve().parents[1] / "src"
N, D, STUDENT = 64, 24, "cnn_s"
CFG = TrainConfig(
    objective="cosine_infonce", epochs=3, batch_size=16, lr=3e-3, warmup_epochs=0.5, width_mult=0.25
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """One intra-op thread: on a small shared CI box two OpenMP threads contend with the
    other test processes and run ~10× slower; the subprocess test uses the same count so
    both sides of the resume comparison run identical kernels."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class Killed(Exception):
    """Stands in for kill -9: the process state is lost, only files on disk survive."""


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return distillation_data(N, D)


def outputs(root: Path, tag: str = "run") -> dict[str, Path]:
    return {
        "weights_out": root / f"{tag}.safetensors",
        "metrics_out": root / f"{tag}.csv",
        "meta_out": root / f"{tag}.json",
        "checkpoint": root / f"{tag}.ckpt.pt",
    }


def train(
    data: tuple[np.ndarray, np.ndarray],
    paths: dict[str, Path],
    cfg: TrainConfig = CFG,
    student: str = STUDENT,
    **kw: Any,
) -> dict[str, Any]:
    images, teacher = data
    return train_student(
        student, images, teacher, cfg, device=torch.device("cpu"), progress_bar=False, **paths, **kw
    )


def kill_at(epoch: int, step: int) -> Any:
    def callback(e: int, s: int) -> None:
        if (e, s) == (epoch, step):
            raise Killed

    return callback


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Every tensor equal, element for element (the README's "bitwise" on CPU)."""
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def straight(data: tuple[np.ndarray, np.ndarray], tmp_path_factory: Any) -> dict[str, Any]:
    """One uninterrupted run: the reference for every resume test."""
    paths = outputs(tmp_path_factory.mktemp("straight"))
    meta = train(data, paths)
    return {"meta": meta, "paths": paths, "weights": weights(paths["weights_out"])}


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("epochs", 0, "training.epochs"),
        ("batch_size", 2.5, "training.batch_size"),
        ("lr", -1.0, "training.lr"),
        ("temperature", 0.0, "training.infonce.temperature"),
        ("objective", "mse", "objective"),
        ("grayscale_p", 1.5, "training.augment.grayscale_p"),
    ],
)
def test_config_validation_names_the_key(field: str, value: Any, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        dataclasses.replace(CFG, **{field: value})
    assert repr(value) in str(err.value)


def test_warmup_cosine_schedule() -> None:
    f = warmup_cosine(total_steps=10, warmup_steps=2)
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0) and f(6) == pytest.approx(0.5)
    assert 0 < f(9) < 0.05
    assert warmup_cosine(10, 0)(0) == 1.0


# --------------------------------------------------------------------------- a full run


def test_run_writes_all_outputs(straight: dict[str, Any]) -> None:
    paths, meta = straight["paths"], straight["meta"]
    assert not paths["checkpoint"].exists()  # removed once the outputs are complete
    metrics = pd.read_csv(paths["metrics_out"])
    assert list(metrics.columns) == list(METRIC_COLUMNS)
    assert metrics["epoch"].tolist() == [1, 2, 3]
    assert np.isfinite(metrics.to_numpy()).all() and (metrics["loss_infonce"] > 0).all()
    np.testing.assert_allclose(metrics["cos_to_teacher"], 1 - metrics["loss_cos"])
    assert 0 < metrics["lr"].iloc[-1] < metrics["lr"].iloc[0] <= CFG.lr
    on_disk = json.loads(paths["meta_out"].read_text())
    assert on_disk == json.loads(json.dumps(meta))
    for key in ("student", "objective", "seed", "params", "embed_dim", "width_mult", "epochs"):
        assert key in meta
    assert meta["params"] == sum(
        p.numel() for p in build_student(STUDENT, D, width_mult=0.25).parameters()
    )
    assert meta["embed_dim"] == D and meta["wall_s"] > 0 and meta["images_per_s"] > 0
    assert meta["resumed_from"] is None


def test_weights_load_and_embed(
    straight: dict[str, Any], data: tuple[np.ndarray, np.ndarray]
) -> None:
    images, _ = data
    model = load_student(
        straight["paths"]["weights_out"], STUDENT, D, width_mult=0.25, device="cpu"
    )
    assert not model.training
    emb = embed_images(model, images, device=torch.device("cpu"), batch_size=20)
    assert emb.shape == (N, D) and emb.dtype == np.float32
    as_float = embed_images(model, images.astype(np.float32) / 255, device="cpu")
    np.testing.assert_allclose(emb, as_float, atol=1e-5)
    with torch.no_grad():  # same rows, same order as a direct forward pass
        direct = model(torch.from_numpy(images[:5]).permute(0, 3, 1, 2).float() / 255)
    np.testing.assert_allclose(emb[:5], direct.numpy(), atol=1e-5)


def test_one_epoch_lowers_the_loss(data: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    images, teacher = data
    cfg = dataclasses.replace(CFG, objective="cosine", epochs=1, warmup_epochs=0.0)
    torch.manual_seed(cfg.seed)  # the run builds its student from the same seed
    before = build_student(STUDENT, D, width_mult=0.25)
    paths = outputs(tmp_path)
    train(data, paths, cfg)
    after = load_student(paths["weights_out"], STUDENT, D, width_mult=0.25, device="cpu")

    def loss(model: torch.nn.Module) -> float:
        emb = embed_images(model, images, device="cpu")
        return float(cosine_distillation(torch.from_numpy(emb), torch.from_numpy(teacher)))

    assert loss(after) < loss(before) - 0.05


# --------------------------------------------------------------------------- resume


def test_resume_after_kill_matches_uninterrupted_run(
    data: tuple[np.ndarray, np.ndarray], straight: dict[str, Any], tmp_path: Path
) -> None:
    paths = outputs(tmp_path)
    with pytest.raises(Killed):  # dies mid-epoch 2: only the epoch-1 checkpoint survives
        train(data, paths, callback=kill_at(2, 2))
    assert paths["checkpoint"].exists() and not paths["weights_out"].exists()
    meta = train(data, paths)
    assert meta["resumed_from"] == {"epoch": 1, "step": 0}
    assert bitwise_equal(weights(paths["weights_out"]), straight["weights"])
    resumed = pd.read_csv(paths["metrics_out"])
    reference = pd.read_csv(straight["paths"]["metrics_out"])
    cols = ["epoch", "loss", "loss_cos", "loss_infonce", "lr"]
    pd.testing.assert_frame_equal(resumed[cols], reference[cols], check_exact=True)


def test_a_resumed_run_logs_its_steps_rate_and_eta_from_where_it_stopped(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path, monkeypatch, caplog
) -> None:
    """Off a terminal the log is the only progress a cluster user sees: a line every
    interval (here shortened to nothing) with steps done of all epochs, rate and ETA."""
    paths = outputs(tmp_path)
    with pytest.raises(Killed):
        train(data, paths, callback=kill_at(2, 2))
    monkeypatch.setattr("kdspectra.runtime.progress.INTERVAL_S", 1e-9)
    caplog.set_level(logging.INFO, logger="kdspectra.training.loop")
    train(data, paths)
    steps = N // CFG.batch_size
    pattern = re.compile(
        rf"{STUDENT}/cosine_infonce: (\d+)/(\d+) step \(\d+ %\), [\d.]+ step/s, ETA"
    )
    found = [m.groups() for r in caplog.records if (m := pattern.match(r.getMessage()))]
    # Resumed at the start of epoch 2: the first line counts epoch 1 as done.
    assert found[0] == (str(steps + 1), str(CFG.epochs * steps))
    assert len(found) == (CFG.epochs - 1) * steps
    done = [r.getMessage() for r in caplog.records if ": done, " in r.getMessage()]
    assert done and done[-1].startswith(f"{STUDENT}/cosine_infonce: done, {2 * steps} step")


def test_sigusr1_checkpoints_mid_epoch_and_resumes_exactly(
    data: tuple[np.ndarray, np.ndarray], straight: dict[str, Any], tmp_path: Path
) -> None:
    def preempt(epoch: int, step: int) -> None:
        if (epoch, step) == (2, 1):
            os.kill(os.getpid(), signal.SIGUSR1)

    paths = outputs(tmp_path)
    with pytest.raises(Preempted) as exc:
        train(data, paths, callback=preempt)
    assert exc.value.code == 128 + signal.SIGUSR1
    assert "epoch 2, step 1" in str(exc.value) and str(paths["checkpoint"]) in str(exc.value)
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handler restored
    meta = train(data, paths)
    assert meta["resumed_from"] == {"epoch": 1, "step": 1}
    assert bitwise_equal(weights(paths["weights_out"]), straight["weights"])


SIGTERM_SCRIPT = """
import os, signal, sys
from pathlib import Path
import numpy as np, torch
from kdspectra.training.loop import TrainConfig, train_student

torch.set_num_threads(1)

root = Path(sys.argv[1])
cfg = TrainConfig(**eval(sys.argv[2]))

def callback(epoch, step):
    if (epoch, step) == (3, 3):
        os.kill(os.getpid(), signal.SIGTERM)

train_student("{student}", np.load(root / "images.npy"), np.load(root / "teacher.npy"), cfg,
    device=torch.device("cpu"), weights_out=root / "run.safetensors",
    metrics_out=root / "run.csv", meta_out=root / "run.json",
    checkpoint=root / "run.ckpt.pt", callback=callback, progress_bar=False)
"""


@pytest.mark.slow
def test_sigterm_in_a_real_process_exits_nonzero_and_resumes(
    data: tuple[np.ndarray, np.ndarray], straight: dict[str, Any], tmp_path: Path
) -> None:
    images, teacher = data
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "teacher.npy", teacher)
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(SIGTERM_SCRIPT.format(student=STUDENT)))
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    args = [sys.executable, str(script), str(tmp_path), repr(dataclasses.asdict(CFG))]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    paths = outputs(tmp_path)
    assert paths["checkpoint"].exists() and not paths["weights_out"].exists()
    state = torch.load(paths["checkpoint"], weights_only=True)
    assert (state["epoch"], state["step"]) == (2, 3)
    meta = train(data, paths)
    assert meta["resumed_from"] == {"epoch": 2, "step": 3}
    assert bitwise_equal(weights(paths["weights_out"]), straight["weights"])


# --------------------------------------------------------------------------- failures


def test_checkpoint_of_another_student_is_refused(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    paths = outputs(tmp_path)
    cfg = dataclasses.replace(CFG, objective="cosine")
    with pytest.raises(Killed):
        train(data, paths, cfg, student="tiny_vit", callback=kill_at(2, 1))
    with pytest.raises(ArtifactError) as err:
        train(data, paths, cfg, student=STUDENT)
    msg = str(err.value)
    assert str(paths["checkpoint"]) in msg and "tiny_vit" in msg and STUDENT in msg
    assert not paths["weights_out"].exists()


def test_unreadable_checkpoint_is_an_artifact_error(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    paths = outputs(tmp_path)
    paths["checkpoint"].write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match=str(paths["checkpoint"])):
        train(data, paths)


def test_non_finite_loss_names_epoch_step_and_parts(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kdspectra.training.run as train_module

    built: list[torch.nn.Module] = []

    def build_and_remember(*args: Any, **kw: Any) -> torch.nn.Module:
        built.append(build_student(*args, **kw))
        return built[-1]

    saved: dict[str, bytes] = {}
    paths = outputs(tmp_path)

    def poison(epoch: int, step: int) -> None:
        if (epoch, step) == (2, 2):  # epoch 1's checkpoint exists: corrupt the weights
            saved["checkpoint"] = paths["checkpoint"].read_bytes()
            with torch.no_grad():
                built[0].head.weight.fill_(float("nan"))

    monkeypatch.setattr(train_module, "build_student", build_and_remember)
    with pytest.raises(NonFiniteLossError) as err:
        train(data, paths, callback=poison)
    msg = str(err.value)
    assert "epoch 2, step 3/4" in msg
    assert "loss=nan" in msg and "loss_cos=nan" in msg and "loss_infonce=nan" in msg
    # The last good checkpoint is kept as it was; no weights are written.
    assert paths["checkpoint"].read_bytes() == saved["checkpoint"]
    assert not paths["weights_out"].exists()


def test_non_finite_parameters_never_reach_a_checkpoint(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NaN that the loss does not show (a parameter off the forward path) is still caught."""
    import kdspectra.training.run as train_module

    built: list[torch.nn.Module] = []

    def build_with_spare(*args: Any, **kw: Any) -> torch.nn.Module:
        model = build_student(*args, **kw)
        model.register_parameter("spare", torch.nn.Parameter(torch.zeros(3)))
        built.append(model)
        return model

    def poison(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 4):
            with torch.no_grad():
                built[0].spare.fill_(float("inf"))

    monkeypatch.setattr(train_module, "build_student", build_with_spare)
    paths = outputs(tmp_path)
    with pytest.raises(NonFiniteParametersError, match="spare"):
        train(data, paths, callback=poison)
    assert not paths["checkpoint"].exists() and not paths["weights_out"].exists()


def test_teacher_rows_must_match_images(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    images, teacher = data
    with pytest.raises(ArtifactError, match=r"expected shape \(64, D\).*\(63, 24\)"):
        train((images, teacher[:-1]), outputs(tmp_path))


def test_load_student_refuses_weights_of_another_model(
    straight: dict[str, Any], tmp_path: Path
) -> None:
    path = straight["paths"]["weights_out"]
    with pytest.raises(ArtifactError, match=str(path)):
        load_student(path, "tiny_vit", D, width_mult=0.25, device="cpu")
    with pytest.raises(ArtifactError, match=str(path)):
        load_student(path, STUDENT, D + 1, width_mult=0.25, device="cpu")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(ArtifactError, match=str(bad)):
        load_student(bad, STUDENT, D, width_mult=0.25, device="cpu")


# --------------------------------------------------------------------------- input identity


@pytest.mark.parametrize("change", ["teacher", "images", "weights"])
def test_checkpoint_for_other_inputs_is_refused(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path, change: str
) -> None:
    """Killed after epoch 1, then the teacher is re-extracted (other targets), the images
    are re-prepared, or the teacher's weights source changes: never resume silently."""
    images, teacher = data
    paths = outputs(tmp_path)
    with pytest.raises(Killed):
        train(data, paths, callback=kill_at(2, 1))
    kwargs: dict[str, Any] = {"teacher_weights": "unknown"}
    if change == "teacher":
        teacher = teacher + np.float32(1e-3)
    elif change == "images":
        images = images.copy()
        images[0, 0, 0, 0] ^= 1
    else:
        kwargs["teacher_weights"] = "openai"
    with pytest.raises(ArtifactError) as err:
        train((images, teacher), paths, **kwargs)
    msg = str(err.value)
    field = {"teacher": "teacher_digest", "images": "images_digest", "weights": "teacher_weights"}
    assert str(paths["checkpoint"]) in msg and field[change] in msg and "rm " in msg
    assert not paths["weights_out"].exists()


# --------------------------------------------------------------------------- controlled arms


def test_infonce_weight_zero_trains_bit_identically_to_cosine(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """The two objectives differ by the λ·InfoNCE term and nothing else: same views, same
    batch, same BatchNorm statistics, same draws. With λ = 0 the weights are equal."""
    runs = {}
    for objective in ("cosine", "cosine_infonce"):
        cfg = dataclasses.replace(CFG, objective=objective, epochs=2, infonce_weight=0.0)
        paths = outputs(tmp_path, objective)
        meta = train(data, paths, cfg)
        runs[objective] = (weights(paths["weights_out"]), meta)
    assert bitwise_equal(runs["cosine"][0], runs["cosine_infonce"][0])
    assert runs["cosine"][1]["final_loss_infonce"] == 0.0
    assert runs["cosine_infonce"][1]["final_loss_infonce"] > 0  # computed, weighted by 0
    # With λ > 0 the arms do differ (the test above is not vacuous).
    paths = outputs(tmp_path, "lambda1")
    train(data, paths, dataclasses.replace(CFG, epochs=2))
    assert not bitwise_equal(runs["cosine"][0], weights(paths["weights_out"]))


def test_cosine_loss_averages_both_views() -> None:
    """L_cos = ½(cos-loss(view 1) + cos-loss(view 2)), against an independent numpy form."""
    from kdspectra.training.loop import compute_loss

    rng = np.random.default_rng(1)
    s, t = rng.standard_normal((2, 8, 5))
    s_t, t_t = torch.from_numpy(s).float(), torch.from_numpy(t).float()

    def ref(a: np.ndarray, b: np.ndarray) -> float:
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        return float(np.mean(1 - cos))

    expected = 0.5 * (ref(s[:4], t[:4]) + ref(s[4:], t[4:]))
    for objective in ("cosine", "cosine_infonce"):
        cfg = dataclasses.replace(CFG, objective=objective)
        _, loss_cos, _ = compute_loss(cfg, s_t, t_t)
        assert float(loss_cos) == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- teacher views


def test_same_view_targets_are_the_teacher_embedding_of_that_view(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """teacher_view: same replays cached view k of image i exactly: a 'teacher' that is a
    fixed linear map of the pixels, applied to the extracted views, gives back exactly the
    targets training pairs with each student view."""
    from kdspectra.data.views import apply_view, cached_view_params
    from kdspectra.training.loop import build_run, make_views

    images, _ = data
    cfg = dataclasses.replace(CFG, teacher_view="same", teacher_views_seed=3)
    k = 4
    w = torch.from_numpy(np.random.default_rng(2).standard_normal((3 * 32 * 32, D))).float()
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)
    table = cached_view_params(
        N, k, 3, crop_padding=cfg.crop_padding, jitter=cfg.jitter, grayscale_p=cfg.grayscale_p
    )
    idx = torch.arange(N)
    cached = torch.stack(
        [
            apply_view(pixels, table.take(torch.full_like(idx, v), idx)).flatten(1) @ w
            for v in range(k)
        ]
    )  # what extraction stores: K×N×D
    run = build_run(STUDENT, images, cached.numpy(), cfg, torch.device("cpu"), tmp_path / "c")
    batch_idx, x = next(run.loader.batches(0))
    views, targets = make_views(run, batch_idx, x, run.loader.generator(0))
    assert views.shape[0] == targets.shape[0] == 2 * len(batch_idx)
    torch.testing.assert_close(views.flatten(1) @ w, targets, rtol=1e-5, atol=1e-4)
    # the two views of an image replay two different cached views
    first, second = views.chunk(2)
    assert all(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_same_view_needs_a_k_by_n_teacher_array(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    cfg = dataclasses.replace(CFG, teacher_view="same")
    with pytest.raises(ArtifactError, match=r"\(K, 64, D\).*teacher_view: same"):
        train(data, outputs(tmp_path), cfg)


def test_cached_views_depend_on_the_seed_only() -> None:
    from kdspectra.data.views import cached_view_params

    kw = {"crop_padding": 4, "jitter": 0.4, "grayscale_p": 0.2}
    a, b = cached_view_params(50, 3, 7, **kw), cached_view_params(50, 3, 7, **kw)
    assert torch.equal(a.dy, b.dy) and torch.equal(a.colour, b.colour)
    assert a.dy.shape == (3, 50) and a.colour.shape == (3, 50, 3)
    assert not torch.equal(a.dx, cached_view_params(50, 3, 8, **kw).dx)


# --------------------------------------------------------------------------- measurement


def test_embeddings_are_fp32_even_under_an_outer_autocast(straight: dict[str, Any]) -> None:
    """Measurement ignores any autocast around it: bf16 rounding would fill the null space."""
    images = np.random.default_rng(3).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    model = load_student(
        straight["paths"]["weights_out"], STUDENT, D, width_mult=0.25, device="cpu"
    )
    reference = embed_images(model, images, device="cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = embed_images(model, images, device="cpu")
    assert inside.dtype == np.float32
    np.testing.assert_array_equal(inside, reference)


def test_meta_records_the_rank_ceiling_inputs(straight: dict[str, Any]) -> None:
    meta = straight["meta"]
    model = build_student(STUDENT, D, width_mult=0.25)
    assert meta["feature_width"] == model.head.in_features
    assert meta["teacher_view"] == "clean" and meta["teacher_views_k"] == 0
    assert set(meta["inputs"]) == {"images_digest", "teacher_digest", "teacher_weights"}
