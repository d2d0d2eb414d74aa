"""Distil one student from precomputed teacher embeddings: fast, resumable, preemptible.

Reads top to bottom like airbench: settings (:class:`TrainConfig`) → data on the device
(the whole uint8 split in :class:`kdspectra.data.views.DeviceLoader`, augmented there in one
go), model, optimizer and schedule, built once (:func:`kdspectra.training.run.build_run`) →
the step (two views → forward → loss → backward → AdamW → LR step) → the epoch →
:func:`train_student`, then the outputs (:mod:`kdspectra.training.record`). Checkpoints and
preemption live in :mod:`kdspectra.training.checkpoint`; reloading and embedding with the trained
weights in :mod:`kdspectra.models.inference`.

Objectives (:func:`kdspectra.registry.objective`) form a controlled comparison: both draw
the same two views per image from one augmentation pipeline, push them through the
network as one 2B batch (so BatchNorm sees the same statistics), and average
L_cos = 1 − cos(student(view), teacher target) over both views. An objective with
``infonce`` adds λ·InfoNCE(view 1, view 2) and nothing else; with λ = 0 it trains
bit-identically to ``cosine`` on CPU (a test holds it to ``torch.equal``, for the arm
``cosine_infonce_w0`` of a λ sweep too). With ``projector: mlp`` InfoNCE acts on a SimCLR
head's output (:func:`kdspectra.models.students.build_projector`, in ``TrainRun.head``)
instead of the embedding; L_cos, the tracked geometry and every later measurement stay on
the embedding, and the head is trained state (optimizer, checkpoint) but not saved with
the student.

The teacher target (``TrainConfig.teacher_view``) is the clean image's embedding
(``clean``, the paper's setting) or the teacher's embedding of the very view the student
sees (``same``, "consistent teaching", Beyer et al. 2022): each student view replays one
of K seeded views the teacher embedded at extraction time
(:func:`kdspectra.data.views.cached_view_params`).

Numerics: channels_last on every device; on CUDA, bf16 autocast + fused AdamW (+ optional
``torch.compile``); losses always in fp32 (:mod:`kdspectra.training.losses`). On CPU everything is
fp32, which makes a resumed run bit-for-bit equal to an uninterrupted one.
The checkpoint is deleted once weights, metrics and meta are written: it is bulky and,
being no rule output, would otherwise accumulate for every model.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdspectra import registry
from kdspectra.data.views import ViewParams, apply_view, draw_view_params
from kdspectra.runtime.progress import Progress as StepLog
from kdspectra.training.checkpoint import (
    Preempted,
    PreemptionFlag,
    Progress,
    catch_preemption,
    load_checkpoint,
    save_checkpoint,
)
from kdspectra.training.config import TrainConfig
from kdspectra.training.losses import cosine_distillation, info_nce
from kdspectra.training.record import (
    METRIC_COLUMNS,
    NonFiniteLossError,
    NonFiniteParametersError,
    check_parameters,
    finish,
    log_epoch,
    metrics_row,
)
from kdspectra.training.run import TrainRun, build_run, check_inputs, warmup_cosine
from kdspectra.training.tracking import measure, untracked

log = logging.getLogger(__name__)

# The training API in one import; the other modules hold the parts.
__all__ = [
    "METRIC_COLUMNS", "NonFiniteLossError", "NonFiniteParametersError", "Preempted",
    "TrainConfig", "TrainRun", "build_run", "compute_loss", "make_views", "optimize_step",
    "train_step", "train_student", "warmup_cosine",
]  # fmt: skip

StepCallback = Callable[[int, int], None]


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
    cfg: TrainConfig, s: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, L_cos, InfoNCE) for student rows ``s`` = [view 1; view 2] and targets ``t``.

    L_cos is the mean of both views' cosine losses for every objective; one with
    ``infonce`` adds λ·InfoNCE and nothing else (the InfoNCE part is reported as 0 without).
    InfoNCE compares the rows of ``z`` (the projector head's output) when given, else of
    ``s``.
    """
    s1, s2 = s.chunk(2)
    t1, t2 = t.chunk(2)
    loss_cos = 0.5 * (cosine_distillation(s1, t1) + cosine_distillation(s2, t2))
    if not registry.objective(cfg.objective).infonce:
        return loss_cos, loss_cos, torch.zeros_like(loss_cos)
    z1, z2 = (s if z is None else z).chunk(2)
    loss_nce = info_nce(z1, z2, cfg.temperature)
    return loss_cos + cfg.infonce_weight * loss_nce, loss_cos, loss_nce


def optimize_step(run: TrainRun, views: torch.Tensor, teacher_rows: torch.Tensor) -> torch.Tensor:
    """Forward, loss, backward, AdamW step, LR step on ready-made views; [loss, cos, nce].

    Split from :func:`train_step` so the benchmark can time the bare model step (the
    ceiling for a given model and machine) apart from data and augmentation.
    """
    views = views.contiguous(memory_format=torch.channels_last)
    with _autocast(run):
        s = run.forward(views)
        z = None if run.head is None else run.head(s)
    loss, loss_cos, loss_nce = compute_loss(run.cfg, s, teacher_rows, z)
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


