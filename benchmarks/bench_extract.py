"""Teacher extraction throughput: our on-device path vs its ceiling vs a CLIP_benchmark pipeline.

Three ways to embed the same synthetic 32×32 uint8 images with the same random-init
teacher (CLIP ViT-B/32 via open_clip, DINOv2 ViT-B/14 via timm), in the same run:

* **ours** — :meth:`kdspectra.models.teachers.Teacher.embed`: uint8 batches to the device, resize
  (PIL's bicubic kernel), crop and normalise there, forward (bf16 autocast on CUDA), one
  copy of all embeddings back at the end.
* **bare** — the model forward alone on batches made, resized and normalised in advance on
  the device: the limit for that model on that machine. ours/bare is the share of the time
  that is not preprocessing or transfer overhead (target ≥ 0.9).
* **baseline** — CLIP_benchmark's pipeline: a ``Dataset`` that turns each image into a PIL
  image and applies the library's own eval transform, a ``DataLoader`` (4 workers and
  pinned memory on CUDA; in-process on CPU, where workers would only fight the model for
  the cores), the same forward, each batch's embeddings back to the host.

Throughput is images per second, the median over ``repeats`` passes over all images after
an untimed warm-up, timed in interleaved blocks (ours, bare, baseline, ours, …) so
background load on a shared machine hits all three alike. Quick mode on a CPU shrinks the
input (64 px CLIP, 56 px DINOv2, 32 images) to finish in about a minute on 2 cores; on
CUDA and in full mode the teachers run at the paper's 224 px, and on CUDA the rows add
GFLOPs per image and the model FLOP utilisation (MFU) against the card's dense bf16 peak.
Each row also reports how closely ours matches the baseline's embeddings
(‖ours − baseline‖ / ‖baseline − mean‖), so a speed-up can never hide a different result.

    PYTHONPATH=src python benchmarks/bench_extract.py [--full] [--device cuda]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from kdspectra.models.teachers import Teacher, build_teacher, preprocess_batch

if str(Path(__file__).resolve().parent) not in sys.path:  # benchmarks/common.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PILDataset, bench_main, count_flops, device_name, peak_tflops

TARGET_VS_BARE = 0.9


@dataclass(frozen=True)
class Case:
    """One teacher configuration to time."""

    label: str
    spec: dict[str, Any]
    num_images: int
    batch_size: int
    repeats: int


def cases(quick: bool, device: torch.device, smoke: bool = False) -> list[Case]:
    """Quick CPU: small inputs, 32 images; otherwise the paper's 224 px teachers. Smoke
    (CI): the same teachers on 4 tiny images, once; it checks the code path, not speed."""
    small = quick and device.type != "cuda"
    clip = {"library": "open_clip", "model": "ViT-B-32-quickgelu", "pretrained": None}
    dino = {"library": "timm", "model": "vit_base_patch14_dinov2.lvd142m", "pretrained": False}
    if smoke:
        sizes, n, batch, reps = (32, 28), 4, 4, 1
    elif small:
        sizes, n, batch, reps = (64, 56), 32, 16, 4
    elif device.type == "cuda":
        sizes, n, batch, reps = (224, 224), (4096 if quick else 16384), 256, (3 if quick else 5)
    else:
        sizes, n, batch, reps = (224, 224), 64, 32, 3
    specs = [("clip_vit_b32", clip, sizes[0]), ("dinov2_vitb14", dino, sizes[1])]
    return [
        Case(label, {**spec, "name": label, "image_size": size}, n, batch, reps)
        for label, spec, size in specs
    ]


def library_transform(teacher: Teacher) -> Callable:
    """The library's own eval transform for the teacher as built.

    open_clip: what ``create_model_and_transforms`` returns (built from the model's final
    preprocess config). timm: ``create_transform(**resolve_data_config(model=...))`` with the
    input size set to the built size (the config reports the checkpoint's 518 px for DINOv2).
    """
    if teacher.spec.library == "open_clip":
        from open_clip.transform import PreprocessCfg, image_transform_v2

        return image_transform_v2(PreprocessCfg(**teacher.model.preprocess_cfg), is_train=False)
    from timm.data import create_transform, resolve_data_config

    cfg = resolve_data_config(model=teacher.model)
    cfg["input_size"] = (3, teacher.image_size, teacher.image_size)
    return create_transform(**cfg)


def ours_path(teacher: Teacher, images: np.ndarray, batch_size: int) -> Callable[[], np.ndarray]:
    return lambda: teacher.embed(images, batch_size=batch_size, progress=False)


def bare_path(teacher: Teacher, images: np.ndarray, batch_size: int) -> Callable[[], np.ndarray]:
    """Model forward only, on device batches resized and normalised once, in advance."""
    dev = teacher.device
    batches = [
        preprocess_batch(torch.from_numpy(images[lo : lo + batch_size]).to(dev), teacher.preprocess)
        for lo in range(0, len(images), batch_size)
    ]

    def run() -> np.ndarray:
        with torch.inference_mode():
            out = torch.empty((len(images), teacher.dim), device=dev)
            row = 0
            for x in batches:
                out[row : row + len(x)] = teacher.encode_preprocessed(x)
                row += len(x)
            return out.cpu().numpy()

    return run


def baseline_path(
    teacher: Teacher, images: np.ndarray, batch_size: int
) -> Callable[[], np.ndarray]:
    """CLIP_benchmark style: PIL transform per image in a DataLoader, batched forward."""
    cuda = teacher.device.type == "cuda"
    loader = DataLoader(
        PILDataset(images, library_transform(teacher)),
        batch_size=batch_size,
        num_workers=4 if cuda else 0,
        persistent_workers=cuda,
        pin_memory=cuda,
    )

    def run() -> np.ndarray:
        out = []
        with torch.inference_mode():
            for x in loader:
                x = x.to(teacher.device, non_blocking=cuda)
                out.append(teacher.encode_preprocessed(x).cpu())
        return torch.cat(out).numpy()

    return run


def _rate(path: Callable[[], np.ndarray], n: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    emb = path()  # every path ends with a device→host copy, i.e. a synchronisation
    return n / (time.perf_counter() - start), emb


def gflops_per_image(teacher: Teacher) -> float:
    """Forward GFLOPs of one image at the teacher's input size, counted by torch."""
    x = torch.zeros(1, 3, teacher.image_size, teacher.image_size, device=teacher.device)
    with torch.inference_mode():
        return count_flops(lambda: teacher.encode_preprocessed(x)) / 1e9


def measure(case: Case, device: torch.device) -> dict[str, Any]:
    """Median images/s of ours, bare and baseline, and how closely ours matches baseline."""
    images = np.random.default_rng(0).integers(0, 256, (case.num_images, 32, 32, 3), np.uint8)
    teacher = build_teacher(case.spec, device=device)
    paths = {
        "ours": ours_path(teacher, images, case.batch_size),
        "bare": bare_path(teacher, images, case.batch_size),
        "baseline": baseline_path(teacher, images, case.batch_size),
    }
    outputs = {name: _rate(path, len(images))[1] for name, path in paths.items()}  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(case.repeats):
        for name, path in paths.items():
            rates[name].append(_rate(path, len(images))[0])
    theirs = outputs["baseline"]
    rel = np.linalg.norm(outputs["ours"] - theirs) / np.linalg.norm(theirs - theirs.mean(0))
    return {
        "rates": {name: statistics.median(r) for name, r in rates.items()},
        "rel_error_vs_baseline": float(rel),
        "teacher": teacher,
    }


def _rows(case: Case, result: dict[str, Any], device: torch.device) -> list[dict]:
    teacher: Teacher = result["teacher"]
    r = result["rates"]
    common: dict[str, Any] = {
        "unit": "images/s",
        "repeats": case.repeats,
        "device": device_name(device),
        "image_size": teacher.image_size,
        "batch_size": case.batch_size,
        "images": case.num_images,
    }
    extra: dict[str, Any] = {}
    peak = peak_tflops(device)[0]
    if device.type == "cuda":
        gflops = gflops_per_image(teacher)
        extra = {"gflops_per_image": round(gflops, 2)}
        if peak:
            extra["mfu"] = round(r["ours"] * gflops * 1e9 / (peak * 1e12), 3)
    tag = f"extract_{case.label}_{teacher.image_size}px"
    return [
        {
            "name": f"{tag}_vs_pil_dataloader",
            "ours": round(r["ours"], 1),
            "baseline": round(r["baseline"], 1),
            "ratio": round(r["ours"] / r["baseline"], 3),
            "rel_error_vs_baseline": round(result["rel_error_vs_baseline"], 4),
            **common,
            **extra,
        },
        {
            "name": f"{tag}_vs_bare_forward",
            "ours": round(r["ours"], 1),
            "baseline": round(r["bare"], 1),
            "ratio": round(r["ours"] / r["bare"], 3),
            "target_ratio": TARGET_VS_BARE,
            **common,
        },
    ]


def run(*, quick: bool = True, device: str = "cpu", smoke: bool = False) -> list[dict]:
    """Two rows per teacher: ours vs the PIL/DataLoader baseline, and ours vs the bare forward."""
    dev = torch.device(device)
    rows: list[dict] = []
    for case in cases(quick, dev, smoke):
        rows.extend(_rows(case, measure(case, dev), dev))
    return rows


def main() -> None:
    bench_main(run, __doc__, "224 px teachers, more images")


if __name__ == "__main__":
    main()
