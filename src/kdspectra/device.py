"""Resolve the config's ``device`` key to a torch device, failing early and clearly.

torch is imported inside the functions, not at module level: every workflow job calls
:func:`limit_threads` first, and half of a run's jobs (spectrum, noise, collect, tables,
figures) never touch torch. Importing it anyway cost each of them ~3.5 s of start-up on
a 2-core CPU (a spectrum job went from 4.8 s to 1.2 s without it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdspectra.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cuda", "cpu")


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cuda|cpu`` to a :class:`torch.device`.

    ``auto`` picks CUDA when available. ``cuda`` on a machine without CUDA is a config
    error rather than a silent fallback: a 100x slower run is not what the user asked for.
    """
    if name not in DEVICES:
        raise ConfigError(f"config key 'device': expected one of {list(DEVICES)}, found {name!r}")
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "config key 'device': 'cuda' was requested but torch.cuda.is_available() is False "
            "on this machine; use 'auto' or 'cpu'"
        )
    return torch.device(name)


def limit_threads(n: int) -> None:
    """Cap torch, OpenMP and BLAS thread pools at the job's ``threads``.

    Snakemake runs several jobs side by side on the cores it was given; if every job's
    torch/OpenMP/BLAS pool also spans all cores, the oversubscribed spin-waiting threads
    make each job several times slower than running on its share alone. The environment
    variables cover libraries imported later (torch reads them at import), threadpoolctl
    the BLAS already loaded, and ``set_num_threads`` a torch already imported.
    """
    import os
    import sys

    from threadpoolctl import threadpool_limits

    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    threadpool_limits(limits=n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