def _epoch_generator(run: TrainRun, epoch: int, progress: Progress) -> torch.Generator:
    """The epoch's augmentation generator, restored mid-epoch when resuming."""
    gen = run.loader.generator(epoch)
    if progress.step and progress.aug_state is not None:
        gen.set_state(progress.aug_state.cpu())
    return gen


def _run_epoch(
    run: TrainRun,
    progress: Progress,
    flag: PreemptionFlag,
    callback: StepCallback | None,
    ticker: StepLog,
) -> None:
    """Train epoch ``progress.epoch`` from step ``progress.step``; append its metrics row.

    NaN checks and ``ticker`` updates (steps, rate, ETA in the log every ~10 s) sync with
    the device, so on CUDA they run every ``check_every`` steps (and at the end of the
    epoch) instead of every step.
    """
    epoch, steps, start = progress.epoch, len(run.loader), progress.step
    losses = torch.zeros(steps, 3, device=run.device)
    if start and progress.partial_losses is not None:
        losses[:start] = progress.partial_losses.to(run.device)
    gen = _epoch_generator(run, epoch, progress)
    check_every = 50 if run.cuda else 1
    t0, checked = time.perf_counter(), start
    batches = itertools.islice(run.loader.batches(epoch), start, None)
    for step, (idx, x) in enumerate(batches, start=start + 1):
        losses[step - 1] = train_step(run, idx, x, gen)
        if step % check_every == 0 or step == steps or flag.signum is not None:
            _check_finite(losses, checked, step, epoch, steps)
            ticker.update(step - checked)
            checked = step
        if callback is not None:
            callback(epoch + 1, step)
        if flag.signum is not None and step < steps:
            _preempt(run, progress, flag.signum, step, gen, losses, t0)
    if run.cuda:
        torch.cuda.synchronize(run.device)
    seconds = progress.partial_seconds + time.perf_counter() - t0
    progress.rows.append(metrics_row(run, epoch, losses, seconds) | _track(run, epoch + 1))
    progress.epoch, progress.step = epoch + 1, 0
    progress.aug_state, progress.partial_losses, progress.partial_seconds = None, None, 0.0


def _track(run: TrainRun, epoch: int) -> dict[str, float]:
    """The tracked geometry after 1-based ``epoch`` (all NaN when it is not tracked).

    Measured after the epoch's timing, so ``seconds``/``images_per_s`` stay training only.
    Touches no RNG and leaves BatchNorm statistics alone (eval mode), so the weights are
    the same with tracking on or off; runs before the checkpoint, so a resumed run's rows
    are the uninterrupted run's.
    """
    last = epoch == run.cfg.epochs
    if run.track is None or not (epoch % run.track_every == 0 or last):
        return untracked()
    return measure(run.model, run.track, run.device)


def _preempt(
    run: TrainRun,
    progress: Progress,
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
    _checkpoint(run, progress)
    raise Preempted(signum, run.checkpoint, progress.epoch + 1, step)


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
    track_teacher: np.ndarray | None = None,
) -> dict[str, Any]:
    """Distil ``student`` onto ``teacher_emb`` (row i = embedding of ``images[i]``; a
    K×N×D array of cached-view targets for ``teacher_view: same``).

    Writes safetensors weights, a per-epoch metrics CSV (:data:`METRIC_COLUMNS`) and a
    meta JSON, and returns the meta dict. Resumes from ``checkpoint`` when it exists
    (:class:`ArtifactError` when it belongs to another run) and removes it at the end.
    ``callback(epoch, step)`` (both 1-based) runs after every optimizer step; tests use it
    to inject kills and signals. Raises :class:`Preempted` on SIGTERM/SIGUSR1 and
    :class:`NonFiniteLossError` when the loss stops being finite. ``track_teacher``: the
    teacher's clean N×D train embeddings for the tracked geometry (:func:`build_run`).
    """
    teacher_emb = np.asarray(teacher_emb)
    check_inputs(images, teacher_emb, cfg.teacher_view, track_teacher)
    device, checkpoint = torch.device(device), Path(checkpoint)
    run = build_run(
        student, images, teacher_emb, cfg, device, checkpoint,
        teacher_weights=teacher_weights, track_teacher=track_teacher,
    )  # fmt: skip
    progress = load_checkpoint(run) if checkpoint.exists() else Progress()
    run.model.train()
    if run.head is not None:
        run.head.train()
    steps = len(run.loader)
    ticker = StepLog(
        cfg.epochs * steps, desc=f"{student}/{cfg.arm_name}", unit="step", logger=log,
        bar=progress_bar, initial=progress.epoch * steps + progress.step,
    )  # fmt: skip
    with catch_preemption() as flag, ticker:
        while progress.epoch < cfg.epochs:
            _run_epoch(run, progress, flag, callback, ticker)
            _checkpoint(run, progress)
            log_epoch(run, progress.rows[-1])
            if flag.signum is not None and progress.epoch < cfg.epochs:
                raise Preempted(flag.signum, checkpoint, progress.epoch, len(run.loader))
    return finish(run, progress, Path(weights_out), Path(metrics_out), Path(meta_out))


def _checkpoint(run: TrainRun, progress: Progress) -> None:
    """Save the training state, never with NaN/inf parameters (they would be resumed into)."""
    check_parameters(run, f"checkpoint {run.checkpoint}")
    save_checkpoint(run, progress)
