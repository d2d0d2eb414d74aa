"""Distil one student from precomputed teacher embeddings: fast, resumable, preemptible.

The loop reads top to bottom with no framework in between (airbench-style): the whole
uint8 split lives on the device (:class:`kdspectra.data.DeviceLoader`), each batch is
augmented there in one go (:func:`kdspectra.data.augment`), and one step is forward →
loss → backward → AdamW → LR schedule.

Objectives (``TrainConfig.objective``) form a controlled comparison: both draw the same
two views per image from one augmentation pipeline (crop, flip, and colour jitter +
grayscale when ``training.augment`` asks for them), push them through the network as one
2B batch (so BatchNorm sees the same statistics), and average L_cos over both views. The
only difference is the λ·InfoNCE term:

* ``cosine`` — L_cos, with L_cos = 1 − cos(student(view), teacher target).
* ``cosine_infonce`` — L_cos + λ·InfoNCE(view 1, view 2). With λ = 0 it trains
  bit-identically to ``cosine`` on CPU (a test holds it to ``torch.equal``).

The teacher target (``TrainConfig.teacher_view``) is the clean image's embedding
(``clean``, the paper's setting) or the teacher's embedding of the very view the student
sees (``same``, "consistent teaching", Beyer et al. 2022): the teacher embedded K seeded
views per image at extraction time (:func:`kdspectra.data.cached_view_params`) and each
student view replays one of them exactly, so a fixed per-image target no longer forces the
student to be invariant to the augmentation.

Numerics: channels_last on every device (faster on CPU too); on CUDA, bf16 autocast +
fused AdamW (+ optional ``torch.compile``); losses are always computed in fp32 (see
:mod:`kdspectra.losses`). On CPU everything is fp32, which makes a resumed run
bit-for-bit equal to an uninterrupted one. Weight decay applies to weight matrices and
conv kernels only, not to biases, norm parameters or the positional embedding (the usual
AdamW practice: decaying them only fights the normalisation).

Resume and preemption:

* After every epoch the full training state (model, optimizer, scheduler, CPU/device RNG,
  epoch, metric rows) is written atomically to ``checkpoint`` with ``torch.save`` and read
  back with ``weights_only=True``. The batch order and augmentation draws are pure
  functions of ``(seed, epoch)``, so rerunning after ``kill -9`` continues from the last
  finished epoch and ends with the same weights as an uninterrupted run.
* SIGTERM / SIGUSR1 (SLURM preemption, ``scancel --signal``) only set a flag; at the next
  step boundary the loop writes a checkpoint that also holds the position inside the
  epoch and the augmentation generator's state, then raises :class:`Preempted` — a
  ``SystemExit`` with code 128 + signal number, so a script exits non-zero without a
  traceback and a resumed run continues from exactly that step.
* A checkpoint records fingerprints of its inputs (the training images, the teacher
  targets, the teacher's weights source) beside the settings; a checkpoint written for
  other inputs is refused with an error that names what changed, never resumed.
* The checkpoint is deleted once weights, metrics and meta are written: it is bulky
  (model + two Adam moments) and, being no rule output, would otherwise accumulate for
  every (experiment, student, objective, seed). A rerun of a finished job therefore
  trains from scratch, which reproduces the same weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from kdspectra.data import (
    DeviceLoader,
    ViewParams,
    apply_view,
    cached_view_params,
    draw_view_params,
    has_colour,
)
from kdspectra.device import device_record, set_deterministic
from kdspectra.errors import ArtifactError, ConfigError, DataError, KdspectraError
from kdspectra.io import atomic_path, save_csv, save_json
from kdspectra.losses import OBJECTIVES, cosine_distillation, info_nce
from kdspectra.precision import fp32
from kdspectra.students import build_student, count_parameters, feature_width

log = logging.getLogger("kdspectra.train")

CHECKPOINT_FORMAT = 1
PREEMPT_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s
)
METRIC_COLUMNS = (
    "epoch",
    "loss",
    "loss_cos",
    "loss_infonce",
    "cos_to_teacher",
    "lr",
    "images_per_s",
    "seconds",
)
# Config fields that do not change the numbers a run produces, so a checkpoint written
# with another value may still be resumed.
_RESUME_NEUTRAL = frozenset({"compile"})
# Where each TrainConfig field lives in config.yaml, for error messages.
_CONFIG_KEYS = {
    "infonce_weight": "training.infonce.weight",
    "temperature": "training.infonce.temperature",
    "crop_padding": "training.augment.crop_padding",
    "jitter": "training.augment.jitter",
    "grayscale_p": "training.augment.grayscale_p",
    "objective": "objective",
    "seed": "seeds",
    "teacher_view": "training.teacher_view",
    "teacher_views_seed": "training.teacher_views_seed",
}
TEACHER_VIEWS = ("clean", "same")

StepCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything that determines a training run besides the data and the student name.

    Defaults after ``lr`` are our choices where the paper is silent (they match
    ``config.yaml``); the workflow always passes every field explicitly.
    """

    objective: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    infonce_weight: float = 1.0
    temperature: float = 0.1
    crop_padding: int = 4
    jitter: float = 0.4
    grayscale_p: float = 0.2
    width_mult: float = 1.0
    compile: bool = False
    teacher_view: str = "clean"
    teacher_views_seed: int = 0
    deterministic: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        """Fail at construction, naming the config key, rather than mid-training."""
        if self.objective not in OBJECTIVES:
            self._fail("objective", f"one of {list(OBJECTIVES)}")
        for name in ("epochs", "batch_size"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                self._fail(name, "an integer >= 1")
        for name in ("lr", "temperature", "width_mult"):
            if not _is_real(getattr(self, name)) or not getattr(self, name) > 0:
                self._fail(name, "a finite number > 0")
        for name in ("weight_decay", "warmup_epochs", "infonce_weight"):
            if not _is_real(getattr(self, name)) or getattr(self, name) < 0:
                self._fail(name, "a finite number >= 0")
        for name in ("jitter", "grayscale_p"):
            if not _is_real(getattr(self, name)) or not 0 <= getattr(self, name) <= 1:
                self._fail(name, "a number in [0, 1]")
        if not _is_int(self.crop_padding) or self.crop_padding < 0:
            self._fail("crop_padding", "an integer >= 0")
        if not _is_int(self.seed) or self.seed < 0:
            self._fail("seed", "an integer >= 0")
        for name in ("compile", "deterministic"):
            if not isinstance(getattr(self, name), bool):
                self._fail(name, "true or false")
        if self.teacher_view not in TEACHER_VIEWS:
            self._fail("teacher_view", f"one of {list(TEACHER_VIEWS)}")
        if not _is_int(self.teacher_views_seed) or self.teacher_views_seed < 0:
            self._fail("teacher_views_seed", "an integer >= 0")

    @property
    def colour(self) -> bool:
        """Whether the view pipeline has a colour step (any jitter or grayscale)."""
        return has_colour(self.jitter, self.grayscale_p)

    def _fail(self, name: str, expected: str) -> None:
        key = _CONFIG_KEYS.get(name, f"training.{name}")
        raise ConfigError(f"config key '{key}': expected {expected}, found {getattr(self, name)!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(v)


# --------------------------------------------------------------------------- errors


class Preempted(SystemExit):
    """Training stopped on SIGTERM/SIGUSR1 after saving a checkpoint; rerun to resume.

    A ``SystemExit`` so that an uncaught one ends the process with ``code`` = 128 + signal
    number (143 for SIGTERM, the shell's convention) and no traceback; catch it explicitly
    to handle preemption in-process.
    """

    def __init__(self, signum: int, checkpoint: Path, epoch: int, step: int) -> None:
        super().__init__(128 + signum)
        self.signum, self.checkpoint, self.epoch, self.step = signum, checkpoint, epoch, step

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return (
            f"preempted by {name} at epoch {self.epoch}, step {self.step}; checkpoint "
            f"saved to {self.checkpoint}; rerun the same command to resume"
        )


class NonFiniteLossError(KdspectraError, FloatingPointError):
    """The loss became NaN/inf; the message names epoch, step and every loss part."""


class NonFiniteParametersError(KdspectraError, FloatingPointError):
    """A parameter became NaN/inf; raised before it could reach a checkpoint or weights."""


# --------------------------------------------------------------------------- state


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


@dataclass
class _Progress:
    """Where the run stands: finished epochs, position in the current one, metric rows."""

    epoch: int = 0  # epochs finished
    step: int = 0  # batches finished within epoch ``epoch`` (0 at an epoch boundary)
    rows: list[dict[str, float]] = dataclasses.field(default_factory=list)
    aug_state: torch.Tensor | None = None  # augmentation generator state at ``step``
    partial_losses: torch.Tensor | None = None  # step×3 losses of the unfinished epoch
    partial_seconds: float = 0.0
    resumed_from: dict[str, int] | None = None


class _PreemptionFlag:
    """Set by the signal handler; read by the loop at step boundaries."""

    signum: int | None = None


@contextlib.contextmanager
def _catch_preemption() -> Iterator[_PreemptionFlag]:
    """Turn SIGTERM/SIGUSR1 into a flag for the duration of training, then restore.

    Signal handlers can only be installed from the main thread; elsewhere (e.g. a worker
    thread) the default behaviour is kept.
    """
    flag = _PreemptionFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, _frame: Any) -> None:
        flag.signum = signum
        log.warning("received %s; checkpointing at the next step", signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in PREEMPT_SIGNALS}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# --------------------------------------------------------------------------- setup


def _check_inputs(images: np.ndarray, teacher_emb: np.ndarray, teacher_view: str) -> None:
    """Images must be the prepared uint8 NHWC split; teacher rows must match them
    (N×D clean targets, or K×N×D cached-view targets for ``teacher_view: same``)."""
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


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay weight matrices and conv kernels; leave biases, norms and positions alone."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
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
) -> TrainRun:
    """Seeded model, device-resident data, optimizer and per-step schedule.

    Public for ``benchmarks/``, which time the same steps the training loop runs.
    ``teacher_weights`` (the teacher's weights source) joins the input fingerprints.
    """
    cuda = device.type == "cuda"
    set_deterministic(cfg.deterministic)
    torch.manual_seed(cfg.seed)
    model = build_student(student, int(teacher_emb.shape[-1]), width_mult=cfg.width_mult)
    model = model.to(device)
    # channels_last on every device: on CUDA for tensor cores, on CPU because oneDNN's
    # NHWC convolutions are 21-28 % faster for Student-M/L (neutral for Student-S).
    model = model.to(memory_format=torch.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = not cfg.deterministic
    loader = DeviceLoader(images, batch_size=cfg.batch_size, device=device, seed=cfg.seed)
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.weight_decay), lr=cfg.lr, fused=True if cuda else None
    )
    total = cfg.epochs * len(loader)
    warmup = min(total, round(cfg.warmup_epochs * len(loader)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup))
    forward = torch.compile(model) if cfg.compile else model
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
    return TrainRun(
        student, cfg, device, model, forward, optimizer, scheduler, loader, teacher, checkpoint,
        views, fingerprints,
    )  # fmt: skip


