"""Cost of tracking geometry during training (``training.track_every``): ≤ 5 % of a run.

Tracking embeds a fixed subset of ``track_samples`` train images (eval mode, fp32) at each
tracked epoch and computes ER, L2 ER, RankMe, uniformity and the cosine to the teacher
(:mod:`kdspectra.training.tracking`). What it adds to a run is therefore

    overhead = points × t_track / (epochs × t_epoch),

with ``points`` the tracked epochs (:func:`kdspectra.training.tracking.tracked_epochs`). Both
times are measured here, in the same process and alternately (so load from other
processes hits both alike): ``t_track`` = the median of full tracking passes
(:func:`kdspectra.training.tracking.measure` on the run's own subset), ``t_epoch`` = the median
time of one training step (:func:`kdspectra.training.loop.train_step`, the loop's data path)
× the steps of one epoch at the case's N. Timing whole epochs of the paper config
(50,000 images at batch 512) on a CPU would take hours; a step's time does not depend on
N, so the extrapolation is exact up to the per-epoch bookkeeping, which tracking does
not change.

Cases: the demo's students as ``config/demo.yaml`` trains them (digits: 1,437 train
images, batch 32, width 0.25, 4 epochs, tracked every epoch on 256 images) and the paper config's
(CIFAR: 50,000 images, batch 512, width 1, 30 epochs, ``track_every: null`` → every 6th
epoch, 5 points). Rows: ``ours`` = the run's images/s with tracking (training time plus
tracking time), ``baseline`` = without, ``ratio`` = ours/baseline, target ≥ 1/1.05.

    PYTHONPATH=src python benchmarks/bench_tracking.py [--full] [--device cuda]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from kdspectra.runtime.device import limit_threads
from kdspectra.training.config import TrainConfig
from kdspectra.training.loop import TrainRun, build_run, train_step
from kdspectra.training.tracking import measure, resolve_track_every, tracked_epochs

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/common.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, bench_main, device_name, sync, train_batches

EMBED_DIM = 512  # CLIP ViT-B/32's width: the demo's and Table I's teacher
TARGET = round(1 / 1.05, 3)  # tracking may slow a run by at most 5 %
DIGITS_TRAIN = 1437  # sklearn digits' train split (1,797 images, 360 held out for test)
CIFAR_TRAIN = 50_000


@dataclass(frozen=True)
class Case:
    """One training configuration whose tracking overhead is measured."""

    label: str
    student: str
    width_mult: float
    batch_size: int
    epochs: int
    track_every: int | None
    track_samples: int
    num_images: int  # the real train split's size (steps per epoch)
    steps: int  # timed training steps per round
    repeats: int


def demo_case(student: str, steps: int, repeats: int) -> Case:
    """The demo config's settings for ``student`` (read from config/demo.yaml)."""
    t = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["training"]
    return Case(
        "demo", student, float(t["width_mult"]), int(t["batch_size"]), int(t["epochs"]),
        t.get("track_every"), int(t.get("track_samples", 2048)), DIGITS_TRAIN, steps, repeats,
    )  # fmt: skip


def paper_case(student: str, steps: int, repeats: int) -> Case:
    """The paper config's settings (config.yaml: batch 512, 30 epochs, width 1)."""
    t = yaml.safe_load((ROOT / "config.yaml").read_text()).get("training", {})
    return Case(
        "paper", student, 1.0, int(t.get("batch_size", 512)), int(t.get("epochs", 30)),
        t.get("track_every"), int(t.get("track_samples", 2048)), CIFAR_TRAIN, steps, repeats,
    )  # fmt: skip


