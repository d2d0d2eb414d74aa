"""Atomic artifact I/O and validated loading.

Snakemake treats any file that exists as done, so a half-written artifact after a crash,
``kill -9`` or SIGTERM would poison every later run. Every writer here writes to a
temporary sibling and renames it into place only when the content is complete, with the
bytes and the rename both flushed to disk (a power cut or node crash after the job
reported success must not leave an empty file); every reader checks what downstream code
relies on and names the file when it does not hold.

Temporaries are named ``.<target>.kdtmp.<host>.<pid>.<random>.tmp``. ``kill -9`` gives a
writer no chance to remove its temporary, so every write first sweeps the stale ones in
its directory: ours (by that name), and either left by a dead process of this host, or,
from another host (a cluster's shared filesystem), untouched for :data:`STALE_AFTER_S`.
A live writer's temporary is not touched.

A full disk (or quota) is named as such: a writer that runs out of space removes its
temporary, leaves the previous file as it was, and raises :class:`ArtifactError` saying
"no space left on device" with the path, instead of whatever the library that wrote the
bytes says about it (torch: "inline_container.cc:672 unexpected pos").
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kdspectra.errors import ArtifactError

PathLike = str | os.PathLike[str]


# A temporary of another host (whose pids we cannot check) unchanged for this long is
# abandoned: a live writer touches its file with every chunk.
STALE_AFTER_S = 3600.0
# One of this host whose pid is gone must also be this old: a container that shares the
# host name but not the pid namespace may run a writer that our os.kill cannot see.
DEAD_PID_GRACE_S = 60.0
_TMP_TAG = ".kdtmp."
# errno values that mean "the filesystem has no room": a full disk, a full quota.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# How libraries that drop the errno word a full disk (pyarrow, safetensors' Rust IO error).
NO_SPACE_WORDS = ("no space left on device", "storagefull", "disk quota exceeded")
# torch's zip writer on a full disk (no errno, no words): checked against the free space.
TORCH_WRITE_FAILED = ("unexpected pos", "file write failed")
LOW_SPACE_BYTES = 16 << 20
_TMP_RE = re.compile(r"^\..+\.kdtmp\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp$")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic
    on POSIX filesystems (including the NFS/Lustre of clusters). The file is fsynced
    before the rename and the directory after it, so a crash never leaves ``path`` empty
    or missing once this returns. On any exception the temporary file is removed and
    ``path`` is left untouched. Stale temporaries of killed writers are swept first
    (:func:`sweep_stale_temps`).
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale_temps(final.parent)
        prefix = f".{final.name}{_TMP_TAG}{_host()}.{os.getpid()}."
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=final.parent)
        os.close(fd)
    except OSError as exc:
        if is_no_space(exc, final.parent):
            raise no_space_error(final, exc) from exc
        raise
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; results on a shared cluster must follow the user's umask.
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, final)
        _fsync(final.parent)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_no_space(exc, final.parent):
            raise no_space_error(final, exc) from exc
        raise


def is_no_space(exc: BaseException, folder: PathLike | None = None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the filesystem is full.

    ENOSPC/EDQUOT, or the words only: pyarrow's OSError and safetensors' SafetensorError
    ("IoError(Os { code: 28, kind: StorageFull ... })") carry no errno. torch's own writer
    says only "unexpected pos" / "file write failed": for those, ``folder`` having less
    than :data:`LOW_SPACE_BYTES` free is taken as the cause.
    """
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).lower()
        if isinstance(seen, OSError) and seen.errno in NO_SPACE_ERRNOS:
            return True
        if any(words in text for words in NO_SPACE_WORDS):
            return True
        if folder is not None and any(words in text for words in TORCH_WRITE_FAILED):
            with contextlib.suppress(OSError):
                return shutil.disk_usage(folder).free < LOW_SPACE_BYTES
        seen = seen.__cause__ or seen.__context__
    return False


def no_space_error(path: PathLike, exc: BaseException) -> ArtifactError:
    """The error a job reports when ``path`` could not be written for lack of space."""
    target = Path(path)
    try:
        free = f"{shutil.disk_usage(target.parent).free / 1e6:.1f} MB free there now"
    except OSError:
        free = "free space unknown"
    return ArtifactError(
        f"{target}: no space left on device while writing it ({free}; {exc}); the partial "
        f"file was removed and any previous {target.name} is unchanged. Free space on that "
        f"filesystem (or move results/ to a larger one) and rerun"
    )


def sweep_stale_temps(folder: PathLike, *, now: float | None = None) -> list[Path]:
    """Remove the temporaries of :func:`atomic_path` in ``folder`` that no one will finish.

    Only files named by :func:`atomic_path` are considered, and of those only the ones
    whose writer is gone: a pid of this host that no longer runs (and no change for
    :data:`DEAD_PID_GRACE_S`), or, for another host's file, no change for
    :data:`STALE_AFTER_S` seconds. Returns the removed paths.
    """
    now = time.time() if now is None else now
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            match = _TMP_RE.match(entry.name)
            if match and entry.is_file(follow_symlinks=False) and _abandoned(entry, match, now):
                with contextlib.suppress(FileNotFoundError):  # a concurrent sweep won
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _abandoned(entry: os.DirEntry[str], match: re.Match[str], now: float) -> bool:
    try:
        age = now - entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return False
    if match["host"] == _host():
        return age > DEAD_PID_GRACE_S and not _pid_alive(int(match["pid"]))
    return age > STALE_AFTER_S


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _host() -> str:
    """This machine's short host name, reduced to the characters a temp name allows."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a directory) to disk.

    Directory fsync is not supported everywhere (some network filesystems refuse it);
    there the rename is as durable as that filesystem makes it, and nothing else can help.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if not (path.is_dir() and exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EBADF)):
            raise
    finally:
        os.close(fd)


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


def parse_yaml(text: str) -> Any:
    """Safe-load YAML text, with libyaml's C parser when PyYAML was built with it.

    The same safe subset as ``yaml.safe_load``, about ten times faster: the config schema
    is parsed by every job, and the pure-Python parser made that a visible share of a
    short job's start-up.
    """
    import yaml

    # What yaml.safe_load does, with the C loader; never yaml.load, whose loader is the
    # caller's choice (tests/test_faults.py refuses it anywhere in the code).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


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


def array_digest(arr: np.ndarray) -> str:
    """BLAKE2b of an array's dtype, shape and bytes: the identity of an input file's data.

    Training records it for its inputs (a checkpoint must not resume on other data) and
    extraction for the teacher's embeddings (a file edited in place, its mtime restored,
    must not reach a table); numpy only, so a measurement job needs no torch for it.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()