def array_digest(arr: np.ndarray) -> str:
    """BLAKE2b of an array's dtype, shape and bytes: the identity of a training input.

    A checkpoint's settings say nothing about the data: a teacher re-extracted under the
    same name (other init seed, real weights after a preemption) must not be resumed into.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


# --------------------------------------------------------------------------- checkpoint


def _save_checkpoint(run: TrainRun, progress: _Progress) -> None:
    """Write the full training state atomically (only tensors, dicts, lists, numbers)."""
    _check_parameters(run, f"checkpoint {run.checkpoint}")
    state = {
        "format": CHECKPOINT_FORMAT,
        "identity": run.identity,
        "config": dataclasses.asdict(run.cfg),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_device": torch.cuda.get_rng_state(run.device) if run.cuda else None,
        "epoch": progress.epoch,
        "step": progress.step,
        "aug_state": progress.aug_state,
        "partial_losses": progress.partial_losses,
        "partial_seconds": progress.partial_seconds,
        "rows": progress.rows,
    }
    with atomic_path(run.checkpoint) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(run: TrainRun) -> _Progress:
    """Restore ``run`` from its checkpoint, after checking it belongs to this run."""
    path = run.checkpoint
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, wrong format
        raise ArtifactError(
            f"{path}: not a readable training checkpoint ({type(exc).__name__}: {exc}); "
            f"delete it to start over"
        ) from exc
    _validate_checkpoint(path, state, run)
    try:
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{path}: does not fit this run's model/optimizer: {exc}") from exc
    torch.set_rng_state(state["rng_cpu"])
    if run.cuda and state["rng_device"] is not None:
        torch.cuda.set_rng_state(state["rng_device"], run.device)
    progress = _Progress(
        epoch=int(state["epoch"]),
        step=int(state["step"]),
        rows=list(state["rows"]),
        aug_state=state["aug_state"],
        partial_losses=state["partial_losses"],
        partial_seconds=float(state["partial_seconds"]),
    )
    progress.resumed_from = {"epoch": progress.epoch, "step": progress.step}
    log.info("%s: resuming after epoch %d, step %d", path, progress.epoch, progress.step)
    return progress


def _validate_checkpoint(path: Path, state: Any, run: TrainRun) -> None:
    """ArtifactError naming ``path`` and every field that differs from this run."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ArtifactError(
            f"{path}: expected a kdspectra training checkpoint (format {CHECKPOINT_FORMAT}), "
            f"found format {found!r}; delete it to start over"
        )
    ours = {**run.identity, **dataclasses.asdict(run.cfg)}
    theirs = {**state.get("identity", {}), **state.get("config", {})}
    changed = [k for k, v in ours.items() if k not in _RESUME_NEUTRAL and theirs.get(k) != v]
    inputs = [k for k in changed if k in run.fingerprints]
    settings = [k for k in changed if k not in run.fingerprints]
    if settings:  # another run altogether: name what differs
        diff = [f"{k}: checkpoint has {theirs.get(k)!r}, this run {ours[k]!r}" for k in settings]
        also = f"; its inputs differ too ({', '.join(inputs)})" if inputs else ""
        raise ArtifactError(
            f"{path}: checkpoint belongs to another run ({'; '.join(diff)}){also}; delete it "
            f"to train from scratch or restore the matching settings"
        )
    if inputs:
        raise ArtifactError(
            f"{path}: checkpoint was written for other inputs ({', '.join(inputs)} changed: "
            f"the teacher was re-extracted, its weights changed, or the prepared images "
            f"differ); resuming would finish a student trained partly on the old targets. "
            f"Delete the checkpoint to train from scratch: rm {path}"
        )


