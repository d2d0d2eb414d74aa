"""Read a researcher's embedding matrix (or labels) from the formats people save them in.

``kdspectra geometry`` takes whatever a user has: ``.npy``, ``.npz``, PyTorch ``.pt`` /
``.pth``, ``.safetensors``, ``.parquet`` or ``.csv``. Every reader refuses what could run
arbitrary code (no pickles: ``allow_pickle=False``, ``torch.load(weights_only=True)``) and
every problem — unknown suffix, several arrays and no ``key``, ragged or non-numeric data,
NaN/inf, 1-D, fewer than 2 rows — is an :class:`~kdspectra.errors.ArtifactError` whose
message starts with the file's path, so the CLI can print it as one line.

Before a reader runs, the file is sniffed (:func:`_sniff`): an empty file, a file without
its format's magic bytes (a text file named ``x.npy``, a symlink to ``/etc/passwd``) or a
``.npy`` shorter than its header promises is named as such. The messages never quote a
file's content unless it is a table with at least one numeric column (whose column names
are then the way to point at the problem): a library's error can carry the first bytes of
a file, so none is passed on for a file that failed its sniff. Decompression is bounded:
an ``.npz`` (or zip ``.pt``) member or a Parquet table whose header says it inflates
past :data:`MAX_INFLATED_BYTES` at a ratio above :data:`MAX_RATIO` is refused from the
header, before anything is inflated.

Tables (``.parquet``, ``.csv``): every column is a feature and must be numeric, except a
column named ``label`` (a common companion), which is skipped; ``key`` may instead name
the feature columns as a comma-separated list. A ``.csv`` without a header row (every
"column name" parses as a number) is read as headerless, so no row is lost. Boolean
columns and columns with missing values (nullable Parquet columns, empty CSV cells) are
named as such.
"""

from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdspectra.errors import ArtifactError
from kdspectra.io import PathLike

SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".safetensors", ".parquet", ".csv")
LABEL_COLUMN = "label"  # skipped among a table's feature columns
# A compressed member (npz, zip .pt, parquet row group) may inflate to at most this many
# bytes at a compression ratio above MAX_RATIO. Float embeddings barely compress (~1.1x),
# so a genuine large member passes; a zip bomb (2 MB -> 2 GB, ratio 1000) does not.
MAX_INFLATED_BYTES = 1 << 30
MAX_RATIO = 20.0
# Magic bytes of the binary formats (a .pt is a zip since torch 1.6, a pickle before).
_PT = (b"PK", b"\x80")
MAGIC = {".npy": (b"\x93NUMPY",), ".npz": (b"PK",), ".pt": _PT, ".pth": _PT, ".parquet": (b"PAR1",)}
# Column names quoted in messages: short plain words. Anything else is named by position.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\- ]{1,40}")


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
            raise _fail(path, f"no {what} named {key!r}; it holds {sorted(map(str, arrays))}")
        return arrays[key]
    if len(arrays) != 1:
        found = sorted(map(str, arrays)) if arrays else "nothing"
        raise _fail(path, f"holds {len(arrays)} {what}s {found}; choose one with --key")
    return next(iter(arrays.values()))


