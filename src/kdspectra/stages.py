"""One function per workflow rule: the glue between artifact paths and the library.

`workflow/scripts/*.py` only unpack ``snakemake.input/output/params/log`` and call one of
these, so everything a rule does is reachable (and tested) without Snakemake. Heavy
imports (torch, open_clip, timm, sklearn) happen inside the functions that need them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdspectra.embeddings import load_embeddings, load_labels, save_embeddings
from kdspectra.errors import ArtifactError
from kdspectra.io import load_json, load_npy, save_csv, save_json, save_npy, save_parquet, save_text
from kdspectra.noise import embed_noisy
from kdspectra.provenance import Provenance

log = logging.getLogger("kdspectra.stages")
PathLike = str | Path


# --------------------------------------------------------------------------- data


def download_archive(url: str, md5: str, dest: PathLike) -> None:
    """Fetch one dataset archive and verify its md5 (rule ``download``)."""
    from kdspectra.download import download

    download(url, md5, Path(dest))


def prepare(
    fmt: str, archive: PathLike | None, outdir: PathLike, source: Mapping[str, Any]
) -> None:
    """Turn an archive into the prepared uint8 arrays (rule ``prepare_dataset``)."""
    from kdspectra.datasets import prepare_dataset

    info = prepare_dataset(fmt, Path(archive) if archive else None, Path(outdir))
    save_json(Path(outdir) / "source.json", {**dict(source), "format": fmt, **info})


def load_split(data_dir: PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Prepared images (uint8 N×32×32×3) and labels (int64 N) of one split, checked."""
    labels = load_labels(Path(data_dir) / f"{split}_labels.npy")
    images = load_npy(
        Path(data_dir) / f"{split}_images.npy", dtype=np.uint8, ndim=4, rows=len(labels)
    )
    return images, labels


# --------------------------------------------------------------------------- teachers


def extract_teacher(
    spec: Mapping[str, Any],
    device_name: str,
    data_dir: PathLike,
    out: Mapping[str, PathLike],
    *,
    probe: Mapping[str, Any] | None = None,
) -> None:
    """Teacher embeddings of train and test, a JSON of how they were made, sanity metrics.

    ``out`` holds ``train``, ``test`` (.npy), ``train_parquet``, ``test_parquet``,
    ``meta`` and ``sanity`` (.json) paths (rule ``extract_teacher``); ``probe`` holds
    :func:`kdspectra.probe.fit_probe` keyword arguments (see
    :func:`kdspectra.config.probe_options`).
    """
    from kdspectra.device import device_record, resolve_device
    from kdspectra.probe import fit_probe
    from kdspectra.spectrum import effective_rank
    from kdspectra.teachers import build_teacher

    device = resolve_device(device_name)
    teacher = build_teacher(spec, device=device)
    results, rates = {}, {}
    for split in ("train", "test"):
        images, labels = load_split(data_dir, split)
        t0 = time.perf_counter()
        emb = teacher.embed(images, batch_size=int(spec.get("batch_size", 256)))
        rates[split] = len(images) / max(time.perf_counter() - t0, 1e-9)
        log.info("%s: %d images at %.0f img/s", split, len(images), rates[split])
        save_embeddings(out[split], out[f"{split}_parquet"], emb, labels, split)
        results[split] = (emb, labels)
    meta = {**teacher.describe(), **device_record(device), "images_per_s": rates}
    save_json(out["meta"], meta)
    fitted = fit_probe(*results["train"], **(probe or {}))
    sanity = {
        "effective_rank_test": effective_rank(results["test"][0]),
        "linear_probe_accuracy": fitted.accuracy(*results["test"]),
        "probe_C": fitted.C,
        "weights_source": teacher.weights_source,
    }
    log.info("teacher sanity: %s", sanity)
    save_json(out["sanity"], sanity)


def extract_teacher_noisy(
    spec: Mapping[str, Any],
    device_name: str,
    data_dir: PathLike,
    sigmas: Sequence[float],
    seed: int,
    out: PathLike,
) -> None:
    """Teacher embeddings of the test split at every noise level (``extract_teacher_noisy``)."""
    from kdspectra.device import resolve_device
    from kdspectra.teachers import build_teacher

    teacher = build_teacher(spec, device=resolve_device(device_name))
    images, _ = load_split(data_dir, "test")
    bs = int(spec.get("batch_size", 256))
    save_npy(out, embed_noisy(lambda x: teacher.embed(x, batch_size=bs), images, sigmas, seed))


