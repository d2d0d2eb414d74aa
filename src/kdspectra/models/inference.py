"""Measurement with a trained or frozen encoder: reload a student, embed images in batches.

Training does not use this module; evaluation does. :func:`embed_batches` is the one
batched-embedding loop of the project, shared by students (:func:`embed_images`) and
teachers (:meth:`kdspectra.models.teachers.Teacher.embed`), so both measure under the same
rules: eval mode, ``inference_mode``, fp32 (:func:`kdspectra.runtime.precision.fp32`: autocast
and TF32 off, since bf16 rounding fills an embedding's null space and inflates its
effective rank), row i = image i.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from kdspectra.errors import ArtifactError, ConfigError, DataError
from kdspectra.models.students import build_student
from kdspectra.runtime.precision import fp32
from kdspectra.runtime.progress import Progress

log = logging.getLogger("kdspectra.models.inference")

Encode = Callable[[torch.Tensor], torch.Tensor]


def _device_batches(
    images: np.ndarray, batch_size: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """NHWC batches on ``device``; pinned, non-blocking copies on CUDA overlap the forward."""
    pin = device.type == "cuda"
    for lo in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[lo : lo + batch_size]))
        if pin:
            batch = batch.pin_memory()
        yield batch.to(device, non_blocking=pin)


def embed_batches(
    encode: Encode,
    images: np.ndarray,
    *,
    device: torch.device | str,
    batch_size: int,
    dim: int = 0,
    desc: str = "embed",
    progress: bool | None = None,
) -> np.ndarray:
    """Run ``encode`` over NHWC ``images`` in batches → float32 N×D on the CPU, same order.

    ``encode`` maps one raw NHWC device batch (the input's dtype) to N×D rows; it owns the
    model-specific preprocessing. Runs under ``inference_mode`` and fp32. ``dim`` is the
    width returned for an empty input. Progress (count, rate, ETA) is logged every ~10 s
    whatever ``progress`` says; ``progress`` is about the terminal bar (``None``: only on a
    TTY, so never in a rule's log).
    Raises :class:`ConfigError` for a ``batch_size`` below 1.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"embedding batch_size: expected an integer >= 1, found {batch_size!r}")
    device = torch.device(device)
    rows: list[torch.Tensor] = []
    bar = Progress(len(images), desc=desc, unit="img", logger=log, bar=progress)
    with bar, torch.inference_mode(), fp32(device):
        for batch in _device_batches(images, batch_size, device):
            rows.append(encode(batch).float())
            bar.update(len(batch))
    if not rows:
        return np.empty((0, dim), dtype=np.float32)
    return torch.cat(rows).cpu().numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------- students


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


def _as_nchw(batch: torch.Tensor) -> torch.Tensor:
    """uint8 or float [0,1] NHWC → float32 [0,1] NCHW (channels_last on CUDA)."""
    x = batch.permute(0, 3, 1, 2)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


def embed_images(
    model: nn.Module, images: np.ndarray, *, device: torch.device, batch_size: int = 1024
) -> np.ndarray:
    """Embed images (uint8 NHWC or float32 NHWC in [0, 1]) → float32 N×D, same row order.

    Measured by :func:`embed_batches` (eval mode, fp32). The model's previous train/eval
    mode is restored afterwards.
    """
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype not in (np.uint8, np.float32):
        raise DataError(
            f"embed_images: expected uint8 or float32 N×H×W×3, found {arr.dtype} {arr.shape}"
        )
    if len(arr) == 0:
        raise DataError("embed_images: no images to embed (N = 0)")
    was_training = model.training
    model.eval()
    try:
        return embed_batches(
            lambda x: model(_as_nchw(x)), arr, device=device, batch_size=batch_size
        )
    finally:
        model.train(was_training)
