"""What only a CUDA device can show: `make test-gpu` (`pytest -m cuda`).

Skipped without CUDA. On a GPU, training uses bf16 autocast, channels_last and fused
kernels, so a resumed run is close to, not bitwise equal to, an uninterrupted one (the
CPU tests in test_train.py check bitwise equality); measurement must still be fp32, and
checkpoints must carry the CUDA RNG state. Small shapes: the whole file takes seconds.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import distillation_data
from kdspectra.models.inference import embed_images
from kdspectra.models.students import build_student
from kdspectra.models.teachers import build_teacher
from kdspectra.training.loop import Preempted, TrainConfig, train_student

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda")
N, D, BATCH = 64, 24, 16  # 4 steps per epoch
CFG = TrainConfig(
    objective="cosine_infonce", epochs=3, batch_size=BATCH, lr=3e-3, warmup_epochs=0.5,
    width_mult=0.25,
)  # fmt: skip
TINY_TEACHER = {
    "name": "gpu_test",
    "library": "open_clip",
    "model": "ViT-S-32",
    "pretrained": None,
    "image_size": 64,
}


class Killed(Exception):
    """Stands in for kill -9: only the files on disk survive."""


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return distillation_data(N, D)


def _paths(root: Path) -> dict[str, Path]:
    return {
        "weights_out": root / "w.safetensors",
        "metrics_out": root / "m.csv",
        "meta_out": root / "meta.json",
        "checkpoint": root / "ckpt.pt",
    }


def _train(data: tuple[np.ndarray, np.ndarray], root: Path, **kw: Any) -> dict[str, Any]:
    images, teacher = data
    return train_student(
        "cnn_s", images, teacher, CFG, device=CUDA, progress_bar=False, **_paths(root), **kw
    )


def test_sigusr1_resume_on_cuda_is_close_to_an_uninterrupted_run(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    straight = _train(data, tmp_path / "straight")

    def preempt(epoch: int, step: int) -> None:
        if (epoch, step) == (2, 1):
            os.kill(os.getpid(), signal.SIGUSR1)

    resumed_dir = tmp_path / "resumed"
    with pytest.raises(Preempted, match="epoch 2, step 1"):
        _train(data, resumed_dir, callback=preempt)
    meta = _train(data, resumed_dir)
    assert meta["resumed_from"] == {"epoch": 1, "step": 1}
    assert meta["device"].startswith("cuda") and straight["device"].startswith("cuda")
    a = load_file(str(tmp_path / "straight" / "w.safetensors"))
    b = load_file(str(resumed_dir / "w.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=2e-2, atol=2e-3, msg=key)


def test_checkpoint_carries_the_cuda_rng_state(
    data: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """The epoch-1 checkpoint holds the CUDA generator as it was when epoch 1 ended."""
    seen: dict[str, torch.Tensor] = {}
    steps = N // BATCH

    def record_then_die(epoch: int, step: int) -> None:
        if (epoch, step) == (1, steps):
            torch.cuda.manual_seed(1234)  # a state no default seeding would produce
            seen["state"] = torch.cuda.get_rng_state(CUDA)
        if (epoch, step) == (2, 1):
            raise Killed

    with pytest.raises(Killed):
        _train(data, tmp_path, callback=record_then_die)
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state["rng_device"] is not None
    assert torch.equal(state["rng_device"], seen["state"])


def test_embedding_is_fp32_even_under_an_outer_autocast() -> None:
    torch.manual_seed(0)
    model = build_student("cnn_s", 64, width_mult=0.25).to(CUDA)
    rng = np.random.default_rng(1)
    x = rng.random((32, 32, 32, 3), dtype=np.float32)
    model.eval()
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:  # the definition of fp32: plain float32 kernels, no autocast, no TF32
        with torch.no_grad():
            batch = torch.from_numpy(x).permute(0, 3, 1, 2).to(CUDA)
            reference = model(batch).float().cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    model.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):  # training's context must not leak
        out = embed_images(model, x, device=CUDA, batch_size=8)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-6)
    as_bf16 = torch.from_numpy(out).to(torch.bfloat16).float().numpy()
    assert (as_bf16 != out).mean() > 0.5, "values look bf16-rounded"


def test_random_init_teacher_on_cuda_matches_cpu() -> None:
    images = np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    cpu = build_teacher(TINY_TEACHER, device="cpu").embed(images, batch_size=4)
    gpu = build_teacher(TINY_TEACHER, device=CUDA).embed(images, batch_size=4)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)