def extract_teacher_views(
    spec: Mapping[str, Any],
    device_name: str,
    data_dir: PathLike,
    training: Mapping[str, Any],
    out: Mapping[str, PathLike],
) -> None:
    """Teacher embeddings of K seeded views of every train image (``extract_teacher_views``).

    ``out["views"]`` gets a K×N×D float32 array, view k of image i made by
    :func:`kdspectra.data.cached_view_params` from ``training.teacher_views_seed`` and
    ``training.augment``; training replays exactly these views (``teacher_view: same``).
    ``out["meta"]`` records how. Costs K extractions of the train split.
    """
    import torch

    from kdspectra.data import apply_view, cached_view_params
    from kdspectra.device import resolve_device
    from kdspectra.teachers import build_teacher

    device = resolve_device(device_name)
    teacher = build_teacher(spec, device=device)
    images, _ = load_split(data_dir, "train")
    aug, k = training["augment"], int(training["teacher_views_k"])
    table = cached_view_params(
        len(images), k, int(training["teacher_views_seed"]),
        crop_padding=int(aug["crop_padding"]), jitter=float(aug["jitter"]),
        grayscale_p=float(aug["grayscale_p"]),
    )  # fmt: skip
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2)
    bs, chunk = int(spec.get("batch_size", 256)), 4096
    out_arr = np.empty((k, len(images), teacher.dim), dtype=np.float32)
    t0 = time.perf_counter()
    for view in range(k):
        for lo in range(0, len(images), chunk):
            idx = torch.arange(lo, min(lo + chunk, len(images)))
            x = apply_view(
                pixels[idx].to(device),
                table.take(torch.full_like(idx, view), idx).to(device),
                crop_padding=int(aug["crop_padding"]),
            )
            nhwc = x.permute(0, 2, 3, 1).cpu().numpy()
            out_arr[view, lo : lo + len(idx)] = teacher.embed(nhwc, batch_size=bs)
        log.info("view %d/%d done after %.1fs", view + 1, k, time.perf_counter() - t0)
    save_npy(out["views"], out_arr)
    meta = {
        **teacher.describe(),
        "device": str(device),
        "teacher_views_k": k,
        "teacher_views_seed": int(training["teacher_views_seed"]),
        "augment": dict(aug),
        "seconds": time.perf_counter() - t0,
    }
    save_json(out["meta"], meta)


# --------------------------------------------------------------------------- students


def student_training(training: Mapping[str, Any], student: str) -> dict[str, Any]:
    """The ``training`` section with ``training.per_student.<student>`` merged over it.

    Per-student overrides let the transformer students of the ablation train with the
    settings a ViT needs (longer warmup, lower LR) instead of the CNNs'.
    """
    override = dict(training.get("per_student", {}).get(student) or {})
    merged = {k: v for k, v in training.items() if k != "per_student"}
    for key in ("augment", "infonce"):
        if key in override:
            override[key] = {**merged[key], **override[key]}
    return {**merged, **override}


def train_config(
    training: Mapping[str, Any], objective: str, seed: int, student: str | None = None
) -> Any:
    """Map the config's ``training`` section (with ``student``'s overrides) to a
    :class:`kdspectra.train.TrainConfig`."""
    from kdspectra.train import TrainConfig

    if student is not None:
        training = student_training(training, student)
    aug, nce = training["augment"], training["infonce"]
    return TrainConfig(
        objective=objective,
        epochs=int(training["epochs"]),
        batch_size=int(training["batch_size"]),
        lr=float(training["lr"]),
        weight_decay=float(training["weight_decay"]),
        warmup_epochs=float(training["warmup_epochs"]),
        infonce_weight=float(nce["weight"]),
        temperature=float(nce["temperature"]),
        crop_padding=int(aug["crop_padding"]),
        jitter=float(aug["jitter"]),
        grayscale_p=float(aug["grayscale_p"]),
        width_mult=float(training["width_mult"]),
        compile=bool(training["compile"]),
        teacher_view=str(training["teacher_view"]),
        teacher_views_seed=int(training["teacher_views_seed"]),
        deterministic=bool(training["deterministic"]),
        seed=int(seed),
    )


