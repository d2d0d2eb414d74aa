"""CLIP (open_clip) and DINOv2 (timm) teachers with fast, library-faithful batched embedding.

The paper's numbers are effective ranks of teacher and student embeddings, so a teacher must
produce *exactly* the embedding the library's own pipeline would (PIL resize, centre crop,
normalise, forward), only faster: images travel to the device as uint8, and resizing,
cropping and normalisation run there on whole batches. Everything that defines the
preprocessing (input size, mean/std, interpolation, crop) is read from the library's own
config for the model as built, never copied as constants, so a different checkpoint brings
its own preprocessing with it.

The per-library loaders (open_clip, timm: weights resolution, building, the library's
preprocessing config) live in :mod:`kdspectra.models.teacher_libraries`; this module holds what
every teacher shares: the preprocessing on the device and the embedding loop. The typed spec
and the preprocessing-as-data live in :mod:`kdspectra.models.teacher_spec`, which both import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdspectra.errors import ConfigError, DataError
from kdspectra.models.teacher_libraries import LOADERS, build_pretrained_here
from kdspectra.models.teacher_spec import INTERPOLATION, Preprocess, TeacherSpec, parse_spec
from kdspectra.runtime.precision import fp32

logger = logging.getLogger(__name__)


def _resized_hw(h: int, w: int, prep: Preprocess) -> tuple[int, int]:
    """Output size of torchvision's ``Resize(scale_size)`` (shorter side) or squash resize."""
    if prep.crop == "squash" or h == w:
        return prep.scale_size, prep.scale_size
    if h < w:
        return prep.scale_size, int(prep.scale_size * w / h)
    return int(prep.scale_size * h / w), prep.scale_size


def preprocess_batch(x: torch.Tensor, prep: Preprocess) -> torch.Tensor:
    """uint8 or float [0, 1] NHWC batch (on the device) → normalised float32 NCHW.

    Mirrors ``Resize → CenterCrop → ToTensor → Normalize`` on PIL images: PIL clips the
    resized image to [0, 255], so we clamp to [0, 1]; we skip PIL's rounding to uint8
    (≤ 0.5/255 per pixel), which is why the match is close rather than bit-exact.
    """
    x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    h, w = x.shape[-2:]
    rh, rw = _resized_hw(h, w, prep)
    if (rh, rw) != (h, w):
        mode = INTERPOLATION[prep.interpolation]
        x = F.interpolate(x, size=(rh, rw), mode=mode, antialias=mode != "nearest-exact")
        x = x.clamp_(0.0, 1.0)
    if (rh, rw) != (prep.size, prep.size):
        top = round((rh - prep.size) / 2.0)  # torchvision center_crop (half-to-even)
        left = round((rw - prep.size) / 2.0)
        x = x[..., top : top + prep.size, left : left + prep.size]
    mean = torch.tensor(prep.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, device=x.device).view(1, 3, 1, 1)
    # The NHWC→NCHW permute leaves a channels_last layout, which makes CPU convolutions of
    # the patch embedding ~10x slower; hand the model a plain contiguous batch.
    return ((x - mean) / std).contiguous()


def _check_images(images: np.ndarray) -> np.ndarray:
    """Fail early on anything but uint8 or float [0, 1] NHWC RGB (the module-boundary format)."""
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3:
        found = getattr(images, "shape", type(images).__name__)
        raise DataError(f"teacher input: expected an N×H×W×3 RGB array, found {found}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(
            f"teacher input: expected uint8 or float [0, 1] pixels, found {images.dtype}"
        )
    if images.size:
        lo, hi = float(images.min()), float(images.max())
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise DataError(
                f"teacher input: float pixels must lie in [0, 1], found range [{lo}, {hi}]"
            )
    return images.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- the teacher


