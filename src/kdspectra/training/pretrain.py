"""Pretrain a teacher here (``teachers.<name>.pretrain``): the offline CLIP and DINOv2 analogues.

The paper's teachers cannot be downloaded offline, and at random init they are degenerate
(a constant map, a narrow cone), so the demo trains its own, on the train split only:

* ``objective: clip``: CLIP's recipe in miniature. One augmented view per image, the
  image tower's projected embedding against a tiny text tower over the class-name
  captions (:mod:`kdspectra.models.towers`), CLIP's symmetric InfoNCE with a learned
  temperature, deduplicated over the batch's captions
  (:func:`kdspectra.training.pretrain_losses.clip_loss`).
* ``objective: ssl``: no labels. Two augmented views per image, SimCLR's NT-Xent on an
  MLP head, plus DINOv2's KoLeo regulariser on the backbone output (the teacher
  embedding).

Both use the same image tower and the same augmentation pipeline
(:mod:`kdspectra.data.views`: reflect-padded crops, colour jitter; no flips, which would
turn some digits into others), so the pair differs only in the objective. Training
follows the students' contract (:mod:`kdspectra.training.loop`): batch order and
augmentations are pure functions of ``(seed, epoch)``; the full state is checkpointed
after every epoch through :mod:`kdspectra.training.checkpoint` and on SIGTERM/SIGUSR1 at
the next step, so a resumed run ends with the same weights as an uninterrupted one
(fp32 on the CPU); the weights and meta JSON are written atomically at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from kdspectra.data.views import DeviceLoader, apply_view, draw_view_params
from kdspectra.errors import DataError
from kdspectra.io import atomic_path, save_json
from kdspectra.models.towers import ImageTower, TextTower, TowerArch, arch_metadata, seeded
from kdspectra.runtime.device import device_record, set_deterministic
from kdspectra.runtime.progress import Progress as StepLog
from kdspectra.training.checkpoint import (
    Preempted,
    PreemptionFlag,
    Progress,
    array_digest,
    catch_preemption,
    load_checkpoint,
    save_checkpoint,
)
from kdspectra.training.pretrain_losses import MAX_LOGIT_SCALE, clip_loss, koleo, nt_xent
from kdspectra.training.record import NonFiniteLossError, check_parameters
from kdspectra.training.run import warmup_cosine

log = logging.getLogger("kdspectra.training.pretrain")
StepCallback = Callable[[int, int], None]
# DINOv2 reads its KoLeo term on the [CLS] of the student's global crops; SimCLR's head is
# a 2-layer MLP (hidden width 2x the backbone's here, the paper's 1x-4x range).
SSL_HEAD_HIDDEN = 2


@dataclass(frozen=True)
class PretrainConfig:
    """The optimisation keys of a ``pretrain`` spec (the shape keys are :class:`TowerArch`)."""

    objective: str
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    temperature: float
    koleo_weight: float
    seed: int
    crop_padding: int
    jitter: float
    caption_template: str
    deterministic: bool = False

    @classmethod
    def from_spec(cls, pretrain: Mapping[str, Any]) -> PretrainConfig:
        """The config of a validated ``pretrain`` entry (schema defaults filled)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in pretrain.items() if k in names})

    @property
    def views(self) -> int:
        """Augmented views per image and step: CLIP sees one, SimCLR two."""
        return 1 if self.objective == "clip" else 2


class PretrainNet(nn.Module):
    """What is optimised: the image tower (the teacher) and the objective's other parts."""

    def __init__(self, arch: TowerArch, cfg: PretrainConfig, classes: Sequence[str]) -> None:
        super().__init__()
        self.image = ImageTower(arch)
        if cfg.objective == "clip":
            captions = [cfg.caption_template.format(c) for c in classes]
            self.text = TextTower(arch, captions)
            self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1.0 / cfg.temperature))))
        else:
            hidden = SSL_HEAD_HIDDEN * arch.embed_dim
            self.head = nn.Sequential(
                nn.Linear(arch.embed_dim, hidden), nn.GELU(), nn.Linear(hidden, arch.proj_dim)
            )


