"""Device resolution and per-job thread caps; non-torch jobs must not pay for torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from kdspectra.errors import ConfigError, DeviceError
from kdspectra.runtime.device import (
    FALLBACK_ENV,
    compile_model,
    device_record,
    gpu_allocated,
    limit_threads,
    resolve_device,
    set_deterministic,
)

GPU_ENV = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", FALLBACK_ENV)


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A machine whose CUDA does not work, with no GPU variables set."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for var in GPU_ENV:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


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


@pytest.mark.parametrize(("var", "value"), [("CUDA_VISIBLE_DEVICES", "0"), ("SLURM_JOB_GPUS", "3")])
def test_auto_inside_a_gpu_allocation_without_cuda_fails(no_cuda, var: str, value: str) -> None:
    """`--gpus=1` on a node whose CUDA is broken must not quietly train on the CPU."""
    no_cuda.setenv(var, value)
    with pytest.raises(DeviceError, match=rf"'device'.*{var}='{value}'.*{FALLBACK_ENV}=1"):
        resolve_device("auto")


@pytest.mark.parametrize("value", ["", "-1", "NoDevFiles"])
def test_auto_falls_back_when_the_job_was_given_no_gpu(no_cuda, value: str) -> None:
    no_cuda.setenv("CUDA_VISIBLE_DEVICES", value)
    assert gpu_allocated() is None
    assert resolve_device("auto") == torch.device("cpu")


def test_cpu_fallback_opt_out(no_cuda) -> None:
    no_cuda.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert resolve_device("auto", allow_cpu_fallback=True) == torch.device("cpu")
    no_cuda.setenv(FALLBACK_ENV, "1")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(DeviceError):  # the argument wins over the environment
        resolve_device("auto", allow_cpu_fallback=False)


def test_cpu_is_never_checked_against_the_allocation(no_cuda) -> None:
    no_cuda.setenv("SLURM_JOB_GPUS", "0")
    assert resolve_device("cpu") == torch.device("cpu")


def test_device_record_names_the_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.delenv("SLURM_JOB_GPUS", raising=False)
    record = device_record(torch.device("cpu"))
    assert record == {"device": "cpu", "cuda_visible_devices": "1", "slurm_job_gpus": None}


def test_set_deterministic_switches_kernels_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark


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
        "from kdspectra.runtime.logs import job\n"
        "from kdspectra.stages import measure_model, collect\n"
        "with job(None, 1):\n"
        "    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_set_deterministic_leaves_inductor_unloaded() -> None:
    """The switch is the C call alone: importing Inductor costs every torch job seconds."""
    code = (
        "import sys, torch\n"
        "from kdspectra.runtime.device import set_deterministic\n"
        "set_deterministic(True)\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "assert not torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "print('torch._inductor' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compile_model_carries_the_switch_into_inductor() -> None:
    import torch._inductor.config as inductor_config

    try:
        set_deterministic(True)
        inductor_config.deterministic = False
        compile_model(torch.nn.Linear(2, 2))  # compiles lazily, at the first call
        assert inductor_config.deterministic is True
        set_deterministic(False)
        assert inductor_config.deterministic is False  # loaded now: kept in step
    finally:
        set_deterministic(False)