# --------------------------------------------------------------------------- one step


def _autocast(run: TrainRun) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA; a no-op on CPU (fp32 keeps CPU resume exact)."""
    return torch.autocast(device_type=run.device.type, dtype=torch.bfloat16, enabled=run.cuda)


def make_views(
    run: TrainRun, idx: torch.Tensor, x: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of every image stacked as 2B rows, and the teacher target of each row.

    Identical for both objectives: one pipeline, two draws. With ``teacher_view: clean``
    both views of image i target the clean embedding; with ``same`` each view replays a
    cached view k (two distinct k per image when K > 1) and targets the teacher's
    embedding of exactly that view.
    """
    cfg = run.cfg
    if run.views is None:
        params = [_draw(cfg, len(idx), gen) for _ in range(2)]
        targets = run.teacher[idx].repeat(2, 1)
    else:
        ks = _cached_view_indices(int(run.teacher.shape[0]), len(idx), gen)
        params = [run.views.take(k, idx) for k in ks]
        targets = torch.cat([run.teacher[k, idx] for k in ks])
    views = [apply_view(x, p, crop_padding=cfg.crop_padding) for p in params]
    return torch.cat(views), targets


def _draw(cfg: TrainConfig, n: int, gen: torch.Generator) -> ViewParams:
    return draw_view_params(
        n,
        gen,
        crop_padding=cfg.crop_padding,
        colour=cfg.colour,
        jitter=cfg.jitter,
        grayscale_p=cfg.grayscale_p,
    )