@dataclass
class PretrainRun:
    """Everything a step needs; satisfies :class:`kdspectra.training.checkpoint.Resumable`."""

    cfg: PretrainConfig
    arch: TowerArch
    device: torch.device
    model: PretrainNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loader: DeviceLoader
    labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    checkpoint: Path
    fingerprints: dict[str, str]
    # Resumable's projector head: a student's, for InfoNCE; pretraining has none (CLIP's
    # projection is part of the model), so its checkpoints keep their old layout.
    head: None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def identity(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed by this run."""
        return {**dataclasses.asdict(self.arch), "num_images": self.loader.num_images,
                **self.fingerprints}  # fmt: skip


def normalisation(arch: TowerArch) -> dict[str, Any]:
    """The input normalisation: the timm model's own data config (mean/std), size as built.

    Training normalises with it and the loader (:mod:`kdspectra.models.teacher_libraries`)
    reads it back from the weights' metadata, so extraction sees what training saw.
    """
    from timm.data import resolve_model_data_config

    from kdspectra.models.towers import build_backbone

    with seeded(0):
        cfg = resolve_model_data_config(build_backbone(arch))
    return {
        "size": arch.image_size,
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
    }


def check_images(images: np.ndarray, labels: np.ndarray, arch: TowerArch) -> None:
    """The prepared train split at the tower's input size, one label per image."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"pretraining images: expected uint8 N×H×W×3, found {images.dtype} "
                        f"{images.shape}")  # fmt: skip
    if images.shape[1:3] != (arch.image_size, arch.image_size):
        raise DataError(
            f"pretraining images: expected {arch.image_size}×{arch.image_size} pixels (the "
            f"teacher's image_size), found {images.shape[1]}×{images.shape[2]}"
        )
    if labels.shape != (len(images),):
        raise DataError(f"pretraining labels: expected {len(images)}, found {labels.shape}")


def build_pretrain_run(
    arch: TowerArch,
    cfg: PretrainConfig,
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    device: torch.device,
    checkpoint: Path,
) -> PretrainRun:
    """Seeded towers, the split on the device, AdamW with warmup + cosine per step."""
    check_images(images, labels, arch)
    set_deterministic(cfg.deterministic)
    with seeded(cfg.seed):
        model = PretrainNet(arch, cfg, classes).to(device)
    loader = DeviceLoader(images, batch_size=cfg.batch_size, device=device, seed=cfg.seed)
    optimizer = torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.lr)
    total = cfg.epochs * len(loader)
    warmup = min(total, round(cfg.warmup_epochs * len(loader)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, warmup))
    norm = normalisation(arch)
    fingerprints = {"images_digest": array_digest(images)}
    if cfg.objective == "clip":  # the labels and captions are inputs only of the CLIP analogue
        fingerprints |= {"labels_digest": array_digest(labels), "classes": "|".join(classes)}
    return PretrainRun(
        cfg, arch, device, model, optimizer, scheduler, loader,
        torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device),
        torch.tensor(norm["mean"], device=device).view(1, 3, 1, 1),
        torch.tensor(norm["std"], device=device).view(1, 3, 1, 1),
        checkpoint, fingerprints,
    )  # fmt: skip


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay weight matrices and kernels; not biases, norms, positions, tokens, temperature.

    timm's ViTs exempt ``pos_embed`` and ``cls_token`` (their ``no_weight_decay``), CLIP its
    logit scale and embeddings; a decayed temperature would drift back to 1.
    """
    exempt = ("pos", "token", "cls", "logit_scale")
    decay, rest = [], []
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 2)[-2:]
        plain = p.ndim >= 2 and not any(e in part for part in leaf for e in exempt)
        (decay if plain else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


# --------------------------------------------------------------------------- one step


def make_views(run: PretrainRun, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``cfg.views`` augmented, normalised views of a uint8 batch, stacked (V·B rows)."""
    cfg = run.cfg
    views = []
    for _ in range(cfg.views):
        params = draw_view_params(
            len(x), gen, crop_padding=cfg.crop_padding, flip=False,
            colour=cfg.jitter > 0, jitter=cfg.jitter, grayscale_p=0.0,
        )  # fmt: skip
        views.append(apply_view(x, params, crop_padding=cfg.crop_padding))
    return ((torch.cat(views) - run.mean) / run.std).contiguous()


