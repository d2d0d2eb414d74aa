"""Resolve the config's ``device`` key to a torch device, failing early and clearly.

torch is imported inside the functions, not at module level: every workflow job calls
:func:`limit_threads` first, and half of a run's jobs (spectrum, noise, collect, tables,
figures) never touch torch. Importing it anyway cost each of them ~3.5 s of start-up on
a 2-core CPU (a spectrum job went from 4.8 s to 1.2 s without it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kdspectra.errors import ConfigError, DeviceError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cuda", "cpu")
FALLBACK_ENV = "KDSPECTRA_ALLOW_CPU_FALLBACK"
# Values a scheduler or a user writes into CUDA_VISIBLE_DEVICES to mean "no GPU".
_NO_GPU = ("", "-1", "NoDevFiles")


def gpu_allocated(env: Mapping[str, str] | None = None) -> str | None:
    """Why this process looks as if it was given a GPU, or None.

    SLURM's ``--gpus``/``--gres`` sets ``SLURM_JOB_GPUS`` and binds the card through
    ``CUDA_VISIBLE_DEVICES``; a user pinning a card sets the latter. Either one, with a
    value that names a device, means the job was meant to compute on a GPU.
    """
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() not in _NO_GPU:
        return f"CUDA_VISIBLE_DEVICES={visible!r}"
    gpus = env.get("SLURM_JOB_GPUS")
    if gpus:
        return f"SLURM_JOB_GPUS={gpus!r}"
    return None


def cpu_fallback_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``KDSPECTRA_ALLOW_CPU_FALLBACK`` opts out of the allocated-GPU check."""
    env = os.environ if env is None else env
    return env.get(FALLBACK_ENV, "").strip().lower() in ("1", "true", "yes")


def resolve_device(name: str = "auto", *, allow_cpu_fallback: bool | None = None) -> torch.device:
    """Map ``auto|cuda|cpu`` to a :class:`torch.device`, at job time.

    Called inside the job, never when the Snakefile is parsed: on a cluster the login
    node that parses it has no GPU, the compute node does. ``cuda`` without CUDA is a
    config error rather than a silent fallback: a 100x slower run is not what the user
    asked for. ``auto`` picks CUDA when available; it falls back to the CPU only when
    the job was not given a GPU (:func:`gpu_allocated`), because a GPU allocation whose
    CUDA does not work (driver mismatch, CPU-only torch) is a broken node, not a choice.
    ``allow_cpu_fallback`` (default: the ``KDSPECTRA_ALLOW_CPU_FALLBACK`` environment
    variable) accepts that fallback, for nodes whose GPUs are known to be fake (CI).
    """
    if name not in DEVICES:
        raise ConfigError(f"config key 'device': expected one of {list(DEVICES)}, found {name!r}")
    import torch

    if name == "cpu" or torch.cuda.is_available():
        return torch.device("cpu" if name == "cpu" else "cuda")
    if name == "cuda":
        raise ConfigError(
            "config key 'device': 'cuda' was requested but torch.cuda.is_available() is False "
            "on this machine; use 'auto' or 'cpu'"
        )
    allocated = gpu_allocated()
    allowed = cpu_fallback_allowed() if allow_cpu_fallback is None else allow_cpu_fallback
    if allocated and not allowed:
        raise DeviceError(
            f"config key 'device' is 'auto' and this job was given a GPU ({allocated}), but "
            f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda}): the job would run on the CPU, many times slower. Fix the "
            f"node's driver or torch build, set 'device: cpu', or accept the fallback with "
            f"{FALLBACK_ENV}=1 (config key 'allow_cpu_fallback: true')"
        )
    return torch.device("cpu")


def device_record(device: torch.device) -> dict[str, Any]:
    """Where a job computed, for its ``meta.json``: a reader can tell a GPU job that ran
    on the CPU, and which card of the allocation it had."""
    record: dict[str, Any] = {
        "device": str(device),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_gpus": os.environ.get("SLURM_JOB_GPUS"),
    }
    if device.type == "cuda":
        import torch

        record["cuda_device_name"] = torch.cuda.get_device_name(device)
    return record


def set_deterministic(enabled: bool) -> None:
    """Switch PyTorch between reproducible and fast kernels (``training.deterministic``).

    Enabled: deterministic algorithms only (an op without one raises instead of silently
    varying), cuDNN autotuning off (it picks kernels by timing, which varies run to run)
    and the cuBLAS workspace fixed (cuBLAS needs it for reproducible GEMMs; it is read
    when the first handle is created, so this must run before any CUDA matmul). Disabled:
    the defaults back. CPU training is already bitwise reproducible either way.

    ``torch.use_deterministic_algorithms`` also sets TorchInductor's ``deterministic``
    flag, and importing Inductor to do so costs ~2.4 s on a 2-core CPU: a tenth of a demo
    training job, paid by every torch job. The switch itself is the one C call below; the
    Inductor flag matters only to ``torch.compile``, so it is set here when Inductor is
    already loaded and by :func:`compile_model` otherwise.
    """
    import sys

    import torch

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch._C._set_deterministic_algorithms(enabled)
    if "torch._inductor.config" in sys.modules:
        sys.modules["torch._inductor.config"].deterministic = enabled
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def compile_model(model: Any) -> Any:
    """``torch.compile`` ``model`` with Inductor as deterministic as the kernels are.

    :func:`set_deterministic` leaves Inductor unloaded (it is slow to import); this carries
    the current switch into Inductor's config before compiling, as
    ``torch.use_deterministic_algorithms`` would have.
    """
    import torch
    import torch._inductor.config as inductor_config

    inductor_config.deterministic = torch.are_deterministic_algorithms_enabled()
    return torch.compile(model)


def limit_threads(n: int) -> None:
    """Cap torch, OpenMP and BLAS thread pools at the job's ``threads``.

    Snakemake runs several jobs side by side on the cores it was given; if every job's
    torch/OpenMP/BLAS pool also spans all cores, the oversubscribed spin-waiting threads
    make each job several times slower than running on its share alone. The environment
    variables cover libraries imported later (torch reads them at import), threadpoolctl
    the BLAS already loaded, and ``set_num_threads`` a torch already imported.
    """
    import sys

    from threadpoolctl import threadpool_limits

    n = max(1, int(n))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    threadpool_limits(limits=n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
