"""Resume and preemption for :mod:`kdspectra.training.loop`: checkpoints, fingerprints, signals.

* After every epoch the full training state (model, projector head if any, optimizer,
  scheduler, CPU/device RNG, epoch, metric rows) is written atomically with
  ``torch.save`` and read back with ``weights_only=True``. Batch order and augmentation
  draws are pure functions of ``(seed, epoch)``, so a rerun after ``kill -9`` continues
  from the last finished epoch and ends with the same weights as an uninterrupted run.
* SIGTERM / SIGUSR1 (SLURM preemption, ``scancel --signal``) only set a flag
  (:func:`catch_preemption`); at the next step boundary the loop checkpoints the position
  inside the epoch and the augmentation generator's state, then raises :class:`Preempted`.
* A checkpoint records fingerprints of its inputs (:func:`array_digest` of the training
  images and teacher targets, the teacher's weights source) beside the settings; one
  written for other settings or inputs is refused with an error naming what changed.
* A checkpoint carries a digest of its own payload (:func:`payload_digest`), checked on
  load: a bit flipped on disk inside a tensor leaves the zip valid and ``torch.load``
  happy, and resuming would finish the run from corrupted weights without a word.
* The state is serialised in memory and written through :func:`kdspectra.io.atomic_path`,
  so a full disk is reported as such, naming the checkpoint (torch's own writer says
  "inline_container.cc:672 unexpected pos").
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch

from kdspectra.errors import ArtifactError
from kdspectra.io import array_digest as array_digest
from kdspectra.io import atomic_path


class Resumable(Protocol):
    """What a checkpoint saves and restores: the parts of
    :class:`kdspectra.training.run.TrainRun` it touches. A protocol, so this module needs
    no import of the run's construction (which imports this module for ``array_digest``).
    """

    cfg: Any
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    checkpoint: Path
    fingerprints: dict[str, str]
    head: torch.nn.Module | None  # the projector head InfoNCE acts on, when trained

    @property
    def cuda(self) -> bool: ...

    @property
    def identity(self) -> dict[str, Any]: ...


log = logging.getLogger("kdspectra.training.checkpoint")

# 2: the payload carries its digest (format 1 had none and cannot be verified).
CHECKPOINT_FORMAT = 2
DIGEST_KEY = "payload_digest"
PREEMPT_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s
)
# Config fields that do not change the numbers a run produces, so a checkpoint written
# with another value may still be resumed.
RESUME_NEUTRAL = frozenset({"compile"})


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


@dataclasses.dataclass
class Progress:
    """Where a run stands: finished epochs, position in the current one, metric rows."""

    epoch: int = 0  # epochs finished
    step: int = 0  # batches finished within epoch ``epoch`` (0 at an epoch boundary)
    rows: list[dict[str, float]] = dataclasses.field(default_factory=list)
    aug_state: torch.Tensor | None = None  # augmentation generator state at ``step``
    partial_losses: torch.Tensor | None = None  # step×3 losses of the unfinished epoch
    partial_seconds: float = 0.0
    resumed_from: dict[str, int] | None = None


# --------------------------------------------------------------------------- preemption


class PreemptionFlag:
    """Set by the signal handler; read by the loop at step boundaries."""

    signum: int | None = None


@contextlib.contextmanager
def catch_preemption() -> Iterator[PreemptionFlag]:
    """Turn SIGTERM/SIGUSR1 into a flag for the duration of training, then restore.

    Signal handlers can only be installed from the main thread; elsewhere (e.g. a worker
    thread) the default behaviour is kept.
    """
    flag = PreemptionFlag()
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


# --------------------------------------------------------------------------- fingerprints


def payload_digest(state: Any) -> str:
    """BLAKE2b over a checkpoint payload: every tensor's dtype, shape and bytes, every
    number and string, dict keys in sorted order (the digest key itself excluded).

    Computed from the objects, not the file, so it is the same before ``torch.save`` and
    after ``torch.load`` and ignores how the zip container lays the bytes out.
    """
    h = hashlib.blake2b(digest_size=16)
    _feed(h, state)
    return h.hexdigest()


def _feed(h: Any, node: Any) -> None:
    if isinstance(node, torch.Tensor):
        t = node.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(node, dict):
        keys = sorted((k for k in node if k != DIGEST_KEY), key=repr)
        h.update(f"D{len(keys)}".encode())
        for key in keys:
            h.update(f"K{key!r}".encode())
            _feed(h, node[key])
    elif isinstance(node, (list, tuple)):
        h.update(f"L{len(node)}".encode())
        for item in node:
            _feed(h, item)
    else:
        h.update(f"V{type(node).__name__}:{node!r};".encode())


# --------------------------------------------------------------------------- save / load


def save_checkpoint(run: Resumable, progress: Progress) -> None:
    """Write the full training state atomically (only tensors, dicts, lists, numbers)."""
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
    if run.head is not None:  # absent without one: such checkpoints stay as they were
        state["head"] = run.head.state_dict()
    state[DIGEST_KEY] = payload_digest(state)
    with atomic_path(run.checkpoint) as tmp, open(tmp, "wb") as fh:
        buffer = io.BytesIO()  # in memory first: a full disk then fails in write, named
        torch.save(state, buffer)
        fh.write(buffer.getbuffer())


def load_checkpoint(run: Resumable) -> Progress:
    """Restore ``run`` from its checkpoint, after checking it belongs to this run."""
    path = run.checkpoint
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, wrong format
        raise ArtifactError(
            f"{path}: not a readable training checkpoint ({type(exc).__name__}: {exc}); "
            f"delete it to start over"
        ) from exc
    verify_payload(path, state)
    validate_checkpoint(path, state, run)
    try:
        run.model.load_state_dict(state["model"])
        if run.head is not None:
            run.head.load_state_dict(state["head"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{path}: does not fit this run's model/optimizer: {exc}") from exc
    torch.set_rng_state(state["rng_cpu"])
    if run.cuda and state["rng_device"] is not None:
        torch.cuda.set_rng_state(state["rng_device"], run.device)
    progress = Progress(
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


def verify_payload(path: Path, state: Any) -> None:
    """ArtifactError when the loaded payload does not hash to the digest saved with it."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return  # validate_checkpoint names the format
    saved, actual = state.get(DIGEST_KEY), payload_digest(state)
    if saved != actual:
        raise ArtifactError(
            f"{path}: checkpoint content does not match the digest saved with it (saved "
            f"{saved}, content {actual}): its bytes changed after it was written (disk or "
            f"copy corruption, an edit); resuming would continue from damaged weights. "
            f"Delete it to train from scratch: rm {path}"
        )


def validate_checkpoint(path: Path, state: Any, run: Resumable) -> None:
    """ArtifactError naming ``path`` and every field that differs from this run."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ArtifactError(
            f"{path}: expected a kdspectra training checkpoint (format {CHECKPOINT_FORMAT}), "
            f"found format {found!r}; delete it to start over"
        )
    ours = {**run.identity, **dataclasses.asdict(run.cfg)}
    theirs = {**state.get("identity", {}), **state.get("config", {})}
    changed = [k for k, v in ours.items() if k not in RESUME_NEUTRAL and theirs.get(k) != v]
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
