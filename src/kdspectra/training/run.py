"""One training run's construction: inputs checked, then the seeded model, the data on
the device, AdamW with its schedule, and the teacher targets, built once into a
:class:`TrainRun` that every step of :mod:`kdspectra.training.loop` reads.

Split from the loop so the loop reads as steps and epochs, and so ``benchmarks/`` can
build the exact run training uses (:func:`build_run`) and time its steps. Weight decay
applies to weight matrices and conv kernels only (not biases, norms or positions);
channels_last on every device; on CUDA fused AdamW and optional ``torch.compile``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdspectra.data.views import DeviceLoader, ViewParams, cached_view_params
from kdspectra.errors import ArtifactError, DataError
from kdspectra.models.students import build_projector, build_student
from kdspectra.runtime.device import compile_model, set_deterministic
from kdspectra.training.checkpoint import array_digest
from kdspectra.training.config import TrainConfig
from kdspectra.training.tracking import TrackSubset, resolve_track_every


@dataclass
class TrainRun:
    """Everything a step needs, built once per call of :func:`train_student`."""

    student: str
    cfg: TrainConfig
    device: torch.device
    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loader: DeviceLoader
    teacher: torch.Tensor  # N×D (clean targets) or K×N×D (targets of the cached views)
    checkpoint: Path
    views: ViewParams | None = None  # K×N cached-view table when teacher_view is "same"
    fingerprints: dict[str, str] = dataclasses.field(default_factory=dict)
    track: TrackSubset | None = None  # rows whose geometry is measured during training
    track_every: int = 0  # epochs between tracked points (0 = off); the last is always one
    # SimCLR head InfoNCE acts on (training.infonce.projector: mlp); never saved with the
    # student, never measured
    head: nn.Module | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def identity(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed by this run."""
        return {
            "student": self.student,
            "objective": self.cfg.objective,
            "embed_dim": self.embed_dim,
            "seed": self.cfg.seed,
            "num_images": self.loader.num_images,
            **self.fingerprints,
        }

    @property
    def embed_dim(self) -> int:
        return int(self.teacher.shape[-1])


def check_inputs(
    images: np.ndarray,
    teacher_emb: np.ndarray,
    teacher_view: str,
    track_teacher: np.ndarray | None = None,
) -> None:
    """Images must be the prepared uint8 NHWC split; teacher rows must match them
    (N×D clean targets, or K×N×D cached-view targets for ``teacher_view: same``), and so
    must the clean train embeddings the tracked geometry compares against.

    Checked before anything is built, so a mismatched artifact fails in seconds, naming
    the file to re-extract, instead of training on misaligned targets."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(
            f"training images: expected a uint8 N×H×W×3 array, found "
            f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}"
        )
    if images.shape[-1] != 3:
        raise DataError(f"training images: expected N×H×W×3 (RGB last), found {images.shape}")
    n = images.shape[0]
    ndim, expected = (3, f"(K, {n}, D)") if teacher_view == "same" else (2, f"({n}, D)")
    if teacher_emb.ndim != ndim or teacher_emb.shape[-2] != images.shape[0]:
        raise ArtifactError(
            f"teacher embeddings: expected shape {expected} — one row per training image, "
            f"same order (training.teacher_view: {teacher_view}) — found {teacher_emb.shape}"
        )
    if not np.isfinite(teacher_emb).all():
        raise ArtifactError("teacher embeddings: hold NaN/inf values; re-extract the teacher")
    if track_teacher is not None and np.shape(track_teacher)[:1] != (len(images),):
        raise ArtifactError(
            f"teacher clean train embeddings (tracking): expected {len(images)} rows, one per "
            f"training image, found shape {np.shape(track_teacher)}"
        )


def _param_groups(modules: list[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """Decay weight matrices and conv kernels; leave biases, norms and positions alone
    (the student's parameters first, then the projector's, if any)."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            (decay if p.ndim >= 2 and not name.endswith("pos") else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR multiplier for step ``s``: linear warmup to 1, then cosine decay towards 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_run(
    student: str,
    images: np.ndarray,
    teacher_emb: np.ndarray,
    cfg: TrainConfig,
    device: torch.device,
    checkpoint: Path,
    *,
    teacher_weights: str = "unknown",
    track_teacher: np.ndarray | None = None,
) -> TrainRun:
    """Seeded model, device-resident data, optimizer and per-step schedule.

    Public for ``benchmarks/``, which time the same steps the training loop runs.
    ``teacher_weights`` (the teacher's weights source) joins the input fingerprints.
    ``track_teacher`` are the teacher's clean N×D train embeddings for the tracked
    cosine (:mod:`kdspectra.training.tracking`); by default the targets themselves when they are
    clean, none (cosine NaN) for ``teacher_view: same``.
    """
    cuda = device.type == "cuda"
    set_deterministic(cfg.deterministic)
    torch.manual_seed(cfg.seed)
    model = build_student(student, int(teacher_emb.shape[-1]), width_mult=cfg.width_mult)
    model = model.to(device)
    # channels_last on every device: on CUDA for tensor cores, on CPU because oneDNN's
    # NHWC convolutions are 21-28 % faster for Student-M/L (neutral for Student-S).
    model = model.to(memory_format=torch.channels_last)
    # Built after the student, from the same seeded stream: the student's initial weights
    # are those of the arm without the head, so the two arms start alike.
    head = (
        build_projector(int(teacher_emb.shape[-1])).to(device) if cfg.projector == "mlp" else None
    )
    if cuda:
        torch.backends.cudnn.benchmark = not cfg.deterministic
    loader = DeviceLoader(images, batch_size=cfg.batch_size, device=device, seed=cfg.seed)
    optimizer = torch.optim.AdamW(
        _param_groups([model, *([head] if head is not None else [])], cfg.weight_decay),
        lr=cfg.lr,
        fused=True if cuda else None,
    )
    total = cfg.epochs * len(loader)
    warmup = min(total, round(cfg.warmup_epochs * len(loader)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup))
    forward = compile_model(model) if cfg.compile else model
    teacher = torch.from_numpy(np.ascontiguousarray(teacher_emb, dtype=np.float32)).to(device)
    views = None
    if cfg.teacher_view == "same":
        views = cached_view_params(
            len(images),
            int(teacher_emb.shape[0]),
            cfg.teacher_views_seed,
            crop_padding=cfg.crop_padding,
            jitter=cfg.jitter,
            grayscale_p=cfg.grayscale_p,
        ).to(device)
    fingerprints = {
        "images_digest": array_digest(images),
        "teacher_digest": array_digest(teacher_emb),
        "teacher_weights": teacher_weights,
    }
    run = TrainRun(
        student, cfg, device, model, forward, optimizer, scheduler, loader, teacher, checkpoint,
        views, fingerprints,
    )  # fmt: skip
    run.head = head
    run.track_every = resolve_track_every(cfg.track_every, cfg.epochs)
    if run.track_every:
        if track_teacher is None and cfg.teacher_view == "clean":
            track_teacher = teacher_emb
        run.track = TrackSubset.draw(images, track_teacher, cfg.track_samples)
    return run