def _cached_view_indices(k: int, n: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Which cached view each of the two student views replays: distinct when K > 1."""
    first = torch.randint(0, k, (n,), generator=gen, device=gen.device)
    if k == 1:
        return [first, first]
    second = (first + torch.randint(1, k, (n,), generator=gen, device=gen.device)) % k
    return [first, second]


def compute_loss(
    cfg: TrainConfig, s: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, L_cos, InfoNCE) for student rows ``s`` = [view 1; view 2] and targets ``t``.

    L_cos is the mean of both views' cosine losses for either objective; ``cosine_infonce``
    adds λ·InfoNCE and nothing else (the InfoNCE part is reported as 0 for ``cosine``).
    """
    s1, s2 = s.chunk(2)
    t1, t2 = t.chunk(2)
    loss_cos = 0.5 * (cosine_distillation(s1, t1) + cosine_distillation(s2, t2))
    if cfg.objective == "cosine":
        return loss_cos, loss_cos, torch.zeros_like(loss_cos)
    loss_nce = info_nce(s1, s2, cfg.temperature)
    return loss_cos + cfg.infonce_weight * loss_nce, loss_cos, loss_nce


def optimize_step(run: TrainRun, views: torch.Tensor, teacher_rows: torch.Tensor) -> torch.Tensor:
    """Forward, loss, backward, AdamW step, LR step on ready-made views; [loss, cos, nce].

    Split from :func:`train_step` so the benchmark can time the bare model step (the
    ceiling for a given model and machine) apart from data and augmentation.
    """
    views = views.contiguous(memory_format=torch.channels_last)
    with _autocast(run):
        s = run.forward(views)
    loss, loss_cos, loss_nce = compute_loss(run.cfg, s, teacher_rows)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    return torch.stack([loss, loss_cos, loss_nce]).detach()


def train_step(
    run: TrainRun, idx: torch.Tensor, x: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """One full step on a loader batch: augment on the device, then :func:`optimize_step`."""
    return optimize_step(run, *make_views(run, idx, x, gen))


# --------------------------------------------------------------------------- one epoch


def _check_finite(losses: torch.Tensor, start: int, stop: int, epoch: int, steps: int) -> None:
    """Raise :class:`NonFiniteLossError` for the first NaN/inf row in ``losses[start:stop]``."""
    chunk = losses[start:stop].float().cpu()
    bad = (~torch.isfinite(chunk)).any(dim=1).nonzero()
    if len(bad):
        i = int(bad[0])
        loss, loss_cos, loss_nce = chunk[i].tolist()
        raise NonFiniteLossError(
            f"non-finite loss at epoch {epoch + 1}, step {start + i + 1}/{steps}: "
            f"loss={loss}, loss_cos={loss_cos}, loss_infonce={loss_nce}; lower training.lr "
            f"or check the teacher embeddings"
        )


def _check_parameters(run: TrainRun, where: str) -> None:
    """Refuse to write NaN/inf parameters: a poisoned checkpoint would be resumed into."""
    bad = [n for n, p in run.model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteParametersError(
            f"{where}: not written, {len(bad)} parameter tensors hold NaN/inf "
            f"(first: {', '.join(bad[:3])}); lower training.lr or check the teacher embeddings"
        )


def _epoch_generator(run: TrainRun, epoch: int, progress: _Progress) -> torch.Generator:
    """The epoch's augmentation generator, restored mid-epoch when resuming."""
    gen = run.loader.generator(epoch)
    if progress.step and progress.aug_state is not None:
        gen.set_state(progress.aug_state.cpu())
    return gen


def _run_epoch(
    run: TrainRun,
    progress: _Progress,
    flag: _PreemptionFlag,
    callback: StepCallback | None,
    show: bool | None,
) -> None:
    """Train epoch ``progress.epoch`` from step ``progress.step``; append its metrics row.

    NaN checks and progress-bar updates sync with the device, so on CUDA they run every
    ``check_every`` steps (and at the end of the epoch) instead of every step.
    """
    epoch, steps, start = progress.epoch, len(run.loader), progress.step
    losses = torch.zeros(steps, 3, device=run.device)
    if start and progress.partial_losses is not None:
        losses[:start] = progress.partial_losses.to(run.device)
    gen = _epoch_generator(run, epoch, progress)
    check_every = 50 if run.cuda else 1
    bar = tqdm(
        total=steps,
        initial=start,
        desc=f"{run.student}/{run.cfg.objective} epoch {epoch + 1}/{run.cfg.epochs}",
        unit="batch",
        disable=None if show is None else not show,
        leave=False,
    )
    t0, checked = time.perf_counter(), start
    batches = itertools.islice(run.loader.batches(epoch), start, None)
    for step, (idx, x) in enumerate(batches, start=start + 1):
        losses[step - 1] = train_step(run, idx, x, gen)
        if step % check_every == 0 or step == steps or flag.signum is not None:
            _check_finite(losses, checked, step, epoch, steps)
            elapsed = progress.partial_seconds + time.perf_counter() - t0
            bar.update(step - bar.n)
            bar.set_postfix(
                loss=f"{float(losses[step - 1, 0]):.4f}", img_s=_rate(run, step, elapsed)
            )
            checked = step
        if callback is not None:
            callback(epoch + 1, step)
        if flag.signum is not None and step < steps:
            _preempt(run, progress, flag.signum, step, gen, losses, t0)
    bar.close()
    if run.cuda:
        torch.cuda.synchronize(run.device)
    seconds = progress.partial_seconds + time.perf_counter() - t0
    progress.rows.append(_metrics_row(run, epoch, losses, seconds))
    progress.epoch, progress.step = epoch + 1, 0
    progress.aug_state, progress.partial_losses, progress.partial_seconds = None, None, 0.0


def _rate(run: TrainRun, steps: int, seconds: float) -> str:
    return f"{steps * run.cfg.batch_size / max(seconds, 1e-9):.0f}"


def _preempt(
    run: TrainRun,
    progress: _Progress,
    signum: int,
    step: int,
    gen: torch.Generator,
    losses: torch.Tensor,
    t0: float,
) -> None:
    """Checkpoint the mid-epoch state (consistent at this step boundary), then exit."""
    progress.step = step
    progress.aug_state = gen.get_state()
    progress.partial_losses = losses[:step].cpu()
    progress.partial_seconds += time.perf_counter() - t0
    _save_checkpoint(run, progress)
    raise Preempted(signum, run.checkpoint, progress.epoch + 1, step)


def _lr_at(run: TrainRun, global_step: int) -> float:
    """The learning rate the schedule used for ``global_step`` (0-based)."""
    return float(run.scheduler.base_lrs[0] * run.scheduler.lr_lambdas[0](global_step))


def _metrics_row(
    run: TrainRun, epoch: int, losses: torch.Tensor, seconds: float
) -> dict[str, float]:
    """One CSV row: epoch means of each loss part, cosine to teacher, speed, and the LR of
    the epoch's last step. ``cos_to_teacher`` is 1 − L_cos on the augmented training
    views (the clean-test number comes from the evaluation stage)."""
    mean = losses.double().mean(dim=0).cpu().tolist()
    images = len(run.loader) * run.cfg.batch_size
    return {
        "epoch": epoch + 1,
        "loss": mean[0],
        "loss_cos": mean[1],
        "loss_infonce": mean[2],
        "cos_to_teacher": 1.0 - mean[1],
        "lr": _lr_at(run, (epoch + 1) * len(run.loader) - 1),
        "images_per_s": images / max(seconds, 1e-9),
        "seconds": seconds,
    }


# --------------------------------------------------------------------------- outputs


def _save_weights(run: TrainRun, path: Path) -> None:
    """Final weights as safetensors (no pickle), with the build arguments as metadata."""
    _check_parameters(run, f"weights {path}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()}
    meta = {
        "student": run.student,
        "embed_dim": str(run.embed_dim),
        "width_mult": repr(run.cfg.width_mult),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _meta(run: TrainRun, progress: _Progress, weights_out: Path) -> dict[str, Any]:
    """The run's summary: identity, size, budget, speed and final losses."""
    rows = progress.rows
    wall = float(sum(r["seconds"] for r in rows))
    images = len(rows) * len(run.loader) * run.cfg.batch_size
    last = rows[-1]
    return {
        "student": run.student,
        "objective": run.cfg.objective,
        "seed": run.cfg.seed,
        "params": count_parameters(run.model),
        "feature_width": feature_width(run.model),
        "embed_dim": run.embed_dim,
        "teacher_view": run.cfg.teacher_view,
        "teacher_views_k": int(run.teacher.shape[0]) if run.views is not None else 0,
        "inputs": run.fingerprints,
        "width_mult": run.cfg.width_mult,
        "epochs": run.cfg.epochs,
        "steps": len(rows) * len(run.loader),
        "num_images": run.loader.num_images,
        "wall_s": wall,
        "images_per_s": images / max(wall, 1e-9),
        "final_loss": last["loss"],
        "final_loss_cos": last["loss_cos"],
        "final_loss_infonce": last["loss_infonce"],
        "final_cos_to_teacher": last["cos_to_teacher"],
        **device_record(run.device),
        "deterministic": run.cfg.deterministic,
        "torch": torch.__version__,
        "resumed_from": progress.resumed_from,
        "config": dataclasses.asdict(run.cfg),
        "weights": str(weights_out),
    }


# --------------------------------------------------------------------------- public API


def train_student(
    student: str,
    images: np.ndarray,
    teacher_emb: np.ndarray,
    cfg: TrainConfig,
    *,
    device: torch.device,
    weights_out: Path,
    metrics_out: Path,
    meta_out: Path,
    checkpoint: Path,
    callback: StepCallback | None = None,
    progress_bar: bool | None = None,
    teacher_weights: str = "unknown",
) -> dict[str, Any]:
    """Distil ``student`` onto ``teacher_emb`` (row i = embedding of ``images[i]``; a
    K×N×D array of cached-view targets for ``teacher_view: same``).

    Writes safetensors weights, a per-epoch metrics CSV (:data:`METRIC_COLUMNS`) and a
    meta JSON, and returns the meta dict. Resumes from ``checkpoint`` when it exists
    (:class:`ArtifactError` when it belongs to another run) and removes it at the end.
    ``callback(epoch, step)`` (both 1-based) runs after every optimizer step; tests use it
    to inject kills and signals. Raises :class:`Preempted` on SIGTERM/SIGUSR1 and
    :class:`NonFiniteLossError` when the loss stops being finite.
    """
    teacher_emb = np.asarray(teacher_emb)
    _check_inputs(images, teacher_emb, cfg.teacher_view)
    device, checkpoint = torch.device(device), Path(checkpoint)
    run = build_run(
        student, images, teacher_emb, cfg, device, checkpoint, teacher_weights=teacher_weights
    )
    progress = _load_checkpoint(run) if checkpoint.exists() else _Progress()
    run.model.train()
    with _catch_preemption() as flag:
        while progress.epoch < cfg.epochs:
            _run_epoch(run, progress, flag, callback, progress_bar)
            _save_checkpoint(run, progress)
            _log_epoch(run, progress.rows[-1])
            if flag.signum is not None and progress.epoch < cfg.epochs:
                raise Preempted(flag.signum, checkpoint, progress.epoch, len(run.loader))
    return _finish(run, progress, Path(weights_out), Path(metrics_out), Path(meta_out))


def _log_epoch(run: TrainRun, row: Mapping[str, float]) -> None:
    log.info(
        "%s/%s epoch %d/%d: loss %.4f (cos %.4f, infonce %.4f), cos_to_teacher %.4f, "
        "lr %.2e, %.0f img/s, %.1fs",
        run.student,
        run.cfg.objective,
        row["epoch"],
        run.cfg.epochs,
        row["loss"],
        row["loss_cos"],
        row["loss_infonce"],
        row["cos_to_teacher"],
        row["lr"],
        row["images_per_s"],
        row["seconds"],
    )


def _finish(
    run: TrainRun, progress: _Progress, weights_out: Path, metrics_out: Path, meta_out: Path
) -> dict[str, Any]:
    """Write weights, metrics and meta (each atomically), then drop the checkpoint."""
    _save_weights(run, weights_out)
    save_csv(metrics_out, pd.DataFrame(progress.rows, columns=list(METRIC_COLUMNS)))
    meta = _meta(run, progress, weights_out)
    save_json(meta_out, meta)
    run.checkpoint.unlink(missing_ok=True)
    log.info(
        "%s/%s: %d params, %.1fs, %.0f img/s -> %s",
        run.student,
        run.cfg.objective,
        meta["params"],
        meta["wall_s"],
        meta["images_per_s"],
        weights_out,
    )
    return meta


def load_student(
    weights: Path, student: str, embed_dim: int, *, width_mult: float, device: torch.device
) -> nn.Module:
    """Rebuild ``student`` and load safetensors ``weights`` into it (eval mode, on ``device``).

    Every key and shape must match (no silent partial loads); a mismatch raises
    :class:`ArtifactError` naming the file and the first differences.
    """
    path = Path(weights)
    model = build_student(student, embed_dim, width_mult=width_mult)
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ArtifactError(f"{path}: not readable safetensors weights: {exc}") from exc
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        diff = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        detail = ", ".join(
            f"{k}: expected {expected.get(k)}, found {found.get(k)}" for k in diff[:4]
        )
        raise ArtifactError(
            f"{path}: weights do not fit student {student!r} (embed_dim={embed_dim}, "
            f"width_mult={width_mult}): {len(diff)} tensors differ ({detail})"
        )
    model.load_state_dict(tensors)
    return model.to(device).eval()


def _as_nchw(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 or float [0,1] NHWC numpy → float32 [0,1] NCHW on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def embed_images(
    model: nn.Module, images: np.ndarray, *, device: torch.device, batch_size: int = 1024
) -> np.ndarray:
    """Embed images (uint8 NHWC or float32 NHWC in [0, 1]) → float32 N×D, same row order.

    Eval mode, ``inference_mode`` and fp32 measurement (:func:`kdspectra.precision.fp32`:
    autocast and TF32 off): bf16 rounding fills an embedding's null space and inflates its
    effective rank. The model's previous train/eval mode is restored afterwards.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype not in (np.uint8, np.float32):
        raise DataError(
            f"embed_images: expected uint8 or float32 N×H×W×3, found {arr.dtype} {arr.shape}"
        )
    if batch_size < 1:
        raise ConfigError(f"embed_images: batch_size must be >= 1, found {batch_size}")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with torch.inference_mode(), fp32(device):
            for i in tqdm(range(0, len(arr), batch_size), desc="embed", unit="batch", disable=None):
                chunks.append(model(_as_nchw(arr[i : i + batch_size], device)).float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        raise DataError("embed_images: no images to embed (N = 0)")
    return torch.cat(chunks).numpy().astype(np.float32, copy=False)
