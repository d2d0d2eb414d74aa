"""Training-data throughput: DeviceLoader + batched ``augment`` vs a naive torchvision pipeline.

Distilling small students on 32×32 images is data-bound when every sample goes through PIL
in a worker process. This benchmark measures both pipelines producing the same thing, two
independently augmented views per image (random crop with 4-px zero padding + horizontal
flip; the ``colour`` case adds colour jitter and random grayscale as for InfoNCE), in
batches of 512, on the same synthetic uint8 data in the same run. Throughput is images per
second (each image yielding two views), the median over several timings taken alternately
after one warm-up epoch each (so DataLoader worker start-up is excluded, which favours the
baseline).

    PYTHONPATH=src python benchmarks/bench_loader.py [--full] [--device cuda]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader

from kdspectra.data.views import DeviceLoader, augment

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/common.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PILDataset, bench_main, sync

BATCH = 512
JITTER, GRAYSCALE_P, PADDING = 0.4, 0.2, 4
OURS_EPOCHS = 4  # epochs per timing of ours (one takes milliseconds)


def baseline_transform(colour: bool) -> Callable:
    """torchvision's usual CIFAR recipe; the colour ops match ``augment(colour=True)``."""
    ops: list[Callable] = [T.RandomCrop(32, padding=PADDING), T.RandomHorizontalFlip()]
    if colour:
        ops += [T.ColorJitter(JITTER, JITTER, JITTER), T.RandomGrayscale(GRAYSCALE_P)]
    return T.Compose([*ops, T.ToTensor()])


def rate(epoch: Callable[[int], int], epochs: range, sync: Callable[[], None]) -> float:
    """Images per second over the given epochs."""
    start, n = time.perf_counter(), 0
    for e in epochs:
        n += epoch(e)
    sync()
    return n / (time.perf_counter() - start)


def compare(
    ours: Callable[[int], int],
    baseline: Callable[[int], int],
    repeats: int,
    sync: Callable[[], None],
) -> tuple[float, float]:
    """Median images/s of both pipelines, timed alternately after one warm-up epoch each.

    Alternating the two makes a load spike from other processes hit both sides alike. Each
    of our timings covers several epochs because one of ours takes only milliseconds.
    """
    ours(0)
    baseline(0)  # starts the persistent workers
    sync()
    ours_rates, base_rates = [], []
    for r in range(repeats):
        ours_rates.append(rate(ours, range(1 + r * OURS_EPOCHS, 1 + (r + 1) * OURS_EPOCHS), sync))
        base_rates.append(rate(baseline, range(1 + r, 2 + r), sync))
    return statistics.median(ours_rates), statistics.median(base_rates)


def ours_epoch(images: np.ndarray, device: torch.device, colour: bool) -> Callable[[int], int]:
    """One epoch of the device loader: two augmented views per batch."""
    loader = DeviceLoader(images, batch_size=BATCH, device=device, seed=0)

    def epoch(e: int) -> int:
        gen, n = loader.generator(e), 0
        for _, batch in loader.batches(e):
            kwargs = {"colour": colour, "jitter": JITTER, "grayscale_p": GRAYSCALE_P}
            views = [
                augment(batch, gen, crop_padding=PADDING, padding_mode="zeros", **kwargs)
                for _ in range(2)
            ]
            n += len(views[0])
        return n

    return epoch


def baseline_epoch(images: np.ndarray, device: torch.device, colour: bool) -> Callable:
    """One epoch of DataLoader(num_workers=2) over the PIL dataset, batches moved to device."""
    loader = DataLoader(
        PILDataset(images, baseline_transform(colour), views=2),
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=2,
        persistent_workers=True,
        pin_memory=device.type == "cuda",
    )

    def epoch(e: int) -> int:
        n = 0
        for v1, v2 in loader:
            v1, v2 = v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)
            n += len(v1)
        return n

    return epoch


def run(*, quick: bool = True, device: str = "cpu", smoke: bool = False) -> list[dict]:
    """Both pipelines on the same data, same machine, same run; one row per view recipe.
    ``smoke`` (CI): 2 batches once, to check the code path, not the speed."""
    dev = torch.device(device)
    n_images, repeats = (2 * BATCH, 1) if smoke else (1024, 3) if quick else (10240, 5)
    images = np.random.default_rng(0).integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
    results = []
    for name, colour in (("two_views_crop_flip", False), ("two_views_crop_flip_colour", True)):
        ours, baseline = compare(
            ours_epoch(images, dev, colour),
            baseline_epoch(images, dev, colour),
            repeats,
            lambda: sync(dev),
        )
        results.append(
            {
                "name": f"loader_{name}_b{BATCH}",
                "unit": "images/s",
                "ours": round(ours, 1),
                "baseline": round(baseline, 1),
                "ratio": round(ours / baseline, 2),
                "repeats": repeats,
            }
        )
    return results


def main() -> None:
    bench_main(run, __doc__, "10k images, 5 repeats")


if __name__ == "__main__":
    main()