def objective_loss(run: PretrainRun, views: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The objective on one batch of views: CLIP's InfoNCE, or NT-Xent + λ·KoLeo."""
    model = run.model
    if run.cfg.objective == "clip":
        return clip_loss(model.image(views), model.text(), run.labels[idx], model.logit_scale)
    feats = model.image.features(views)
    z1, z2 = model.head(feats).chunk(2)
    f1, f2 = feats.chunk(2)
    spread = 0.5 * (koleo(f1) + koleo(f2))
    return nt_xent(z1, z2, run.cfg.temperature) + run.cfg.koleo_weight * spread


def train_step(
    run: PretrainRun, idx: torch.Tensor, x: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Augment, forward, loss, backward, AdamW and LR step; the detached loss."""
    loss = objective_loss(run, make_views(run, x, gen), idx)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    return loss.detach()


# --------------------------------------------------------------------------- the loop


def _run_epoch(
    run: PretrainRun,
    progress: Progress,
    flag: PreemptionFlag,
    callback: StepCallback | None,
    ticker: StepLog,
) -> None:
    """Train epoch ``progress.epoch`` from ``progress.step``; append its row.

    ``ticker`` logs steps done, rate and ETA over the whole run every ~10 s.
    """
    epoch, steps, start = progress.epoch, len(run.loader), progress.step
    losses = torch.zeros(steps, 1)
    if start and progress.partial_losses is not None:
        losses[:start] = progress.partial_losses
    gen = run.loader.generator(epoch)
    if start and progress.aug_state is not None:
        gen.set_state(progress.aug_state.cpu())
    t0 = time.perf_counter()
    for step, (idx, x) in enumerate(run.loader.batches(epoch), start=1):
        if step <= start:
            continue
        losses[step - 1] = train_step(run, idx, x, gen).cpu()
        ticker.update()
        if not torch.isfinite(losses[step - 1]).all():
            raise NonFiniteLossError(
                f"pretraining loss became {float(losses[step - 1])} at epoch {epoch + 1}, "
                f"step {step}/{steps}; lower the teacher's pretrain.lr"
            )
        if callback is not None:
            callback(epoch + 1, step)
        if flag.signum is not None and step < steps:
            progress.step, progress.aug_state = step, gen.get_state()
            progress.partial_losses = losses[:step].clone()
            progress.partial_seconds += time.perf_counter() - t0
            _checkpoint(run, progress)
            raise Preempted(flag.signum, run.checkpoint, epoch + 1, step)
    seconds = progress.partial_seconds + time.perf_counter() - t0
    progress.rows.append(_row(run, epoch, losses, seconds))
    progress.epoch, progress.step = epoch + 1, 0
    progress.aug_state, progress.partial_losses, progress.partial_seconds = None, None, 0.0


def _row(run: PretrainRun, epoch: int, losses: torch.Tensor, seconds: float) -> dict[str, float]:
    row = {"epoch": epoch + 1, "loss": float(losses.double().mean()), "seconds": seconds}
    if run.cfg.objective == "clip":
        scale = run.model.logit_scale.detach().exp().clamp(max=MAX_LOGIT_SCALE)
        row["temperature"] = float(1.0 / scale)
    log.info("pretrain epoch %d/%d: %s", epoch + 1, run.cfg.epochs, row)
    return row


def _checkpoint(run: PretrainRun, progress: Progress) -> None:
    check_parameters(run, f"checkpoint {run.checkpoint}")  # type: ignore[arg-type]
    save_checkpoint(run, progress)


def pretrain(
    arch: TowerArch,
    cfg: PretrainConfig,
    images: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    device: torch.device,
    weights_out: Path,
    meta_out: Path,
    checkpoint: Path,
    callback: StepCallback | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Pretrain the image tower on ``images`` (the train split) and write its weights.

    Resumes from ``checkpoint`` when it exists (refused, naming what differs, when it was
    written for other settings or images) and deletes it at the end. Raises
    :class:`~kdspectra.training.checkpoint.Preempted` on SIGTERM/SIGUSR1 after saving.
    ``callback(epoch, step)`` (1-based) runs after every step (tests inject signals).
    ``provenance`` (the config entry, data paths) joins the meta JSON.
    """
    device, checkpoint = torch.device(device), Path(checkpoint)
    run = build_pretrain_run(arch, cfg, images, labels, classes, device, checkpoint)
    progress = load_checkpoint(run) if checkpoint.exists() else Progress()  # type: ignore[arg-type]
    run.model.train()
    steps = len(run.loader)
    ticker = StepLog(
        cfg.epochs * steps, desc=f"pretrain {cfg.objective}", unit="step", logger=log,
        initial=progress.epoch * steps + progress.step,
    )  # fmt: skip
    with catch_preemption() as flag, ticker:
        while progress.epoch < cfg.epochs:
            _run_epoch(run, progress, flag, callback, ticker)
            _checkpoint(run, progress)
            if flag.signum is not None and progress.epoch < cfg.epochs:
                raise Preempted(flag.signum, checkpoint, progress.epoch, len(run.loader))
    meta = _meta(run, progress, provenance or {})
    _save_weights(run, Path(weights_out))
    save_json(meta_out, meta)
    checkpoint.unlink(missing_ok=True)
    return meta


def _save_weights(run: PretrainRun, path: Path) -> None:
    """The image tower alone (the teacher), with its shape and normalisation as metadata."""
    check_parameters(run, f"weights {path}")  # type: ignore[arg-type]
    state = run.model.image.state_dict()
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = arch_metadata(run.arch, normalisation(run.arch))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def _meta(run: PretrainRun, progress: Progress, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """How the teacher was made: settings, inputs, time, losses, library versions."""
    import open_clip
    import timm

    rows = progress.rows
    return {
        "objective": run.cfg.objective,
        "arch": dataclasses.asdict(run.arch),
        "config": dataclasses.asdict(run.cfg),
        "preprocess": normalisation(run.arch),
        "inputs": run.fingerprints,
        "num_images": run.loader.num_images,
        "steps": len(rows) * len(run.loader),
        "params": sum(p.numel() for p in run.model.image.parameters()),
        "seconds": float(sum(r["seconds"] for r in rows)),
        "final_loss": rows[-1]["loss"] if rows else float("nan"),
        "epochs": rows,
        "resumed_from": progress.resumed_from,
        "versions": {"torch": torch.__version__, "timm": timm.__version__,
                     "open_clip": open_clip.__version__, "numpy": np.__version__},
        **device_record(run.device),
        **dict(provenance),
    }  # fmt: skip
