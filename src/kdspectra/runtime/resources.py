"""Memory and wall-time requests of the workflow's jobs, derived from the work they hold.

A scheduler kills a job that exceeds its request and cannot start one that asks for more
than a node has, so fixed requests are wrong both ways: the 24 GB that the paper's
teacher extraction was once given made the offline demo (1,797 digit images, a
random-init ViT) unschedulable on a 16 GB node, while it needs well under 2 GB. Each
function here adds up what a job keeps in host memory: the interpreter and its
libraries, the model, the arrays it loads (Snakemake's ``input.size_mb``), the arrays
it writes, and, on the CPU, the activations of one batch. Runtimes divide the job's
floating-point work by a conservative throughput. Every request grows linearly with
Snakemake's ``attempt`` (1 on the first try, 2 on the first retry, ...), as the
snakemake-workflows catalog does, so a job killed for memory or time asks for more
when ``--retries`` resubmits it.

The constants were measured on the offline demo (``docs/architecture.md``, "Resource
requests"); the formulas are deliberately simple and round up. This module imports
nothing heavy: Snakemake evaluates it for every job while it builds the DAG.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Resident memory of a job before it holds any data, rounded up from the benchmark files'
# max_rss of the demo's jobs on a 2-core CPU VM (docs/architecture.md): noise and
# spectrum jobs peak at ~220 MB, training jobs at 860-1140 MB with their (small) data.
PYTHON_MB = 400  # interpreter + numpy, pandas, pyarrow, scikit-learn: spectrum, noise
TORCH_MB = 1000  # + torch, timm, open_clip imported and their thread pools started
CUDA_HOST_MB = 3000  # host side of a CUDA context with cuBLAS/cuDNN loaded
# Bytes of one prepared image (uint8 32x32x3) and its int64 label.
IMAGE_BYTES = 32 * 32 * 3 + 8
# Conservative sustained fp32 throughput, GFLOP/s: one CPU thread, one GPU.
CPU_GFLOPS_PER_THREAD = 10.0
GPU_GFLOPS = 10_000.0
# Training FLOPs of one 32x32 image through the widest student at width_mult 1 (forward
# and backward, both views), and its activation memory per image of a batch.
STUDENT_GFLOP_PER_IMAGE = 3.0
STUDENT_ACTIVATION_MB_PER_IMAGE = 2.0
# Wall time every job pays regardless of its work: scheduling, start-up, writing.
OVERHEAD_MIN = 10


@dataclass(frozen=True)
class VitShape:
    """The numbers of a ViT that decide a teacher job's memory and FLOPs."""

    params_m: float  # millions of parameters
    width: int
    heads: int
    patch: int


# ViT sizes by the letter or word their names use (open_clip: ViT-B-32; timm:
# vit_base_patch14_dinov2). Unknown names get the largest: asking too much delays a
# job, asking too little kills it.
_SIZES = {
    "tiny": (5.7, 192, 3),
    "s": (22.0, 384, 6),
    "small": (22.0, 384, 6),
    "b": (88.0, 768, 12),
    "base": (88.0, 768, 12),
    "l": (304.0, 1024, 16),
    "large": (304.0, 1024, 16),
    "h": (632.0, 1280, 16),
    "huge": (632.0, 1280, 16),
    "g": (1100.0, 1536, 24),
    "giant": (1100.0, 1536, 24),
}
_SIZE_RE = re.compile(r"vit[-_](tiny|small|base|large|huge|giant|bigg|s|b|l|h|g)(?![a-z])", re.I)
_PATCH_RE = re.compile(r"(?:vit[-_][a-z]+[-_]|patch)(\d+)", re.I)


def vit_shape(model: str) -> VitShape:
    """Parameters, width, heads and patch size of a ViT, read from its model name.

    >>> vit_shape("ViT-B-32-quickgelu")
    VitShape(params_m=88.0, width=768, heads=12, patch=32)
    """
    size = _SIZE_RE.search(model)
    key = size.group(1).lower() if size else "giant"
    params_m, width, heads = _SIZES.get(key, _SIZES["giant"])
    patch = _PATCH_RE.search(model)
    return VitShape(params_m, width, heads, int(patch.group(1)) if patch else 14)


def images_in(input_mb: float) -> int:
    """How many prepared images ``input_mb`` of uint8 arrays and labels hold."""
    return math.ceil(input_mb * 1e6 / IMAGE_BYTES)


def _grow(value: float, attempt: int) -> int:
    return math.ceil(value * max(1, int(attempt)))


def _gflops(threads: int, gpu: bool) -> float:
    return GPU_GFLOPS if gpu else CPU_GFLOPS_PER_THREAD * max(1, int(threads))


def _base_mb(gpu: bool) -> float:
    return TORCH_MB + (CUDA_HOST_MB if gpu else 0)