def _gist(exc: BaseException) -> str:
    """One line of a library's multi-line error: torch's names the refused global."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if line.startswith("WeightsUnpickler error")]
    return (named or lines or [type(exc).__name__])[0]


# -------------------------------------------------------------------------- sniffing


def _sniff(path: Path, suffix: str) -> None:
    """Refuse, from its first bytes and size, a file that cannot be what its suffix says."""
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, f"is empty (0 bytes); expected a {suffix} file")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if suffix in MAGIC and not head.startswith(MAGIC[suffix]):
        raise _fail(path, f"not a {suffix} file (it lacks the format's magic bytes)")
    if suffix == ".safetensors":
        header = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
        if not 2 <= header <= size - 8:
            raise _fail(path, "not a .safetensors file (its 8-byte header length is invalid)")
    if suffix == ".csv" and (b"\0" in head or not _utf8(head)):
        raise _fail(path, "not a text table (binary content); expected comma-separated numbers")
    if suffix == ".npy":
        _check_npy_length(path, size)
    if suffix in (".npz", ".pt", ".pth") and head.startswith(b"PK"):
        _check_zip_members(path)


def _utf8(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut at the 4 KB boundary
    return True


def _check_npy_length(path: Path, size: int) -> None:
    """A ``.npy`` must hold the bytes its header declares (truncated files are named)."""
    from numpy.lib import format as npformat

    try:
        with open(path, "rb") as fh:
            version = npformat.read_magic(fh)
            read_header = {(1, 0): npformat.read_array_header_1_0}
            reader = read_header.get(version, npformat.read_array_header_2_0)
            shape, _, dtype = reader(fh)
            offset = fh.tell()
    except (ValueError, EOFError, OSError) as exc:
        raise _fail(path, "truncated or corrupt .npy: its header cannot be read") from exc
    if dtype.hasobject:
        raise _fail(path, "holds an object array (ragged rows or Python objects)")
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size - offset < need:
        raise _fail(
            path,
            f"truncated .npy: its header declares shape {tuple(shape)} {dtype} ({need} bytes), "
            f"the file holds {size - offset} bytes after the header",
        )


def _check_inflation(path: Path, what: str, inflated: int, stored: int) -> None:
    ratio = inflated / max(stored, 1)
    if inflated > MAX_INFLATED_BYTES and ratio > MAX_RATIO:
        raise _fail(
            path,
            f"{what} inflates to {inflated / 2**30:.1f} GiB from {stored / 2**20:.1f} MiB "
            f"(ratio {ratio:.0f}, over the {MAX_INFLATED_BYTES / 2**30:.0f} GiB / {MAX_RATIO:.0f}x "
            "guard): refused before decompressing it",
        )


def _check_zip_members(path: Path) -> None:
    """Every member's declared size, read from the zip's directory before inflating any."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                what = (
                    f"member {info.filename!r}"
                    if _PLAIN_NAME.fullmatch(info.filename)
                    else "a member"
                )
                _check_inflation(path, what, info.file_size, info.compress_size)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _fail(
            path, "truncated or corrupt zip archive (its directory cannot be read)"
        ) from exc


