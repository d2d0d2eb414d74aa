"""Geometry tracked during training: *when* does a student collapse?

The evaluation stage measures a student once, after training. To see when its effective
rank falls (or never rises), the training loop measures a fixed, seeded subset of the
TRAIN images every ``training.track_every`` epochs and at the final epoch: the raw and
L2-row effective rank, RankMe, uniformity and the mean cosine to the teacher's clean
embeddings of the same rows (:mod:`kdspectra.metrics.geometry`, float64). There is no point at
epoch 0: a metrics row is one finished epoch, and the random-init geometry says little
about distillation.

Why this cannot change training: the embedding pass runs in eval mode (BatchNorm's
running statistics are not updated), under ``inference_mode`` and fp32
(:func:`kdspectra.models.inference.embed_images`), draws no random numbers (the subset comes
from its own NumPy generator, seeded with :data:`TRACK_SEED`, not from torch's streams),
and restores train mode. A test holds tracked and untracked runs to ``torch.equal``.

The subset is the same for every student, objective and seed of a dataset (it depends
only on N, ``track_samples`` and :data:`TRACK_SEED`), so seeds average over training
randomness only and the teacher's reference rank is measured on exactly these rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from kdspectra.errors import ConfigError
from kdspectra.metrics import geometry
from kdspectra.models.inference import embed_images

# The seed of the tracked subset's draw: one subset per dataset, whatever the run's seed.
TRACK_SEED = 0
# Epochs a paper run records when ``track_every`` is null: max(1, epochs // TRACK_POINTS).
TRACK_POINTS = 5
# Images per forward pass of the tracking embedding (memory, not numbers: eval mode).
TRACK_BATCH = 512
# The metrics.csv columns tracking fills (NaN on epochs not tracked, or tracking off).
TRACK_COLUMNS = (
    "track_effective_rank",
    "track_effective_rank_l2",
    "track_rankme",
    "track_uniformity",
    "track_cos_to_teacher",
    "track_seconds",
)


def resolve_track_every(track_every: int | None, epochs: int) -> int:
    """Epochs between two tracked points: ``null`` → max(1, epochs // 5) (five points
    over a run), 0 → off, otherwise the value itself."""
    if track_every is None:
        return max(1, epochs // TRACK_POINTS)
    if isinstance(track_every, bool) or not isinstance(track_every, int) or track_every < 0:
        raise ConfigError(
            f"config key 'training.track_every': expected an integer >= 0 or null, "
            f"found {track_every!r}"
        )
    return track_every


def tracked_epochs(every: int, epochs: int) -> list[int]:
    """The 1-based epochs measured: every ``every``-th one and always the last (none if 0)."""
    if every <= 0:
        return []
    return sorted({*range(every, epochs + 1, every), epochs})


def track_indices(n: int, samples: int) -> np.ndarray:
    """Sorted row indices of the tracked subset: ``min(samples, n)`` rows drawn without
    replacement by a NumPy generator seeded with :data:`TRACK_SEED` (no torch RNG)."""
    k = min(int(samples), int(n))
    if k < 2:
        raise ConfigError(
            f"config key 'training.track_samples': tracking needs at least 2 train images, "
            f"found track_samples={samples} and {n} images"
        )
    return np.sort(np.random.default_rng(TRACK_SEED).choice(n, size=k, replace=False))


@dataclass(frozen=True)
class TrackSubset:
    """The fixed rows tracked during a run: their images and the teacher's clean rows."""

    indices: np.ndarray
    images: np.ndarray  # k × H × W × 3 uint8
    teacher: np.ndarray | None  # k × D clean teacher embeddings (None: no cosine)

    @classmethod
    def draw(cls, images: np.ndarray, teacher: np.ndarray | None, samples: int) -> TrackSubset:
        idx = track_indices(len(images), samples)
        rows = None if teacher is None else np.asarray(teacher, dtype=np.float64)[idx]
        return cls(idx, np.ascontiguousarray(images[idx]), rows)

    def reference(self) -> dict[str, Any]:
        """The teacher's raw and L2-row ER on these rows: the line Figure 4 compares with."""
        if self.teacher is None:
            return {}
        return {
            "teacher_effective_rank": geometry.effective_rank(self.teacher),
            "teacher_effective_rank_l2": geometry.effective_rank_l2(self.teacher),
        }


def measure_embeddings(emb: np.ndarray, teacher: np.ndarray | None) -> dict[str, float]:
    """The tracked metrics of one embedding of the subset (float64)."""
    x = np.asarray(emb, dtype=np.float64)
    cos = math.nan if teacher is None else geometry.cos_to_teacher(x, teacher)
    return {
        "track_effective_rank": geometry.effective_rank(x),
        "track_effective_rank_l2": geometry.effective_rank_l2(x),
        "track_rankme": geometry.rankme(x),
        "track_uniformity": geometry.uniformity(x),
        "track_cos_to_teacher": cos,
    }


def measure(model: nn.Module, subset: TrackSubset, device: torch.device) -> dict[str, float]:
    """Embed the subset with ``model`` (eval, fp32, train mode restored) and measure it;
    ``track_seconds`` is the time this took, tracking's whole cost for the epoch."""
    t0 = time.perf_counter()
    emb = embed_images(model, subset.images, device=device, batch_size=TRACK_BATCH)
    row = measure_embeddings(emb, subset.teacher)
    return row | {"track_seconds": time.perf_counter() - t0}


def untracked() -> dict[str, float]:
    """The tracked columns of an epoch not measured: all NaN."""
    return dict.fromkeys(TRACK_COLUMNS, math.nan)