def teacher_mem_mb(
    input_mb: float,
    *,
    model: str,
    image_size: int,
    batch_size: int,
    passes: int = 1,
    gpu: bool,
    attempt: int = 1,
) -> int:
    """Host memory of a teacher job (extract_teacher, _noisy, _views), in MB.

    It holds the prepared images (``input_mb``), the model twice while its weights load
    (4 bytes per parameter), the embeddings it writes (``passes`` x images x width x 4
    bytes: 2 splits, the noise levels, or the K cached views) and, on the CPU, one
    batch's resized pixels, MLP hidden state and attention scores (x2 for the copies
    that softmax and GELU make). On a GPU the batch lives in device memory instead.
    """
    vit = vit_shape(model)
    tokens = (image_size // vit.patch) ** 2 + 1
    weights = 2 * vit.params_m * 4
    outputs = passes * images_in(input_mb) * vit.width * 4 / 1e6
    batch = 0.0
    if not gpu:
        per_image = 3 * image_size**2 + tokens * 4 * vit.width + vit.heads * tokens**2
        batch = 2 * batch_size * per_image * 4 / 1e6
    return _grow(_base_mb(gpu) + 2 * input_mb + weights + outputs + batch, attempt)


def teacher_runtime_min(
    input_mb: float,
    *,
    model: str,
    image_size: int,
    passes: int = 1,
    threads: int = 1,
    gpu: bool,
    attempt: int = 1,
) -> int:
    """Wall time of a teacher job in minutes: 2 x params x tokens FLOPs per image and
    pass (the matmuls), plus the attention, at the throughput of the device, x2."""
    vit = vit_shape(model)
    tokens = (image_size // vit.patch) ** 2 + 1
    depth = 12 if vit.params_m < 200 else 24
    gflop = (2 * vit.params_m * 1e6 * tokens + 4 * tokens**2 * vit.width * depth) / 1e9
    seconds = passes * images_in(input_mb) * gflop / _gflops(threads, gpu)
    return _grow(OVERHEAD_MIN + 2 * seconds / 60, attempt)


def student_mem_mb(
    input_mb: float,
    *,
    batch_size: int,
    width_mult: float,
    gpu: bool,
    attempt: int = 1,
) -> int:
    """Host memory of a training job (train_student), in MB.

    It holds its inputs (images and teacher embeddings, ``input_mb``) and writes the
    student's embeddings of train, test and every noisy test copy, which together are
    about as large as the inputs again; x3 covers both plus the float copies made
    while batching. On the CPU one batch's activations (both views, with the graph for
    the backward pass) come on top; the student's weights and AdamW state are small
    (8M parameters x 16 bytes at most).
    """
    batch = 0.0
    if not gpu:
        batch = batch_size * STUDENT_ACTIVATION_MB_PER_IMAGE * max(width_mult, 0.05)
    return _grow(_base_mb(gpu) + 3 * input_mb + 128 + batch, attempt)


def student_runtime_min(
    input_mb: float,
    *,
    epochs: int,
    width_mult: float,
    threads: int = 1,
    gpu: bool,
    attempt: int = 1,
) -> int:
    """Wall time of a training job in minutes: ``epochs`` passes over the images at
    :data:`STUDENT_GFLOP_PER_IMAGE` x width_mult² (convolution FLOPs grow with the
    square of the width), x2."""
    gflop = STUDENT_GFLOP_PER_IMAGE * max(width_mult, 0.05) ** 2
    seconds = epochs * images_in(input_mb) * gflop / _gflops(threads, gpu)
    return _grow(OVERHEAD_MIN + 2 * seconds / 60, attempt)


def array_mem_mb(input_mb: float, *, copies: float, attempt: int = 1) -> int:
    """Host memory of a job without torch (prepare_dataset, spectrum, noise), in MB:
    the interpreter plus ``copies`` x its inputs (float64 copies for an SVD or a probe
    fit count 2 each)."""
    return _grow(PYTHON_MB + copies * input_mb, attempt)


def array_runtime_min(input_mb: float, *, minutes_per_gb: float, attempt: int = 1) -> int:
    """Wall time of a job without torch: the fixed overhead plus ``minutes_per_gb`` of
    input."""
    return _grow(OVERHEAD_MIN + minutes_per_gb * input_mb / 1000, attempt)


# ---------------------------------------------------------------- requests from the config
# The rules' resource callables (workflow/rules/common.smk, corruptions.smk) pass a job's
# config entries and Snakemake's input size, threads and attempt; the config's defaults
# are read here, so a request is one call and testable without Snakemake.

# A teacher entry's image_size null = the model's own input size (224 for both paper
# teachers); batch_size null = the extract stage's default.
DEFAULT_IMAGE_SIZE = 224
DEFAULT_TEACHER_BATCH = 256
# The corruption archive holds 19 corruptions x 5 severities.
CORRUPTION_SETS = 19 * 5


def _teacher_shape(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"model": spec["model"], "image_size": int(spec.get("image_size") or DEFAULT_IMAGE_SIZE)}


def teacher_job_mem_mb(
    spec: Mapping[str, Any], input_mb: float, *, passes: int = 1, gpu: bool, attempt: int = 1
) -> int:
    """:func:`teacher_mem_mb` of the teacher config entry ``spec`` (``teachers.<name>``)."""
    return teacher_mem_mb(
        input_mb,
        batch_size=int(spec.get("batch_size") or DEFAULT_TEACHER_BATCH),
        passes=passes,
        gpu=gpu,
        attempt=attempt,
        **_teacher_shape(spec),
    )


def teacher_job_runtime_min(
    spec: Mapping[str, Any],
    input_mb: float,
    *,
    passes: int = 1,
    threads: int = 1,
    gpu: bool,
    attempt: int = 1,
) -> int:
    """:func:`teacher_runtime_min` of the teacher config entry ``spec``."""
    return teacher_runtime_min(
        input_mb, passes=passes, threads=threads, gpu=gpu, attempt=attempt, **_teacher_shape(spec)
    )


def student_settings(training: Mapping[str, Any], student: str) -> dict[str, Any]:
    """The config's ``training`` section with ``training.per_student.<student>`` applied."""
    return {**training, **training.get("per_student", {}).get(student, {})}


def student_job_mem_mb(
    training: Mapping[str, Any], student: str, input_mb: float, *, gpu: bool, attempt: int = 1
) -> int:
    """:func:`student_mem_mb` of ``student`` under the config's ``training`` section."""
    t = student_settings(training, student)
    return student_mem_mb(
        input_mb,
        batch_size=int(t["batch_size"]),
        width_mult=float(t["width_mult"]),
        gpu=gpu,
        attempt=attempt,
    )


def student_job_runtime_min(
    training: Mapping[str, Any],
    student: str,
    input_mb: float,
    *,
    epochs: int | None = None,
    threads: int = 1,
    gpu: bool,
    attempt: int = 1,
) -> int:
    """:func:`student_runtime_min` of ``student``; ``epochs`` None = the config's."""
    t = student_settings(training, student)
    return student_runtime_min(
        input_mb,
        epochs=int(t["epochs"]) if epochs is None else epochs,
        width_mult=float(t["width_mult"]),
        threads=threads,
        gpu=gpu,
        attempt=attempt,
    )


def corruption_share_mb(input_mb: float, evaluation: Mapping[str, Any]) -> float:
    """MB of the corruption archive's sets that the config's ``evaluation`` section asks
    for (its corruptions x severities of the archive's :data:`CORRUPTION_SETS`)."""
    # Multiplied in this order, as the requests always were (bit-identical rounding).
    corruptions, severities = evaluation["corruptions"], evaluation["corruption_severities"]
    return input_mb * len(corruptions) * len(severities) / CORRUPTION_SETS


def corruption_mem_mb(input_mb: float, *, gpu: bool, attempt: int = 1) -> int:
    """Host memory of a corruption job, in MB: one corruption member (<= 1/19 of the
    archive) with its fp32 batches, the clean train embeddings and torch; half the
    inputs covers them with room."""
    return int((_base_mb(gpu) + input_mb / 2 + 256) * max(1, attempt))


def pretrain_mem_mb(
    input_mb: float,
    *,
    batch_size: int,
    views: int,
    tokens: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    gpu: bool,
    attempt: int = 1,
) -> int:
    """Host memory of a pretrain_teacher job (a small ViT trained here), in MB.

    The images (``input_mb``, twice while they go to the device) and, on the CPU, the
    activations the backward pass keeps: per image, view and block the token rows of the
    attention and MLP (~12 x tokens x width floats) and the attention maps (heads x
    tokens²), x2 for softmax/GELU copies. Weights and AdamW state are a few MB.
    """
    batch = 0.0
    if not gpu:
        per_block = 12 * tokens * embed_dim + 2 * num_heads * tokens**2
        batch = 2 * batch_size * views * depth * per_block * 4 / 1e6
    return _grow(_base_mb(gpu) + 2 * input_mb + 64 + batch, attempt)


def pretrain_runtime_min(
    input_mb: float,
    *,
    epochs: int,
    views: int,
    tokens: int,
    embed_dim: int,
    depth: int,
    threads: int = 1,
    gpu: bool,
    attempt: int = 1,
) -> int:
    """Wall time of a pretrain_teacher job in minutes: forward + backward (3 x 2 FLOPs
    per weight and token: 12 x width² weights per block) plus the attention, for every
    view of every image and epoch, at the device's throughput, x2."""
    per_view = 3 * depth * (2 * 12 * embed_dim**2 * tokens + 4 * tokens**2 * embed_dim)
    seconds = epochs * views * images_in(input_mb) * per_view / 1e9 / _gflops(threads, gpu)
    return _grow(OVERHEAD_MIN + 2 * seconds / 60, attempt)
