"""Distillation training throughput: our loop vs its own ceiling vs a naive torchvision loop.

Three ways to run the same ``cosine_infonce`` step (two augmented views per image, same
student, same loss, same AdamW) on the same synthetic data, in the same run:

* **ours** — the real loop (:func:`kdspectra.training.loop.train_step`): the split lives on the
  device, each batch is gathered and augmented there (crop, flip, colour jitter,
  grayscale), then forward/backward/step (bf16 + channels_last on CUDA).
* **bare** — :func:`kdspectra.training.loop.optimize_step` on views made once in advance: the
  model step alone, the ceiling for that model on that machine. ours/bare is the share of
  a step that is *not* data, augmentation or loss overhead (target ≥ 0.85).
* **baseline** — the textbook pipeline: a ``Dataset`` that turns each uint8 image into a
  PIL image and applies torchvision transforms twice (RandomCrop(32, 4, reflect),
  RandomHorizontalFlip, ColorJitter, RandomGrayscale, ToTensor), a ``DataLoader`` with
  2 workers, an fp32 model and a plain AdamW.

Throughput is images per second (each image yields two views), the median over
``repeats`` timed rounds of ``steps`` steps each, after untimed warm-up steps; ours and
bare alternate step by step on a CPU (see :func:`measure`) so background load on a shared
machine hits both alike. On a CPU the model dominates, so ours/baseline is modest; on a
GPU it is where the device-resident loader pays.

    PYTHONPATH=src python benchmarks/bench_train.py [--full] [--device cuda]
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader

from kdspectra.models.students import build_student
from kdspectra.training.config import TrainConfig
from kdspectra.training.loop import TrainRun, build_run, make_views, optimize_step, train_step
from kdspectra.training.losses import cosine_distillation, info_nce

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/common.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PILDataset, bench_main, device_name, sync, train_batches

EMBED_DIM = 512  # CLIP ViT-B/32's width, as in the paper's Table I
WORKERS = 2
PREFETCH = 2  # DataLoader's default prefetch_factor


@dataclass(frozen=True)
class Case:
    """One benchmark configuration."""

    student: str
    width_mult: float
    batch_size: int
    steps: int
    warmup: int
    repeats: int
    num_images: int


def cases(quick: bool, device: torch.device, smoke: bool = False) -> list[Case]:
    """Quick: shrunken cnn_s/cnn_m on a CPU in about a minute; full: the paper's students.
    Smoke (CI): a tiny cnn_s, two steps, once; it checks the code path, not speed."""
    if smoke:
        return [Case("cnn_s", 0.125, 16, 2, 1, 1, 64)]
    if quick:
        return [Case(s, 0.25, 128, 4, 1, 3, 1024) for s in ("cnn_s", "cnn_m")]
    batch = 512 if device.type == "cuda" else 256
    steps = 50 if device.type == "cuda" else 10
    return [Case(s, 1.0, batch, steps, 10, 5, 20 * batch) for s in ("cnn_s", "cnn_m", "cnn_l")]


def baseline_transform(cfg: TrainConfig) -> Callable:
    """torchvision's recipe with the same parameters as ``augment(colour=True)``."""
    j = cfg.jitter
    return T.Compose(
        [
            T.RandomCrop(32, padding=cfg.crop_padding, padding_mode="reflect"),
            T.RandomHorizontalFlip(),
            T.ColorJitter(j, j, j),
            T.RandomGrayscale(cfg.grayscale_p),
            T.ToTensor(),
        ]
    )


def _forever(loader: DataLoader) -> Iterator:
    for _ in itertools.count():
        yield from loader


