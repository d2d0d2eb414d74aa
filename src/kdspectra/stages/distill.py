"""Stages of `workflow/rules/distill.smk`: distil one student, then (same job) embed with
its saved weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdspectra.data.embeddings import load_embeddings, save_embeddings
from kdspectra.data.noise import embed_noisy
from kdspectra.io import load_json, load_npy, save_npy
from kdspectra.stages._common import Named, PathLike, _load_trained, _named, load_split


def train_student(inputs: Named, outputs: Named, params: Named) -> None:
    """Distil one student; resumes from ``params.checkpoint``.

    ``params`` holds ``student``, ``objective``, ``seed``, the config's ``training``
    section (converted once, by :meth:`kdspectra.training.config.TrainConfig.from_config`),
    ``device`` and ``data_dir``. ``inputs.teacher`` is the clean N×D train embeddings, or
    the K×N×D cached-view embeddings when ``training.teacher_view`` is ``same``;
    ``inputs.teacher_meta`` (the teacher's meta.json) supplies the weights source for the
    checkpoint's input fingerprints. ``outputs`` holds ``weights``, ``metrics`` and
    ``meta``; when it also names the embeddings (``train``, ``test``, their parquets and
    ``test_noisy``), the same job embeds with the saved weights (:func:`embed_student`,
    ``params.embed_batch_size``, ``sigmas``, ``noise_seed``): one process and one torch
    start-up per model instead of two. A deterministic failure (NaN loss) is not repeated
    by a scheduler retry (:mod:`kdspectra.training.failures`).
    """
    import dataclasses

    from kdspectra.training.config import TrainConfig
    from kdspectra.training.failures import fail_fast_on_repeat, job_identity, marker_path

    inputs, out, params = _named(inputs), _named(outputs), _named(params)
    student, checkpoint = params["student"], params["checkpoint"]
    cfg = TrainConfig.from_config(
        params["training"], params["objective"], int(params["seed"]), student
    )
    files = [inputs["teacher"], Path(params["data_dir"]) / "train_images.npy"]
    identity = job_identity({"student": student, **dataclasses.asdict(cfg)}, files)
    with fail_fast_on_repeat(marker_path(checkpoint), identity):
        _train(student, cfg, params, inputs, out)
        if "test" in out:
            embed_student(
                out["weights"],
                out["meta"],
                params["device"],
                params["data_dir"],
                out,
                batch_size=params["embed_batch_size"],
                sigmas=params["sigmas"],
                noise_seed=params["noise_seed"],
            )


def _train(
    student: str, cfg: Any, params: Named, inputs: Named, out: Mapping[str, PathLike]
) -> None:
    from kdspectra.runtime.device import resolve_device
    from kdspectra.training.loop import train_student as train

    images, labels = load_split(params["data_dir"], "train")
    if cfg.teacher_view == "same":
        teacher_emb = load_npy(inputs["teacher"], dtype=np.float32, ndim=3, finite=True)
    else:
        teacher_emb = load_embeddings(inputs["teacher"], rows=len(labels))
    meta = inputs.get("teacher_meta")
    source = load_json(meta)["weights_source"] if meta else "unknown"
    # Tracked geometry (training.track_every) compares with the teacher's clean rows; with
    # `teacher_view: same` the targets are views, so the clean train embeddings come apart.
    clean = inputs.get("teacher_clean")
    track_teacher = load_embeddings(clean, rows=len(labels)) if clean else None
    train(
        student,
        images,
        teacher_emb,
        cfg,
        device=resolve_device(params["device"]),
        weights_out=Path(out["weights"]),
        metrics_out=Path(out["metrics"]),
        meta_out=Path(out["meta"]),
        checkpoint=Path(params["checkpoint"]),
        teacher_weights=str(source),
        track_teacher=track_teacher,
    )


def embed_student(
    weights: PathLike,
    meta: PathLike,
    device_name: str,
    data_dir: PathLike,
    out: Mapping[str, PathLike],
    *,
    batch_size: int,
    sigmas: Sequence[float],
    noise_seed: int,
) -> None:
    """Student embeddings of train, test and the noisy test copies (the embedding half of rule
    ``train_student``, run in the same job).

    Rows keep the teacher's order (row i = image i of the split), so spectra, cosine to
    the teacher and probes compare like with like.
    """
    from kdspectra.models.inference import embed_images
    from kdspectra.runtime.device import resolve_device

    device = resolve_device(device_name)
    model = _load_trained(weights, meta, device)

    def embed(images: np.ndarray) -> np.ndarray:
        return embed_images(model, images, device=device, batch_size=batch_size)

    for split in ("train", "test"):
        images, labels = load_split(data_dir, split)
        save_embeddings(out[split], out[f"{split}_parquet"], embed(images), labels, split)
    save_npy(out["test_noisy"], embed_noisy(embed, images, sigmas, noise_seed))
