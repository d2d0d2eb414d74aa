"""What a training run leaves behind: metric rows, final weights, the meta JSON, the log.

Split from :mod:`kdspectra.training.loop` so the loop there reads as the algorithm; everything
here is written once per epoch or once per run, atomically (:mod:`kdspectra.io`), and
never with NaN/inf parameters.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from safetensors.torch import save_file

from kdspectra.errors import KdspectraError
from kdspectra.io import atomic_path, save_csv, save_json
from kdspectra.models.students import count_parameters, feature_width
from kdspectra.runtime.device import device_record
from kdspectra.training.checkpoint import Progress
from kdspectra.training.tracking import TRACK_COLUMNS, TRACK_SEED, tracked_epochs

if TYPE_CHECKING:
    from kdspectra.training.run import TrainRun

log = logging.getLogger("kdspectra.training.loop")

METRIC_COLUMNS = (
    "epoch",
    "loss",
    "loss_cos",
    "loss_infonce",
    "cos_to_teacher",
    "lr",
    "images_per_s",
    "seconds",
    # geometry of the tracked train subset (kdspectra.training.tracking); NaN on untracked epochs
    *TRACK_COLUMNS,
)


class NonFiniteLossError(KdspectraError, FloatingPointError):
    """The loss became NaN/inf; the message names epoch, step and every loss part."""


class NonFiniteParametersError(KdspectraError, FloatingPointError):
    """A parameter became NaN/inf; raised before it could reach a checkpoint or weights."""


def check_parameters(run: TrainRun, where: str) -> None:
    """Refuse to write NaN/inf parameters: a poisoned checkpoint would be resumed into.

    ``run`` is a student's :class:`TrainRun` or a teacher's pretraining run; only the
    former carries a projector ``head`` (the other's is None); its parameters count too."""
    params = list(run.model.named_parameters())
    if run.head is not None:
        params += [(f"projector.{n}", p) for n, p in run.head.named_parameters()]
    bad = [n for n, p in params if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteParametersError(
            f"{where}: not written, {len(bad)} parameter tensors hold NaN/inf "
            f"(first: {', '.join(bad[:3])}); lower training.lr or check the teacher embeddings"
        )


def _lr_at(run: TrainRun, global_step: int) -> float:
    """The learning rate the schedule used for ``global_step`` (0-based)."""
    return float(run.scheduler.base_lrs[0] * run.scheduler.lr_lambdas[0](global_step))


def metrics_row(
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


def log_epoch(run: TrainRun, row: Mapping[str, float]) -> None:
    log.info(
        "%s/%s epoch %d/%d: loss %.4f (cos %.4f, infonce %.4f), cos_to_teacher %.4f, "
        "lr %.2e, %.0f img/s, %.1fs",
        run.student,
        run.cfg.arm_name,
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


def finish(
    run: TrainRun, progress: Progress, weights_out: Path, metrics_out: Path, meta_out: Path
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
        run.cfg.arm_name,
        meta["params"],
        meta["wall_s"],
        meta["images_per_s"],
        weights_out,
    )
    return meta


def _save_weights(run: TrainRun, path: Path) -> None:
    """Final weights as safetensors (no pickle), with the build arguments as metadata.

    The student only: a projector head is training machinery, not part of the embedding
    that is measured, so it is left out (the metadata says one was trained)."""
    check_parameters(run, f"weights {path}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in run.model.state_dict().items()}
    meta = {
        "student": run.student,
        "embed_dim": str(run.embed_dim),
        "width_mult": repr(run.cfg.width_mult),
    }
    if run.head is not None:  # absent without a head: those files stay byte-identical
        meta["projector"] = f"{run.cfg.projector} (trained for InfoNCE, not saved)"
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _meta(run: TrainRun, progress: Progress, weights_out: Path) -> dict[str, Any]:
    """The run's summary: identity, size, budget, speed and final losses."""
    rows = progress.rows
    wall = float(sum(r["seconds"] for r in rows))
    images = len(rows) * len(run.loader) * run.cfg.batch_size
    last = rows[-1]
    return {
        "student": run.student,
        "objective": run.cfg.arm_name,
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
        "tracking": _tracking(run),
        "projector": _projector(run),
        "config": dataclasses.asdict(run.cfg),
        "weights": str(weights_out),
    }


def _projector(run: TrainRun) -> dict[str, Any]:
    """Whether a projector head was trained (InfoNCE on its output), its shape and size;
    it is never in the saved weights, so every measurement is of the embedding."""
    if run.head is None:
        return {"kind": "none"}
    return {
        "kind": run.cfg.projector,
        "width": run.embed_dim,
        "params": count_parameters(run.head),
        "saved": False,
    }


def _tracking(run: TrainRun) -> dict[str, Any] | None:
    """How the geometry was tracked (None when off) and the teacher's ER on those rows."""
    if run.track is None:
        return None
    return {
        "every": run.track_every,
        "epochs": tracked_epochs(run.track_every, run.cfg.epochs),
        "samples": len(run.track.indices),
        "seed": TRACK_SEED,
        **run.track.reference(),
    }