def baseline_step(
    case: Case, cfg: TrainConfig, images: np.ndarray, teacher: torch.Tensor, device: torch.device
) -> tuple[Callable[[], int], Callable[[], None]]:
    """The naive loop: DataLoader batches to the device, fp32 forward/backward/AdamW.

    Returns ``(step, drain)``: ``drain`` throws away the batches the workers prefetched
    while other pipelines were being timed, so a timed block sees the workers produce
    its data live (the steady state of a real training run), not a pre-filled queue.
    """
    torch.manual_seed(0)
    model = build_student(case.student, EMBED_DIM, width_mult=case.width_mult).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loader = DataLoader(
        PILDataset(images, baseline_transform(cfg), views=2, with_index=True),
        batch_size=case.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=WORKERS,
        prefetch_factor=PREFETCH,
        persistent_workers=True,
        pin_memory=device.type == "cuda",
    )
    stream = _forever(loader)

    def step() -> int:
        idx, v1, v2 = next(stream)
        views = torch.cat([v1, v2]).to(device, non_blocking=True)
        s1, s2 = model(views).chunk(2)
        t = teacher[idx.to(device)]
        loss_cos = 0.5 * (cosine_distillation(s1, t) + cosine_distillation(s2, t))
        loss = loss_cos + cfg.infonce_weight * info_nce(s1, s2, cfg.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(idx)

    def drain() -> None:
        for _ in range(WORKERS * PREFETCH):
            next(stream)

    return step, drain


def ours_steps(run: TrainRun) -> tuple[Callable[[], int], Callable[[], int]]:
    """(full step from the device loader, bare model step on pre-made views)."""

    batches = train_batches(run)
    idx0, x0, gen0 = next(batches)
    views0, teacher0 = make_views(run, idx0, x0, gen0)

    def full() -> int:
        idx, x, gen = next(batches)
        train_step(run, idx, x, gen)
        return len(idx)

    def bare() -> int:
        optimize_step(run, views0, teacher0)
        return len(idx0)

    return full, bare


class _Timer:
    """Accumulated images and seconds of one pipeline over many timed chunks."""

    def __init__(self, step: Callable[[], int], sync: Callable[[], None]) -> None:
        self.step, self.sync = step, sync
        self.images, self.seconds = 0, 0.0
        self.chunks: list[float] = []  # seconds of every timed chunk, for paired ratios

    def run(self, steps: int) -> None:
        self.sync()
        start = time.perf_counter()
        for _ in range(steps):
            self.images += self.step()
        self.sync()
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        self.chunks.append(elapsed)

    def take(self) -> float:
        """Images/s since the last ``take`` (then reset)."""
        rate = self.images / self.seconds
        self.images, self.seconds = 0, 0.0
        return rate


def _make_run(case: Case, device: torch.device) -> tuple[TrainRun, TrainConfig, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (case.num_images, 32, 32, 3), dtype=np.uint8)
    teacher = rng.standard_normal((case.num_images, EMBED_DIM)).astype(np.float32)
    cfg = TrainConfig(
        objective="cosine_infonce",
        epochs=1000,  # only shapes the LR schedule; the benchmark never finishes an epoch plan
        batch_size=case.batch_size,
        lr=1e-3,
        width_mult=case.width_mult,
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(case.student, images, teacher, cfg, device, Path(tmp) / "unused.pt")
    run.model.train()
    return run, cfg, images


def measure(case: Case, device: torch.device) -> dict[str, float]:
    """Median images/s of ours, bare and baseline for one case.

    On a CPU, ours and bare alternate step by step, so background load on a shared
    machine hits both alike and their ratio is stable; on a GPU they alternate in blocks
    of ``steps`` (a sync per step would hide the CPU/GPU overlap a real run has). The
    baseline is timed in blocks after draining its prefetch queue. ``ours_over_bare`` is
    the median over adjacent (ours, bare) chunk pairs of their time ratio.
    """
    run, cfg, images = _make_run(case, device)
    full, bare = ours_steps(run)
    base_step, drain = baseline_step(case, cfg, images, run.teacher, device)
    timers = {name: _Timer(f, lambda: sync(device)) for name, f in (("ours", full), ("bare", bare))}
    baseline = _Timer(base_step, lambda: sync(device))
    for timer in (*timers.values(), baseline):
        timer.run(case.warmup)
        timer.take()
        timer.chunks.clear()
    chunk = case.steps if device.type == "cuda" else 1
    rates: dict[str, list[float]] = {"ours": [], "bare": [], "baseline": []}
    for _ in range(case.repeats):
        for _ in range(case.steps // chunk):
            for timer in timers.values():
                timer.run(chunk)
        drain()
        baseline.run(case.steps)
        for name, timer in (*timers.items(), ("baseline", baseline)):
            rates[name].append(timer.take())
    result = {name: statistics.median(r) for name, r in rates.items()}
    # Same images per chunk, so bare/ours time = ours/bare rate; pairing adjacent chunks
    # cancels load that drifts over the run.
    pairs = zip(timers["ours"].chunks, timers["bare"].chunks, strict=True)
    result["ours_over_bare"] = statistics.median(b / o for o, b in pairs)
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def run(*, quick: bool = True, device: str = "cpu", smoke: bool = False) -> list[dict]:
    """Two rows per student: ours vs the torchvision baseline, and ours vs the bare step.

    ``ratio`` is ours/baseline of the median rates, except for the bare-step row, where it
    is the median of paired step-time ratios (robust to load on a shared machine).
    """
    dev = torch.device(device)
    results = []
    for case in cases(quick, dev, smoke):
        r = measure(case, dev)
        common = {
            "unit": "images/s",
            "repeats": case.repeats,
            "device": device_name(dev),
            "width_mult": case.width_mult,
            "batch_size": case.batch_size,
            "steps": case.steps,
        }
        tag = f"train_{case.student}_w{case.width_mult:g}_cosine_infonce_b{case.batch_size}"
        for baseline in ("baseline", "bare"):
            target = {"bare": 0.85}.get(baseline)
            results.append(
                {
                    "name": f"{tag}_vs_{'torchvision' if baseline == 'baseline' else 'bare_step'}",
                    "ours": round(r["ours"], 1),
                    "baseline": round(r[baseline], 1),
                    "ratio": round(
                        r["ours_over_bare"] if baseline == "bare" else r["ours"] / r[baseline], 3
                    ),
                    **common,
                    **({"target_ratio": target} if target else {}),
                }
            )
    return results


def main() -> None:
    bench_main(run, __doc__, "paper-size cnn_s/m/l, more steps", threads=True)


if __name__ == "__main__":
    main()
