"""Embedding artifacts: ``<split>.npy`` (float32 N×D) plus a Parquet sidecar.

Teacher and student embeddings share one on-disk format so every downstream stage
(spectrum, probe, tables) reads them the same way. The sidecar (index, split, label,
L2 norm) lets a reader check row order and spot degenerate rows without loading torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kdspectra.errors import ArtifactError
from kdspectra.io import PathLike, load_npy, save_npy, save_parquet


def sidecar(embeddings: np.ndarray, labels: np.ndarray, split: str) -> pd.DataFrame:
    """Build the per-row sidecar table for one split."""
    return pd.DataFrame(
        {
            "index": np.arange(len(labels), dtype=np.int64),
            "split": split,
            "label": labels.astype(np.int64),
            "norm": np.linalg.norm(embeddings.astype(np.float64), axis=1),
        }
    )


def save_embeddings(
    npy: PathLike, parquet: PathLike, embeddings: np.ndarray, labels: np.ndarray, split: str
) -> None:
    """Validate and write one split's embeddings and sidecar (both atomically)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(labels):
        raise ArtifactError(
            f"{npy}: expected embeddings of shape ({len(labels)}, D), found {emb.shape}"
        )
    if not np.isfinite(emb).all():
        raise ArtifactError(f"{npy}: the model produced NaN/inf embeddings; nothing was written")
    save_npy(npy, emb)
    save_parquet(parquet, sidecar(emb, labels, split))


def load_embeddings(
    path: PathLike, *, rows: int | None = None, dim: int | None = None
) -> np.ndarray:
    """Load a float32 N×D embedding matrix, checked finite and (optionally) shaped."""
    emb = load_npy(path, dtype=np.float32, ndim=2, rows=rows, finite=True)
    if dim is not None and emb.shape[1] != dim:
        raise ArtifactError(f"{Path(path)}: expected {dim} columns, found {emb.shape[1]}")
    return emb


def load_labels(path: PathLike) -> np.ndarray:
    """Load an int64 label vector."""
    return load_npy(path, dtype=np.int64, ndim=1)
