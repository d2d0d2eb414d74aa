"""Route a stage's logging, warnings and stray prints into its Snakemake log file.

Every rule has a ``log:`` file; a researcher debugging a failed cluster job reads that
file first, so it must hold everything: progress, throughput, warnings and the traceback.
On a nearly full disk the log must still say what happened: its first line is on disk
(flushed and fsynced) before the job writes anything large, and a traceback that no longer
fits never hides the error itself, whose one line always reaches the console.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def log_to(path: str | Path | None, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Send logging, stdout and stderr to ``path`` for the duration of the block.

    Exceptions are logged with their traceback and re-raised, so Snakemake still sees the
    failure while the log holds the full story.
    """
    logger = logging.getLogger("kdspectra")
    if path is None:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        yield logger
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "w", buffering=1)  # noqa: SIM115 - closed below, errors of a full disk aside
    _write_header(fh, path)
    handler = logging.StreamHandler(fh)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = fh
    try:
        yield logger
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a full disk must not replace the error
            fh.write(traceback.format_exc())
        # The one-line reason also goes to the console, next to Snakemake's error.
        old_err.write(f"{type(exc).__name__}: {exc} (full log: {path})\n")
        raise
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        root.removeHandler(handler)
        with contextlib.suppress(OSError):
            fh.close()


def _write_header(fh: Any, path: str | Path) -> None:
    """The log's first line, on disk before the job's first large write: on a disk the
    job then fills, the log still exists and says which job ran, where and when."""
    fh.write(
        f"{dt.datetime.now().isoformat(timespec='seconds')} kdspectra job started on "
        f"{socket.gethostname()} (pid {os.getpid()}); log {path}\n"
    )
    fh.flush()
    os.fsync(fh.fileno())


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` so ``finally`` blocks and atomic writes clean up.

    Python's default SIGTERM action ends the process on the spot: a write caught between
    its temporary file and the rename leaves ``.<name>.*.tmp`` behind, which Snakemake
    (it removes only declared outputs) never deletes, and the log never says why the job
    died. Training installs its own handler (checkpoint, then exit) over this one while
    its loop runs. Handlers can only be set from the main thread; elsewhere this is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def job(
    log_path: str | Path | None,
    threads: int | None = None,
    times: str | Path | None = None,
) -> Iterator[logging.Logger]:
    """The context of one workflow job: its log file, its share of the CPU cores, and a
    SIGTERM (SLURM preemption, ``kill``) that exits through cleanup (:func:`exit_on_sigterm`).

    ``times``: where to write the job's own wall time, peak memory and CPU time when it
    succeeds (:mod:`kdspectra.runtime.jobstats`; the rule's ``log: times=``).
    """
    from kdspectra.runtime.jobstats import JobStats

    stats = JobStats()
    with log_to(log_path) as logger, exit_on_sigterm():
        if threads is not None:
            from kdspectra.runtime.device import limit_threads

            limit_threads(threads)
        yield logger
        if times is not None:
            stats.write(times)
