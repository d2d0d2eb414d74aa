"""What every stage module shares: the logger, the ``(inputs, outputs, params)`` types, the
prepared-split loader and the trained-student loader (training embeds with it, the
corruption stage scores with it)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kdspectra.data.embeddings import load_labels
from kdspectra.io import load_json, load_npy

# One logger for every stage, as before the split: log filters and tests name it.
log = logging.getLogger("kdspectra.stages")
PathLike = str | Path
Named = Mapping[str, Any]  # a rule's input, output or params: name -> value


def _named(m: Any) -> dict[str, Any]:
    """A plain dict of a rule's named inputs/outputs/params (Snakemake's Namedlist is no
    Mapping: ``in`` would test its values, not its names)."""
    return dict(m.items()) if hasattr(m, "items") else dict(m)


def load_split(data_dir: PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Prepared images (uint8 N×32×32×3) and labels (int64 N) of one split, checked."""
    labels = load_labels(Path(data_dir) / f"{split}_labels.npy")
    images = load_npy(
        Path(data_dir) / f"{split}_images.npy", dtype=np.uint8, ndim=4, rows=len(labels)
    )
    return images, labels


def _load_trained(weights: PathLike, meta_path: PathLike, device: Any) -> Any:
    """A trained student from its ``.safetensors`` and the meta.json training wrote (which
    names its architecture and widths)."""
    from kdspectra.models.inference import load_student

    meta = load_json(meta_path)
    return load_student(
        Path(weights),
        meta["student"],
        int(meta["embed_dim"]),
        width_mult=float(meta["width_mult"]),
        device=device,
    )
