"""Device resolution and per-job thread caps; non-torch jobs must not pay for torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from kdspectra.device import limit_threads, resolve_device
from kdspectra.errors import ConfigError


def test_cpu_and_auto_resolve() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_unknown_device_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"'device'.*'tpu'"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"cuda.*'auto' or 'cpu'"):
        resolve_device("cuda")


def test_limit_threads_caps_torch_blas_and_env(monkeypatch) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    with threadpool_limits():  # restores the BLAS pools afterwards
        try:
            limit_threads(1)
            assert torch.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info())
            assert os.environ["OMP_NUM_THREADS"] == "1"
        finally:
            torch.set_num_threads(before)


def test_a_non_torch_job_never_imports_torch() -> None:
    """Spectrum/noise/collect/table jobs start in ~1 s instead of ~4 s without torch."""
    code = (
        "import sys\n"
        "from kdspectra.logs import job\n"
        "from kdspectra.stages import spectrum, noise, collect\n"
        "with job(None, 1):\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