def train(
    student: str,
    objective: str,
    seed: int,
    training: Mapping[str, Any],
    device_name: str,
    data_dir: PathLike,
    teacher_train: PathLike,
    out: Mapping[str, PathLike],
    checkpoint: PathLike,
    *,
    teacher_meta: PathLike | None = None,
    embed: Mapping[str, Any] | None = None,
) -> None:
    """Distil one student (rule ``train_student``); resumes from ``checkpoint``.

    With ``embed`` (:func:`embed_student`'s keyword arguments) the same job then embeds
    train, test and the noisy test copies with the saved weights into ``out``: one
    process and one torch start-up per model instead of two.

    ``teacher_train`` is the clean N×D train embeddings, or the K×N×D cached-view
    embeddings when ``training.teacher_view`` is ``same``; ``teacher_meta`` (the teacher's
    meta.json) supplies the weights source for the checkpoint's input fingerprints. A
    deterministic failure (NaN loss, bad artifact) is not repeated by a scheduler retry
    (:mod:`kdspectra.failures`).
    """
    import dataclasses

    from kdspectra.failures import fail_fast_on_repeat, job_identity, marker_path

    cfg = train_config(training, objective, seed, student)
    inputs = [teacher_train, Path(data_dir) / "train_images.npy"]
    identity = job_identity({"student": student, **dataclasses.asdict(cfg)}, inputs)
    with fail_fast_on_repeat(marker_path(checkpoint), identity):
        _train(student, cfg, device_name, data_dir, teacher_train, out, checkpoint, teacher_meta)
        if embed is not None:
            embed_student(out["weights"], out["meta"], device_name, data_dir, out, **embed)


def _train(
    student: str,
    cfg: Any,
    device_name: str,
    data_dir: PathLike,
    teacher_train: PathLike,
    out: Mapping[str, PathLike],
    checkpoint: PathLike,
    teacher_meta: PathLike | None,
) -> None:
    from kdspectra.device import resolve_device
    from kdspectra.train import train_student

    images, labels = load_split(data_dir, "train")
    if cfg.teacher_view == "same":
        teacher_emb = load_npy(teacher_train, dtype=np.float32, ndim=3, finite=True)
    else:
        teacher_emb = load_embeddings(teacher_train, rows=len(labels))
    source = load_json(teacher_meta)["weights_source"] if teacher_meta else "unknown"
    train_student(
        student,
        images,
        teacher_emb,
        cfg,
        device=resolve_device(device_name),
        weights_out=Path(out["weights"]),
        metrics_out=Path(out["metrics"]),
        meta_out=Path(out["meta"]),
        checkpoint=Path(checkpoint),
        teacher_weights=str(source),
    )


