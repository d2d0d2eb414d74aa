"""Atomic artifact I/O and validated loading.

Snakemake treats any file that exists as done, so a half-written artifact after a crash,
``kill -9`` or SIGTERM would poison every later run. Every writer here writes to a
temporary sibling and renames it into place only when the content is complete; every
reader checks what downstream code relies on and names the file when it does not hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kdspectra.errors import ArtifactError

PathLike = str | os.PathLike[str]


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic
    on POSIX filesystems (including the NFS/Lustre of clusters). On any exception the
    temporary file is removed and ``path`` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; results on a shared cluster must follow the user's umask.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npy(path: PathLike, array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` atomically (never pickled)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


def load_npy(
    path: PathLike,
    *,
    dtype: np.dtype | type | None = None,
    ndim: int | None = None,
    rows: int | None = None,
    finite: bool = False,
) -> np.ndarray:
    """Load a ``.npy`` file, refusing pickles and checking what the caller relies on.

    Raises :class:`ArtifactError` naming ``path`` when the file is truncated or corrupt,
    has the wrong dtype, number of dimensions or rows, or holds NaN/inf (``finite=True``).
    """
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{p}: file not found (expected a .npy array)")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ArtifactError(
            f"{p}: not a readable .npy array (truncated or corrupt?): {exc}"
        ) from exc
    if dtype is not None and arr.dtype != np.dtype(dtype):
        raise ArtifactError(f"{p}: expected dtype {np.dtype(dtype)}, found {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ArtifactError(f"{p}: expected {ndim} dimensions, found shape {arr.shape}")
    if rows is not None and arr.shape[0] != rows:
        raise ArtifactError(f"{p}: expected {rows} rows (one per label), found {arr.shape[0]}")
    if finite and np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ArtifactError(f"{p}: holds {bad} NaN/inf values; refusing to use it")
    return arr


def save_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically."""
    save_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def load_json(path: PathLike) -> Any:
    """Read JSON, naming the file when it is not valid JSON."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{p}: not readable JSON: {exc}") from exc


def save_text(path: PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_parquet(path: PathLike, frame: Any) -> None:
    """Write a pandas DataFrame as Parquet atomically (pyarrow engine)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False, engine="pyarrow")


def save_csv(path: PathLike, frame: Any) -> None:
    """Write a pandas DataFrame as CSV atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_figure(fig: Any, path: PathLike, *, dpi: int = 200) -> None:
    """Save a matplotlib figure atomically; the format follows the suffix of ``path``."""
    final = Path(path)
    with atomic_path(final) as tmp:
        fig.savefig(tmp, dpi=dpi, format=final.suffix.lstrip("."), bbox_inches="tight")