def cases(quick: bool, smoke: bool = False) -> list[Case]:
    """Quick: the demo's cnn_s and cnn_l, the paper's cnn_s; full: every CNN student.
    Smoke (CI): the demo's cnn_s, one step, once; it checks the code path, not speed."""
    if smoke:
        return [demo_case("cnn_s", 1, 1)]
    if quick:
        return [demo_case("cnn_s", 8, 3), demo_case("cnn_l", 8, 3), paper_case("cnn_s", 2, 3)]
    students = ("cnn_s", "cnn_m", "cnn_l")
    return [demo_case(s, 20, 5) for s in students] + [paper_case(s, 4, 5) for s in students]


def _make_run(case: Case, device: torch.device) -> TrainRun:
    """A real run (model, optimizer, loader, tracked subset) on synthetic data big enough
    for the timed steps and the tracked subset."""
    n = min(case.num_images, max(case.track_samples, case.batch_size * case.steps))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    teacher = rng.standard_normal((n, EMBED_DIM)).astype(np.float32)
    cfg = TrainConfig(
        objective="cosine_infonce",
        epochs=case.epochs,
        batch_size=case.batch_size,
        lr=1e-3,
        width_mult=case.width_mult,
        track_every=case.track_every,
        track_samples=case.track_samples,
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(case.student, images, teacher, cfg, device, Path(tmp) / "unused.pt")
    run.model.train()
    return run


def measure_case(case: Case, device: torch.device) -> dict[str, float]:
    """Median step and tracking times, alternated round by round, after a warm-up."""
    run = _make_run(case, device)
    batches = train_batches(run)

    def steps(k: int) -> float:
        t0 = time.perf_counter()
        for _ in range(k):
            train_step(run, *next(batches))
        sync(device)
        return (time.perf_counter() - t0) / k

    def track() -> float:
        assert run.track is not None
        t0 = time.perf_counter()
        measure(run.model, run.track, device)
        sync(device)
        return time.perf_counter() - t0

    steps(1), track()  # warm-up: allocator, oneDNN primitive caches
    step_s, track_s = [], []
    for _ in range(case.repeats):
        step_s.append(steps(case.steps))
        track_s.append(track())
    return {"step_s": statistics.median(step_s), "track_s": statistics.median(track_s)}


def run(*, quick: bool = True, device: str = "cpu", smoke: bool = False) -> list[dict]:
    """One row per case: a run's throughput with tracking vs without (extrapolated)."""
    dev = torch.device(device)
    # BLAS (the metrics' SVDs) on as many threads as torch, as a pipeline job has
    # (kdspectra.runtime.logs.job): an uncapped OpenBLAS pool spin-waits on a loaded machine and
    # made one 1,437 × 512 SVD 20× slower here.
    limit_threads(torch.get_num_threads())
    rows = []
    for case in cases(quick, smoke):
        r = measure_case(case, dev)
        every = resolve_track_every(case.track_every, case.epochs)
        points = len(tracked_epochs(every, case.epochs))
        steps_per_epoch = case.num_images // case.batch_size  # the loader drops the last
        train_s = case.epochs * steps_per_epoch * r["step_s"]
        track_s = points * r["track_s"]
        images = case.epochs * steps_per_epoch * case.batch_size
        rows.append(
            {
                "name": f"tracking_{case.label}_{case.student}_w{case.width_mult:g}"
                f"_b{case.batch_size}_{points}pts",
                "unit": "images/s",
                "ours": round(images / (train_s + track_s), 1),
                "baseline": round(images / train_s, 1),
                "ratio": round(train_s / (train_s + track_s), 4),
                "target_ratio": TARGET,
                "overhead_pct": round(100 * track_s / train_s, 2),
                "track_s_per_point": round(r["track_s"], 3),
                "epoch_s": round(steps_per_epoch * r["step_s"], 2),
                "tracked_epochs": points,
                "epochs": case.epochs,
                "track_samples": min(case.track_samples, case.num_images),
                "repeats": case.repeats,
                "device": device_name(dev),
            }
        )
    return rows


def main() -> None:
    bench_main(run, __doc__, "every CNN student, more steps", threads=True)


if __name__ == "__main__":
    main()
