"""A job's own cost, measured from inside the job: one row in Snakemake's benchmark format.

Snakemake's ``benchmark:`` directive polls the job from the outside with psutil, twice a
second for the first 15 s and every 30 s after. On a local run (``--cores N``) it polls
the Snakemake process and *all* its children, so every job's ``max_rss`` and
``cpu_time`` include whatever other jobs ran beside it (a 200 MB measurement job read
1 GB next to a training job), and the polling itself took 5-10 % of a core on the 2-core
demo machine. Measured from inside, the numbers are the job's own and cost nothing while
it runs:

- ``s``: wall seconds since the process started (interpreter start-up and imports
  included, as a user waits for them), from ``/proc`` on Linux; elsewhere since
  :class:`JobStats` was created;
- ``max_rss``: peak resident memory in MB (MiB, as Snakemake's): the larger of the job
  process's peak and its largest waited-for child's. Not their sum: a child forked from a
  1 GB process (to run ``git`` or ``ldconfig``) counts the parent's shared pages as its
  own, so a sum counted them twice (1.5 GB for a 1 GB training job);
- ``cpu_time``: user + system CPU seconds of the process and its children;
- ``io_in``/``io_out``: MB read from and written to block devices;
- ``mean_load``: ``cpu_time`` as a percentage of ``s``.

``max_vms``, ``max_uss`` and ``max_pss`` need a poller and are written as ``NA``.
:mod:`kdspectra.runtime.stagetimes` reads these files exactly as it reads Snakemake's.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

from kdspectra.io import atomic_path

# Snakemake's benchmark columns, in its order, so either kind of file reads the same.
COLUMNS = (
    "s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss",
    "io_in", "io_out", "mean_load", "cpu_time",
)  # fmt: skip
_BLOCK_BYTES = 512  # getrusage's block counts are 512-byte units on Linux


def process_age_s() -> float | None:
    """Seconds since this process started, from ``/proc`` (``None`` where there is none)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    # Field 22 (starttime, clock ticks after boot); the command name (field 2) may hold
    # spaces, so count from the closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return max(0.0, uptime - int(fields[19]) / ticks)


def _rss_mb(usage: resource.struct_rusage) -> float:
    """``ru_maxrss`` in MiB: kilobytes on Linux, bytes on macOS."""
    scale = 1 if sys.platform == "darwin" else 1024
    return usage.ru_maxrss * scale / 2**20


def _own_peak_mb(usage: resource.struct_rusage) -> float:
    """This process's peak RSS in MiB: ``VmHWM`` where ``/proc`` has it, else ``ru_maxrss``.

    Linux carries ``ru_maxrss`` across ``exec``, so a job forked from a large process (a
    1.5 GB test runner, a Snakemake with a big DAG) would report its parent's peak;
    ``VmHWM`` belongs to the job's own address space, which starts empty at ``exec``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return _rss_mb(usage)


class JobStats:
    """Started when the job starts; :meth:`row` reads what the job has cost so far."""

    def __init__(self) -> None:
        age = process_age_s()
        self.started = time.monotonic() - (age if age is not None else 0.0)

    def row(self) -> dict[str, float | str]:
        """One benchmark row (:data:`COLUMNS`) for the job up to now."""
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds = time.monotonic() - self.started
        cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        blocks_in, blocks_out = me.ru_inblock + kids.ru_inblock, me.ru_oublock + kids.ru_oublock
        minutes, secs = divmod(int(seconds), 60)
        hours, minutes = divmod(minutes, 60)
        return {
            "s": round(seconds, 4),
            "h:m:s": f"{hours}:{minutes:02d}:{secs:02d}",
            "max_rss": round(max(_own_peak_mb(me), _rss_mb(kids)), 2),
            "max_vms": "NA",
            "max_uss": "NA",
            "max_pss": "NA",
            "io_in": round(blocks_in * _BLOCK_BYTES / 2**20, 2),
            "io_out": round(blocks_out * _BLOCK_BYTES / 2**20, 2),
            "mean_load": round(100.0 * cpu / seconds, 2) if seconds > 0 else "NA",
            "cpu_time": round(cpu, 2),
        }

    def write(self, path: str | Path) -> None:
        """Write :meth:`row` as a one-row TSV (atomically: a killed job leaves none)."""
        row = self.row()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(
                "\t".join(COLUMNS) + "\n" + "\t".join(str(row[c]) for c in COLUMNS) + "\n"
            )