def _load_trained(weights: PathLike, meta_path: PathLike, device: Any) -> Any:
    from kdspectra.train import load_student

    meta = load_json(meta_path)
    return load_student(
        Path(weights),
        meta["student"],
        int(meta["embed_dim"]),
        width_mult=float(meta["width_mult"]),
        device=device,
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
    """Student embeddings of train, test and the noisy test copies (rule ``embed_student``).

    Rows keep the teacher's order (row i = image i of the split), so spectra, cosine to
    the teacher and probes compare like with like.
    """
    from kdspectra.device import resolve_device
    from kdspectra.train import embed_images

    device = resolve_device(device_name)
    model = _load_trained(weights, meta, device)

    def embed(images: np.ndarray) -> np.ndarray:
        return embed_images(model, images, device=device, batch_size=batch_size)

    for split in ("train", "test"):
        images, labels = load_split(data_dir, split)
        save_embeddings(out[split], out[f"{split}_parquet"], embed(images), labels, split)
    save_npy(out["test_noisy"], embed_noisy(embed, images, sigmas, noise_seed))


# --------------------------------------------------------------------------- evaluation


def spectrum(
    test_emb: PathLike,
    out_parquet: PathLike,
    out_json: PathLike,
    teacher_test: PathLike | None,
    *,
    test_labels: PathLike | None = None,
    meta: PathLike | None = None,
) -> None:
    """Singular values, both effective ranks and the rank ceiling of one model (rule
    ``spectrum``).

    Records ``effective_rank`` (raw rows: the paper's number), ``effective_rank_l2``
    (rows L2-normalised first), ``norm_cv`` and ``rank_ceiling``. For students (those with
    a ``teacher_test``) also the mean cosine similarity to the teacher on the same images:
    InfoNCE trades alignment for uniformity and a reader must see both; the student's
    ``meta`` JSON must then carry ``feature_width``, the head's input width that caps its
    rank. With ``test_labels`` the embeddings must have one row per test label, so a
    matrix from another split or run is named here instead of becoming a plausible rank.
    """
    from kdspectra.spectrum import (
        effective_rank_from_singular_values,
        effective_rank_l2,
        norm_cv,
        rank_ceiling,
        singular_values,
    )

    rows = len(load_labels(test_labels)) if test_labels is not None else None
    emb = load_embeddings(test_emb, rows=rows)
    width = _feature_width(meta) if teacher_test is not None else None
    sv = singular_values(emb)
    stats: dict[str, Any] = {
        "n": int(emb.shape[0]),
        "dim": int(emb.shape[1]),
        "effective_rank": effective_rank_from_singular_values(sv, "entropy"),
        "effective_rank_rv": effective_rank_from_singular_values(sv, "roy_vetterli"),
        "effective_rank_l2": effective_rank_l2(emb),
        "norm_cv": norm_cv(emb),
        "rank_ceiling": rank_ceiling(emb.shape[0], emb.shape[1], width),
        "cos_to_teacher": float("nan"),
    }
    if teacher_test is not None:
        teacher = load_embeddings(teacher_test, rows=emb.shape[0], dim=emb.shape[1])
        stats["cos_to_teacher"] = mean_cosine(emb, teacher)
    save_parquet(out_parquet, pd.DataFrame({"index": np.arange(len(sv)), "singular_value": sv}))
    save_json(out_json, stats)


def _feature_width(meta: PathLike | None) -> int:
    """A student's last feature width from its meta.json (written by training)."""
    if meta is None:
        raise ArtifactError("spectrum of a student needs its meta.json (for feature_width)")
    width = load_json(meta).get("feature_width")
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ArtifactError(
            f"{meta}: expected a positive int 'feature_width' (the student head's input "
            f"width), found {width!r}; retrain the student with this version"
        )
    return width


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-wise cosine similarity of two equally shaped matrices (float64)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(axis=1)
    den = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def noise(
    train_emb: PathLike,
    train_labels: PathLike,
    noisy_test: PathLike,
    test_labels: PathLike,
    sigmas: Sequence[float],
    probe: Mapping[str, Any],
    out: PathLike,
) -> None:
    """Linear-probe accuracy under every noise level (rule ``noise``)."""
    from kdspectra.probe import fit_probe, noise_accuracy

    ytr, yte = load_labels(train_labels), load_labels(test_labels)
    xtr = load_embeddings(train_emb, rows=len(ytr))
    noisy = load_npy(noisy_test, dtype=np.float32, ndim=3, finite=True)
    if (
        noisy.shape[0] != len(sigmas)
        or noisy.shape[1] != len(yte)
        or noisy.shape[2] != xtr.shape[1]
    ):
        raise ArtifactError(
            f"{noisy_test}: expected shape ({len(sigmas)}, {len(yte)}, {xtr.shape[1]}) "
            f"(sigmas, test rows, dim), found {noisy.shape}"
        )
    fitted = fit_probe(xtr, ytr, **probe)
    frame = noise_accuracy(fitted, noisy, yte, list(sigmas))
    frame["probe_C"] = fitted.C
    save_parquet(out, frame)


# What collect carries from each spectrum JSON into the run summary.
SPECTRUM_METRICS = (
    "effective_rank",
    "effective_rank_rv",
    "effective_rank_l2",
    "norm_cv",
    "rank_ceiling",
    "cos_to_teacher",
)

# Which experiment a model belongs to; parse_model() adds which model it is.
RUN_KEYS = ("experiment", "dataset", "teacher")


def parse_model(model: str) -> dict[str, Any]:
    """``teacher`` or ``<student>/<objective>/seed<k>`` → summary key columns."""
    if model == "teacher":
        return {"role": "teacher", "student": "", "objective": "", "seed": -1}
    student, objective, seed = model.split("/")
    return {
        "role": "student",
        "student": student,
        "objective": objective,
        "seed": int(seed.removeprefix("seed")),
    }


def collect(
    records: Sequence[Mapping[str, Any]], summary_out: PathLike, noise_out: PathLike
) -> None:
    """Gather every model's metrics into the run summary and the long noise table.

    Each record names ``experiment, dataset, teacher, model`` and the paths of its
    ``spectrum`` JSON, ``noise`` Parquet and ``meta`` JSON (rule ``collect``).
    """
    rows, noise_rows = [], []
    for rec in records:
        keys = {k: rec[k] for k in RUN_KEYS} | parse_model(rec["model"])
        spec = load_json(rec["spectrum"])
        missing = [m for m in SPECTRUM_METRICS if m not in spec]
        if missing:
            raise ArtifactError(
                f"{rec['spectrum']}: missing {missing}; it was written by an older version "
                "of the spectrum rule, delete it so that Snakemake recomputes it"
            )
        curve = pd.read_parquet(rec["noise"])
        clean = curve.loc[curve["sigma"] == 0.0, "accuracy"]
        rows.append(
            keys
            | {
                "params": int(load_json(rec["meta"])["params"]),
                **{m: spec[m] for m in SPECTRUM_METRICS},
                "clean_accuracy": float(clean.iloc[0]) if len(clean) else float("nan"),
            }
        )
        noise_rows.append(curve[["sigma", "accuracy"]].assign(**keys))
    save_parquet(summary_out, pd.DataFrame(rows))
    cols = [*RUN_KEYS, "role", "student", "objective", "seed", "sigma", "accuracy"]
    save_parquet(noise_out, pd.concat(noise_rows, ignore_index=True)[cols])


# --------------------------------------------------------------------------- report


def write_resolved_config(config: Mapping[str, Any], out: PathLike) -> None:
    """Record the exact config the run used (defaults filled in)."""
    import yaml

    save_text(out, yaml.safe_dump(dict(config), sort_keys=False))


def write_table(
    kind: str,
    summary: PathLike,
    noise_table: PathLike,
    options: Mapping[str, Any],
    prov: Mapping[str, Any],
    out: Mapping[str, PathLike],
) -> None:
    """Render one table (``table1``, ``table2``, ``ablation``, ``teachers``, ``fig2``, ``fig3``).

    The CSV gets a ``<table>.provenance.json`` sidecar (``out["provenance"]``): commit,
    config hash, teacher weights and the random-init flag, which a CSV cannot carry.
    """
    from kdspectra import render, tables

    frame = tables.build(kind, pd.read_parquet(summary), pd.read_parquet(noise_table), **options)
    provenance = Provenance.from_dict(prov)
    save_csv(out["csv"], frame)
    save_json(out["provenance"], provenance.to_dict())
    if "md" in out:
        save_text(out["md"], render.to_markdown(frame, kind, provenance))
    if "tex" in out:
        save_text(out["tex"], render.to_latex(frame, kind, provenance))


def write_claims(
    summary: PathLike,
    noise_table: PathLike,
    options: Mapping[str, Any],
    prov: Mapping[str, Any],
    out: Mapping[str, PathLike],
) -> None:
    """Judge the paper's claims on the run (rule ``claims``): ``out`` holds ``csv``,
    ``md`` and ``provenance`` paths; ``options`` are :func:`kdspectra.claims.claims_frame`
    keyword arguments plus ``omitted`` (report artifacts left out, listed in the .md)."""
    from kdspectra import claims

    opts = dict(options)
    omitted = opts.pop("omitted", [])
    provenance = Provenance.from_dict(prov)
    frame = claims.claims_frame(
        pd.read_parquet(summary),
        pd.read_parquet(noise_table),
        random_init=provenance.random_init,
        **opts,
    )
    save_csv(out["csv"], frame)
    save_json(out["provenance"], provenance.to_dict())
    save_text(out["md"], claims.to_markdown(frame, provenance, omitted))


def write_paper_comparison(
    summary: PathLike,
    noise_table: PathLike,
    options: Mapping[str, Any],
    prov: Mapping[str, Any],
    out: PathLike,
) -> None:
    """Every number of the paper beside ours (rule ``paper_comparison``)."""
    from kdspectra import paper

    text = paper.paper_comparison(
        pd.read_parquet(summary),
        pd.read_parquet(noise_table),
        Provenance.from_dict(prov),
        **options,
    )
    save_text(out, text)


def write_figure(
    figure: str,
    inputs: Mapping[str, Any],
    options: Mapping[str, Any],
    prov: Mapping[str, Any],
    out: Mapping[str, PathLike],
) -> None:
    """Render Figure 1, 2 or 3 as PNG and PDF (rule ``figure``)."""
    from kdspectra import figures

    figures.build(
        figure, inputs, Provenance.from_dict(prov), png=out["png"], pdf=out["pdf"], **options
    )