class Teacher:
    """A frozen image encoder plus the preprocessing it was trained with.

    ``model`` maps a normalised float NCHW batch at ``image_size`` to N×``dim`` embeddings
    (open_clip: the visual tower; timm: the headless model).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        spec: TeacherSpec,
        preprocess: Preprocess,
        weights_source: str,
        device: torch.device,
    ) -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        self.spec = spec
        self.preprocess = preprocess
        self.weights_source = weights_source
        self.device = torch.device(device)
        self.image_size = preprocess.size
        self.last_images_per_s = float("nan")
        self.dim = self._probe_dim()

    def _probe_dim(self) -> int:
        """Run one blank image: proves the model runs at ``image_size`` and gives the width."""
        x = torch.zeros(1, 3, self.image_size, self.image_size, device=self.device)
        with torch.inference_mode():
            out = self.encode_preprocessed(x)
        if out.ndim != 2:
            raise ConfigError(
                f"config key '{self.spec.key('model')}': expected {self.spec.model} to return "
                f"N×D embeddings, found shape {tuple(out.shape)}"
            )
        return int(out.shape[1])

    def encode_preprocessed(self, x: torch.Tensor) -> torch.Tensor:
        """Forward a normalised NCHW batch; float32 N×D (call under ``inference_mode``).

        fp32 with autocast and TF32 off on every device (:mod:`kdspectra.runtime.precision`): these
        rows are measured, and bf16 rounding would fill their null space.
        """
        with fp32(self.device):
            return self.model(x.float()).float()

    def embed(
        self, images: np.ndarray, *, batch_size: int = 256, progress: bool | None = None
    ) -> np.ndarray:
        """Embed uint8 (0..255) or float [0, 1] NHWC RGB images → float32 N×D, row i = image i.

        The shared measurement loop (:func:`kdspectra.models.inference.embed_batches`: fp32,
        ``inference_mode``; :class:`ConfigError` for a batch_size below 1).
        ``progress=None`` shows a bar only on a TTY. Throughput is logged and kept in
        ``last_images_per_s``.
        """
        from kdspectra.models.inference import embed_batches

        images = _check_images(images)
        n = len(images)
        start = time.perf_counter()
        result = embed_batches(
            lambda batch: self.encode_preprocessed(preprocess_batch(batch, self.preprocess)),
            images,
            device=self.device,
            batch_size=batch_size,
            dim=self.dim,
            desc=f"embed {self.spec.name}",
            progress=progress,
        )
        elapsed = time.perf_counter() - start
        self.last_images_per_s = n / elapsed if elapsed > 0 else float("inf")
        logger.info(
            "%s: embedded %d images in %.1f s (%.0f images/s, %s, batch %d)",
            self.spec.name, n, elapsed, self.last_images_per_s, self.device, batch_size,
        )  # fmt: skip
        return result

    def describe(self) -> dict[str, Any]:
        """What made these embeddings, for the extraction JSON and provenance footers."""
        return {
            "library": self.spec.library,
            "model": self.spec.model,
            "weights_source": self.weights_source,
            "image_size": self.image_size,
            "dim": self.dim,
            "params": sum(p.numel() for p in self.model.parameters()),
            "mean": list(self.preprocess.mean),
            "std": list(self.preprocess.std),
            "interpolation": self.preprocess.interpolation,
            "resize": self.preprocess.scale_size,
        }


# --------------------------------------------------------------------------- building


def build_teacher(
    spec: Mapping[str, Any],
    *,
    device: torch.device | str = "cpu",
    weights: str | Path | None = None,
) -> Teacher:
    """Build the teacher a ``teachers.<name>`` config entry describes, ready to ``embed``.

    Models are created on the CPU (so a random init is the same on every machine) and then
    moved to ``device``. A teacher with ``pretrain`` is trained by this pipeline: pass the
    ``weights`` rule pretrain_teacher wrote; other teachers take none.
    """

    parsed = parse_spec(spec)
    if parsed.pretrain is not None and not weights:
        raise ConfigError(
            f"config key '{parsed.key('pretrain')}': teacher {parsed.name} is trained by rule "
            "pretrain_teacher; expected the weights file it wrote, found none"
        )
    if parsed.pretrain is None and weights:
        raise ConfigError(
            f"teacher {parsed.name}: a weights file ({weights}) is only for teachers with "
            f"'{parsed.key('pretrain')}'; set '{parsed.key('pretrained')}' to load a file"
        )
    if parsed.pretrain is not None:
        model, preprocess, source = build_pretrained_here(parsed, Path(str(weights)))
    else:
        model, preprocess, source = LOADERS[parsed.library](parsed)
    _check_patch_multiple(model, preprocess.size, parsed)
    teacher = Teacher(
        model=model,
        spec=parsed,
        preprocess=preprocess,
        weights_source=source,
        device=torch.device(device),
    )
    logger.info("teacher %s: %s", parsed.name, teacher.describe())
    return teacher


def _check_patch_multiple(model: nn.Module, size: int, spec: TeacherSpec) -> None:
    """A ViT silently drops the pixels beyond the last whole patch; refuse such sizes."""
    patch = getattr(model, "patch_size", None) or getattr(
        getattr(model, "patch_embed", None), "patch_size", None
    )
    if patch is None:
        return
    p = patch[0] if isinstance(patch, tuple | list) else int(patch)
    if size % p:
        raise ConfigError(
            f"config key '{spec.key('image_size')}': expected a multiple of the patch size {p} "
            f"of {spec.model}, found {size}"
        )