def _check_parquet_size(path: Path) -> None:
    """The decoded table's size from the footer (rows × columns × 8 bytes, what reading
    it as float64 takes) against the file's: run-length encoding and compression both
    let a small file declare a huge table."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    decoded = meta.num_rows * meta.num_columns * 8
    _check_inflation(path, "its table", decoded, path.stat().st_size)


# -------------------------------------------------------------------------- readers


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
    except ArtifactError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise _fail(path, "holds an object array (ragged rows or Python objects)") from exc
        raise _fail(path, "not a readable .npz archive (a member is truncated or corrupt)") from exc


def _tensor_to_numpy(path: Path, t: Any) -> tuple[np.ndarray, str]:
    import torch

    if not isinstance(t, torch.Tensor):
        raise _fail(path, f"expected a tensor, found a {type(t).__name__}")
    dtype = str(t.dtype).removeprefix("torch.")
    if t.is_meta:
        raise _fail(path, "holds a meta tensor (a shape without data); save the real tensor")
    if t.is_quantized:
        raise _fail(path, f"holds a quantized tensor ({dtype}); save t.dequantize() instead")
    if t.layout != torch.strided:
        layout = str(t.layout).removeprefix("torch.")
        raise _fail(path, f"holds a {layout} (not dense) tensor; save t.to_dense() instead")
    if t.is_complex() or t.dtype == torch.bool:
        raise _fail(path, f"tensor has dtype {dtype}; expected real numbers")
    t = t.detach().cpu().resolve_conj().resolve_neg()
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        t = t.float()  # bfloat16 / float16 / float8 have no exact numpy twin; float32 holds them
    try:
        return t.numpy(), dtype
    except (RuntimeError, TypeError) as exc:
        raise _fail(path, f"holds a tensor numpy cannot take ({dtype}, {_gist(exc)})") from exc


def _read_pt(path: Path, key: str | None) -> Any:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
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
        raise _fail(path, "not a readable .safetensors file (truncated or corrupt?)") from exc
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
        _check_parquet_size(path)
        return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise _fail(path, f"not a readable table (ragged rows?): {_gist(exc)}") from exc


def _names(frame: Any, columns: list[Any]) -> list[str]:
    """How a message names ``columns``: by name in a table, by position otherwise.

    A file with no numeric column at all is not an embedding table (a text file named
    .csv), and its "column names" are its first line: never quoted.
    """
    import pandas as pd

    numeric = any(pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns)
    position = {c: i + 1 for i, c in enumerate(frame.columns)}
    return [
        repr(str(c)) if numeric and _PLAIN_NAME.fullmatch(str(c)) else f"column {position[c]}"
        for c in columns
    ]


def _column(path: Path, frame: Any, column: Any) -> np.ndarray | None:
    """One feature column as float64 (None for text), naming booleans and missing values."""
    import pandas as pd

    values = frame[column]
    (name,) = _names(frame, [column])
    if pd.api.types.is_bool_dtype(values):
        raise _fail(path, f"column {name} is boolean (True/False); expected numbers")
    if not pd.api.types.is_numeric_dtype(values):
        return None  # gathered by the caller into one message
    missing = int(values.isna().sum())
    if missing and pd.api.types.is_extension_array_dtype(values):
        raise _fail(
            path, f"column {name} is nullable ({values.dtype}) with {missing} null value(s)"
        )
    if missing:
        raise _fail(path, f"column {name} has {missing} missing value(s) (empty cells)")
    return values.to_numpy(dtype=np.float64)


def _read_table(path: Path, key: str | None) -> Any:
    frame = _read_frame(path)
    if key is not None:
        cols = [c.strip() for c in key.split(",")]
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise _fail(path, f"no columns {missing}; it has {_names(frame, list(frame.columns))}")
    else:
        cols = [c for c in frame.columns if c != LABEL_COLUMN]
    if not cols:
        raise _fail(path, "has no feature columns")
    arrays = {c: _column(path, frame, c) for c in cols}
    bad = [c for c, a in arrays.items() if a is None]
    if bad and len(bad) == len(frame.columns):
        raise _fail(path, "has no numeric column (not an embedding table?)")
    if bad:
        shown = ", ".join(_names(frame, bad)).replace("'", "")
        raise _fail(path, f"non-numeric columns ['{shown}']; every feature column must be numeric")
    return np.column_stack(list(arrays.values()))


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


def _open_checked(path: PathLike) -> tuple[Path, str]:
    """The path and its suffix, once the file exists and passed :func:`_sniff`."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in READERS:
        raise _fail(p, f"unknown suffix {p.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if p.is_dir():
        raise _fail(p, f"is a directory; expected a {suffix} file")
    if not p.exists():
        raise _fail(p, "file not found")
    if not p.is_file():  # a FIFO or a device (/dev/zero would be read forever)
        raise _fail(p, f"not a regular file; expected a {suffix} file")
    try:
        _sniff(p, suffix)
    except OSError as exc:
        raise _fail(p, f"cannot be read ({exc.strerror or type(exc).__name__})") from exc
    return p, suffix


def _read(path: PathLike, key: str | None) -> tuple[Path, np.ndarray, str]:
    p, suffix = _open_checked(path)
    try:
        out = READERS[suffix](p, key)
    except (EOFError, zipfile.BadZipFile) as exc:
        raise _fail(p, f"truncated or corrupt {suffix} file (ended early)") from exc
    except MemoryError as exc:
        raise _fail(p, "does not fit in memory") from exc
    except OSError as exc:
        raise _fail(p, f"cannot be read ({exc.strerror or type(exc).__name__})") from exc
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
    if arr.dtype.kind == "b":
        raise _fail(p, "holds booleans (True/False); expected real numbers")
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
    if p.suffix.lower() in (".csv", ".parquet"):
        p, _ = _open_checked(p)
        frame = _read_frame(p)
        col = key or (LABEL_COLUMN if LABEL_COLUMN in frame.columns else None)
        if col is None and len(frame.columns) != 1:
            shown = _names(frame, list(frame.columns))
            raise _fail(p, f"has columns {shown}; name the label column 'label'")
        if col is not None and col not in frame.columns:
            raise _fail(p, f"no column {col!r}; it has {_names(frame, list(frame.columns))}")
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
