"""Deterministic failures fail fast when the scheduler retries them.

Snakemake's ``retries`` (``retries: 2`` in the SLURM profile) resubmits a failed job
whatever the cause. That is right for a preemption, a time limit or an out-of-memory kill
(requests grow with ``attempt``), and wasteful for a failure that must repeat: a NaN loss
would train for hours again to fail at the same step. So a training job that fails with a
non-finite loss or parameter leaves a marker beside its checkpoint that records the error
and the job's identity (settings and inputs); a retry of the same job with the same
identity stops at once with that error. Change the settings or the inputs and the marker
no longer applies; it is removed when the job succeeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kdspectra.errors import KdspectraError
from kdspectra.io import save_json

PathLike = str | Path


class RepeatedFailureError(KdspectraError, RuntimeError):
    """The same job failed deterministically before; retrying it cannot help."""


def marker_path(checkpoint: PathLike) -> Path:
    """Where the marker of the job whose checkpoint is ``checkpoint`` lives."""
    path = Path(checkpoint)
    return path.with_name(path.name + ".failed.json")


def job_identity(settings: Mapping[str, Any], inputs: Sequence[PathLike]) -> str:
    """A digest of the job's settings and of its input files' size and mtime.

    File stats, not contents: re-extracting a teacher or re-preparing data always
    rewrites the file, and hashing gigabytes on every start would cost more than it saves.
    """
    stats = []
    for p in inputs:
        st = os.stat(p)
        stats.append([str(p), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"settings": settings, "inputs": stats}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _deterministic(exc: BaseException) -> bool:
    """Failures that repeat exactly and come after expensive work: a NaN/inf loss or
    parameter. Bad inputs (artifacts, config) fail in seconds, before any training, so a
    retry costs little and they leave nothing behind; a DeviceError may pass elsewhere."""
    from kdspectra.training.record import NonFiniteLossError, NonFiniteParametersError

    return isinstance(exc, (NonFiniteLossError, NonFiniteParametersError))


@contextlib.contextmanager
def fail_fast_on_repeat(marker: PathLike, identity: str) -> Iterator[None]:
    """Run a job body; refuse to rerun it after a deterministic failure of the same job."""
    marker = Path(marker)
    if marker.exists():
        try:
            previous = json.loads(marker.read_text())
        except (OSError, ValueError):
            previous = {}
        if previous.get("identity") == identity:
            raise RepeatedFailureError(
                f"{marker}: this job failed before with the same settings and inputs "
                f"({previous.get('error', 'unknown error')}); a retry cannot help. Fix the "
                f"cause (settings or inputs), or delete the marker to try again anyway"
            )
        marker.unlink(missing_ok=True)
    try:
        yield
    except BaseException as exc:
        if _deterministic(exc):
            save_json(marker, {"identity": identity, "error": f"{type(exc).__name__}: {exc}"})
        raise
    marker.unlink(missing_ok=True)
