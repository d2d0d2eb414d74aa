"""What the benchmark scripts share, defined once: peak table, FLOP counter, machine block.

Every script reports throughput against a naive baseline or the card's peak; if each kept
its own peak table, FLOP counter or machine description, two reports from the same run
could disagree (they did: one table knew the H100 NVL, the other read it as an SXM card).
The library does not need any of this, so it lives beside the scripts, not in ``src/``.

Scripts import it as ``common`` once their first lines have put ``benchmarks/`` (and
``src/``) on ``sys.path``: they are run as files, by ``make bench`` and by the tests (which
load them by path), never installed as a package.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import platform
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from kdspectra.report.provenance import cpu_model, git_commit

ROOT = Path(__file__).resolve().parents[1]

# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) by substring of the CUDA device name,
# most specific first: "NVIDIA H100 80GB HBM3" is the SXM card, PCIe and NVL say so.
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("RTX 4090", 165.0),
)


def peak_tflops(device: torch.device, override: float | None = None) -> tuple[float | None, str]:
    """The card's dense bf16 peak (TFLOP/s) and where the number came from.

    None on a CPU or an unknown card: MFU is then not reported rather than guessed.
    """
    if override is not None:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "no peak for a CPU (MFU not reported)"
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16_TFLOPS:
        if key in name:
            return peak, f"table entry '{key}' for {name}"
    return None, f"{name} is not in the table; pass --peak-tflops"


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call, as torch's FlopCounterMode counts them (matmuls, convs, attention).

    nn.MultiheadAttention's inference fast path (open_clip) is one fused op the counter
    cannot see into (5.9 instead of 8.7 GFLOPs for ViT-B/32 at 224 px), so it is switched
    off while counting.
    """
    from torch.utils.flop_counter import FlopCounterMode

    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return float(counter.get_total_flops())


def sync(device: torch.device) -> None:
    """Wait for the device, so a wall-clock timing counts GPU work where it happens."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The card's name, or the CPU with its torch thread count (a CPU row's context)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def machine(device: str | torch.device) -> dict[str, Any]:
    """Where the numbers were measured: what makes a figure comparable with a later one."""
    dev = torch.device(device)
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": len(_affinity()),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": git_commit(ROOT),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
    }


def _affinity() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


class PILDataset(Dataset):
    """The naive baseline's data: each uint8 image becomes a PIL image, then the transform.

    ``views`` transform passes per image (two for the distillation's two views); with
    ``with_index`` the item starts with its row, as a training loop needs to find the
    teacher's embedding. One view without index gives a bare tensor, as an eval pipeline.
    """

    def __init__(
        self, images: np.ndarray, transform: Callable, views: int = 1, with_index: bool = False
    ) -> None:
        self.images, self.transform = images, transform
        self.views, self.with_index = views, with_index

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        img = Image.fromarray(self.images[i])
        out = tuple(self.transform(img) for _ in range(self.views))
        out = (i, *out) if self.with_index else out
        return out[0] if len(out) == 1 else out


def train_batches(run: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Generator]]:
    """The training loop's own batches, epoch after epoch, without end: (rows, images, RNG).

    For timing a fixed number of steps across epoch boundaries with the loop's data path.
    """
    for epoch in itertools.count():
        gen = run.loader.generator(epoch)
        for idx, x in run.loader.batches(epoch):
            yield idx, x, gen


def bench_main(
    run: Callable[..., list[dict]], doc: str, full_help: str, *, threads: bool = False
) -> None:
    """The command line of a ``bench_*.py`` module: ``--full``, ``--device`` (and
    ``--threads``), then its rows as JSON on stdout, as ``run_all.py`` collects them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--full", action="store_true", help=full_help)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, once (CI: seconds)")
    if threads:
        parser.add_argument("--threads", type=int, help="torch intra-op threads")
    args = parser.parse_args()
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    print(json.dumps(run(quick=not args.full, device=args.device, smoke=args.smoke), indent=2))
