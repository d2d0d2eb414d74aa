"""Read a researcher's embedding matrix (or labels) from the formats people save them in.

``kdspectra geometry`` takes whatever a user has: ``.npy``, ``.npz``, PyTorch ``.pt`` /
``.pth``, ``.safetensors``, ``.parquet`` or ``.csv``. Every reader refuses what could run
arbitrary code (no pickles: ``allow_pickle=False``, ``torch.load(weights_only=True)``) and
every problem — unknown suffix, several arrays and no ``key``, ragged or non-numeric data,
NaN/inf, 1-D, fewer than 2 rows — is an :class:`~kdspectra.errors.ArtifactError` whose
message starts with the file's path, so the CLI can print it as one line.

Tables (``.parquet``, ``.csv``): every column is a feature and must be numeric, except a
column named ``label`` (a common companion), which is skipped; ``key`` may instead name
the feature columns as a comma-separated list. A ``.csv`` without a header row (every
"column name" parses as a number) is read as headerless, so no row is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdspectra.errors import ArtifactError
from kdspectra.io import PathLike

SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors", ".parquet", ".csv")
LABEL_COLUMN = "label"  # skipped among a table's feature columns


@dataclass(frozen=True)
class Loaded:
    """An array read from a file, with the dtype it was stored in (before float64)."""

    array: np.ndarray
    dtype: str
    path: Path


def _fail(path: Path, problem: str) -> ArtifactError:
    return ArtifactError(f"{path}: {problem}")


def _pick(path: Path, arrays: dict[str, Any], key: str | None, what: str) -> Any:
    """The one array in ``arrays``, or the one named ``key``; else say which keys exist."""
    if key is not None:
        if key not in arrays:
            raise _fail(path, f"no {what} named {key!r}; it holds {sorted(arrays)}")
        return arrays[key]
    if len(arrays) != 1:
        found = sorted(arrays) if arrays else "nothing"
        raise _fail(path, f"holds {len(arrays)} {what}s {found}; choose one with --key")
    return next(iter(arrays.values()))


def _gist(exc: BaseException) -> str:
    """One line of a library's multi-line error: torch's names the refused global."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if line.startswith("WeightsUnpickler error")]
    return (named or lines or [type(exc).__name__])[0]


def _read_npy(path: Path, key: str | None) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _fail(path, "holds an object array (ragged rows or Python objects)") from exc
        raise _fail(path, f"not a readable .npy array (truncated or corrupt?): {exc}") from exc


def _read_npz(path: Path, key: str | None) -> Any:
    try:
        with np.load(path, allow_pickle=False) as archive:
            name = _pick(path, {k: k for k in archive.files}, key, "array")
            return archive[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _fail(path, "holds an object array (ragged rows or Python objects)") from exc
        raise _fail(path, f"not a readable .npz archive: {exc}") from exc


def _tensor_to_numpy(path: Path, t: Any) -> tuple[np.ndarray, str]:
    import torch

    if not isinstance(t, torch.Tensor):
        raise _fail(path, f"expected a tensor, found a {type(t).__name__}")
    dtype = str(t.dtype).removeprefix("torch.")
    if t.is_complex() or t.dtype == torch.bool:
        raise _fail(path, f"tensor has dtype {dtype}; expected real numbers")
    t = t.detach().cpu()
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # bfloat16 / float16 have no exact numpy twin; float32 holds them
    return t.numpy(), dtype


def _read_pt(path: Path, key: str | None) -> Any:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise _fail(path, f"not a loadable tensor file (weights_only=True): {_gist(exc)}") from exc
    if isinstance(obj, dict):
        obj = _pick(path, obj, key, "entry")
    return _tensor_to_numpy(path, obj)


def _read_safetensors(path: Path, key: str | None) -> Any:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as exc:
        raise _fail(path, f"not a readable .safetensors file: {exc}") from exc
    return _tensor_to_numpy(path, _pick(path, tensors, key, "tensor"))


def _read_frame(path: Path) -> Any:
    """A ``.csv`` / ``.parquet`` file as a DataFrame (headerless CSV detected)."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path)
            if len(frame.columns) and all(_is_number(c) for c in frame.columns):
                frame = pd.read_csv(path, header=None)
            return frame
        return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise _fail(path, f"not a readable table (ragged rows?): {_gist(exc)}") from exc


def _read_table(path: Path, key: str | None) -> Any:
    import pandas as pd

    frame = _read_frame(path)
    if key is not None:
        cols = [c.strip() for c in key.split(",")]
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise _fail(path, f"no columns {missing}; it has {list(frame.columns)}")
    else:
        cols = [c for c in frame.columns if c != LABEL_COLUMN]
    frame = frame[cols]
    bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise _fail(path, f"non-numeric columns {bad}; every feature column must be numeric")
    return frame.to_numpy()


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


READERS = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".pt": _read_pt,
    ".pth": _read_pt,
    ".safetensors": _read_safetensors,
    ".parquet": _read_table,
    ".csv": _read_table,
}


def _read(path: PathLike, key: str | None) -> tuple[Path, np.ndarray, str]:
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in READERS:
        raise _fail(p, f"unknown suffix {p.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if not p.is_file():
        raise _fail(p, "file not found")
    out = READERS[suffix](p, key)
    arr, dtype = out if isinstance(out, tuple) else (out, None)
    arr = np.asarray(arr)
    return p, arr, dtype or str(arr.dtype)


def read_embeddings(path: PathLike, key: str | None = None) -> Loaded:
    """An N×D numeric matrix from ``path`` (format by suffix), validated, as float64.

    ``key`` chooses an array in a ``.npz``, a tensor in a ``.pt`` dict or ``.safetensors``
    file, or comma-separated columns of a table. Raises :class:`ArtifactError` naming the
    file for anything a metric cannot use.
    """
    p, arr, dtype = _read(path, key)
    if arr.dtype == object:
        raise _fail(p, "holds Python objects (ragged rows?); expected a numeric matrix")
    if arr.dtype.kind not in "iuf":
        raise _fail(p, f"has dtype {arr.dtype}; expected real numbers")
    if arr.ndim != 2:
        raise _fail(p, f"expected 2 dimensions (rows = samples), found shape {arr.shape}")
    if arr.shape[0] < 2:
        raise _fail(p, f"need at least 2 rows, found {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise _fail(p, "matrix has no columns")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise _fail(p, f"holds {int((~np.isfinite(arr)).sum())} NaN/inf values")
    return Loaded(arr, dtype, p)


def read_labels(path: PathLike, rows: int, key: str | None = None) -> np.ndarray:
    """A vector of ``rows`` class labels from ``path`` (any reader format; N×1 allowed).

    Labels may be integers or strings. A table gives its ``key`` column, else its
    ``label`` column, else its only column.
    """
    p = Path(path)
    if p.suffix.lower() in (".csv", ".parquet") and p.is_file():
        frame = _read_frame(p)
        col = key or (LABEL_COLUMN if LABEL_COLUMN in frame.columns else None)
        if col is None and len(frame.columns) != 1:
            raise _fail(p, f"has columns {list(frame.columns)}; name the label column 'label'")
        if col is not None and col not in frame.columns:
            raise _fail(p, f"no column {col!r}; it has {list(frame.columns)}")
        arr = frame[col if col is not None else frame.columns[0]].to_numpy()
    else:
        p, arr, _ = _read(p, key)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise _fail(p, f"expected one label per row (1-D), found shape {arr.shape}")
    if len(arr) != rows:
        raise _fail(p, f"expected {rows} labels (one per embedding row), found {len(arr)}")
    return arr
