"""One function per workflow rule, named like the rule: the glue between paths and library.

Every rule's function takes ``(inputs, outputs, params)``: mappings from the names the
rule gives its inputs, outputs and params (Snakemake's ``snakemake.input``/``output``/
``params``, or plain dicts in tests) to their values. `workflow/scripts/*.py` only set up
logging and pass those three on, so everything a rule does is reachable (and tested)
without Snakemake. Heavy imports (torch, open_clip, timm, sklearn) happen inside the
functions that need them.
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
from kdspectra.registry import TEACHER_MODEL, ModelId

log = logging.getLogger("kdspectra.stages")
PathLike = str | Path
Named = Mapping[str, Any]  # a rule's input, output or params: name -> value


def _named(m: Any) -> dict[str, Any]:
    """A plain dict of a rule's named inputs/outputs/params (Snakemake's Namedlist is no
    Mapping: ``in`` would test its values, not its names)."""
    return dict(m.items()) if hasattr(m, "items") else dict(m)


# --------------------------------------------------------------------------- data


def download(inputs: Named, outputs: Named, params: Named) -> None:
    """Fetch one dataset archive (``outputs.archive``) from ``params.url`` and verify
    ``params.md5``."""
    from kdspectra.download import download as fetch

    params = _named(params)
    fetch(params["url"], params["md5"], Path(_named(outputs)["archive"]))


def prepare_dataset(inputs: Named, outputs: Named, params: Named) -> None:
    """Turn ``inputs.archive`` (none for built-in sets) into the prepared uint8 arrays in
    ``params.outdir``, with ``outputs.source`` recording ``params.source`` and the format."""
    from kdspectra.datasets import prepare_dataset as prepare

    params, outputs = _named(params), _named(outputs)
    fmt, archive = params["fmt"], _named(inputs).get("archive") or None
    info = prepare(fmt, Path(archive) if archive else None, Path(params["outdir"]))
    save_json(outputs["source"], {**dict(params["source"]), "format": fmt, **info})


def load_split(data_dir: PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Prepared images (uint8 N×32×32×3) and labels (int64 N) of one split, checked."""
    labels = load_labels(Path(data_dir) / f"{split}_labels.npy")
    images = load_npy(
        Path(data_dir) / f"{split}_images.npy", dtype=np.uint8, ndim=4, rows=len(labels)
    )
    return images, labels


# --------------------------------------------------------------------------- teachers


def extract_teacher(inputs: Named, outputs: Named, params: Named) -> None:
    """Teacher embeddings of train and test, a JSON of how they were made, sanity metrics.

    ``outputs`` holds ``train``, ``test`` (.npy), ``train_parquet``, ``test_parquet``,
    ``meta`` and ``sanity`` (.json); ``params`` the teacher ``spec``, ``device``,
    ``data_dir`` and ``probe`` (:func:`kdspectra.probe.fit_probe` keyword arguments, see
    :func:`kdspectra.config.probe_options`).
    """
    from kdspectra.device import device_record, resolve_device
    from kdspectra.probe import fit_probe
    from kdspectra.spectrum import effective_rank
    from kdspectra.teachers import build_teacher

    params, out = _named(params), _named(outputs)
    spec, data_dir, probe = params["spec"], params["data_dir"], params.get("probe")
    device = resolve_device(params["device"])
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


def extract_teacher_noisy(inputs: Named, outputs: Named, params: Named) -> None:
    """Teacher embeddings of the test split at every noise level (``outputs.noisy``, S×N×D)
    for ``params.sigmas`` drawn from ``params.seed``."""
    from kdspectra.device import resolve_device
    from kdspectra.teachers import build_teacher

    params = _named(params)
    spec = params["spec"]
    teacher = build_teacher(spec, device=resolve_device(params["device"]))
    images, _ = load_split(params["data_dir"], "test")
    bs = int(spec.get("batch_size", 256))
    noisy = embed_noisy(
        lambda x: teacher.embed(x, batch_size=bs), images, params["sigmas"], params["seed"]
    )
    save_npy(_named(outputs)["noisy"], noisy)


def extract_teacher_views(inputs: Named, outputs: Named, params: Named) -> None:
    """Teacher embeddings of K seeded views of every train image.

    ``outputs.views`` gets a K×N×D float32 array, view k of image i made by
    :func:`kdspectra.data.cached_view_params` from ``params.views`` (the training keys
    ``teacher_views_k``, ``teacher_views_seed`` and ``augment``); training replays exactly
    these views (``teacher_view: same``). ``outputs.meta`` records how. Costs K
    extractions of the train split.
    """
    import torch

    from kdspectra.data import apply_view, cached_view_params
    from kdspectra.device import resolve_device
    from kdspectra.teachers import build_teacher

    params, out = _named(params), _named(outputs)
    spec, training = params["spec"], params["views"]
    device = resolve_device(params["device"])
    teacher = build_teacher(spec, device=device)
    images, _ = load_split(params["data_dir"], "train")
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


def train_student(inputs: Named, outputs: Named, params: Named) -> None:
    """Distil one student; resumes from ``params.checkpoint``.

    ``params`` holds ``student``, ``objective``, ``seed``, the config's ``training``
    section (converted once, by :meth:`kdspectra.train_config.TrainConfig.from_config`),
    ``device`` and ``data_dir``. ``inputs.teacher`` is the clean N×D train embeddings, or
    the K×N×D cached-view embeddings when ``training.teacher_view`` is ``same``;
    ``inputs.teacher_meta`` (the teacher's meta.json) supplies the weights source for the
    checkpoint's input fingerprints. ``outputs`` holds ``weights``, ``metrics`` and
    ``meta``; when it also names the embeddings (``train``, ``test``, their parquets and
    ``test_noisy``), the same job embeds with the saved weights (:func:`embed_student`,
    ``params.embed_batch_size``, ``sigmas``, ``noise_seed``): one process and one torch
    start-up per model instead of two. A deterministic failure (NaN loss) is not repeated
    by a scheduler retry (:mod:`kdspectra.failures`).
    """
    import dataclasses

    from kdspectra.failures import fail_fast_on_repeat, job_identity, marker_path
    from kdspectra.train_config import TrainConfig

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
    from kdspectra.device import resolve_device
    from kdspectra.train import train_student as train

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


def _load_trained(weights: PathLike, meta_path: PathLike, device: Any) -> Any:
    from kdspectra.inference import load_student

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
    from kdspectra.inference import embed_images

    device = resolve_device(device_name)
    model = _load_trained(weights, meta, device)

    def embed(images: np.ndarray) -> np.ndarray:
        return embed_images(model, images, device=device, batch_size=batch_size)

    for split in ("train", "test"):
        images, labels = load_split(data_dir, split)
        save_embeddings(out[split], out[f"{split}_parquet"], embed(images), labels, split)
    save_npy(out["test_noisy"], embed_noisy(embed, images, sigmas, noise_seed))


# --------------------------------------------------------------------------- evaluation


def measure_spectrum(inputs: Named, outputs: Named, params: Named) -> None:
    """Singular values (``outputs.values``) and every geometry metric (``outputs.stats``)
    of one model's test embeddings (``inputs.test``).

    Records ``effective_rank`` (raw rows: the paper's number), ``effective_rank_l2``
    (rows L2-normalised first), ``norm_cv`` and ``rank_ceiling``, and beside them every
    metric of :func:`kdspectra.geometry.geometry_metrics` (RankMe, participation ratio,
    stable rank, α-ReQ with its R², fit bounds ``params.alpha_req_fit`` and point count,
    uniformity with its subsample size): researchers compare several and each catches
    what ER misses. For students (those with an ``inputs.teacher``, the teacher's test
    embeddings) also ``cos_to_teacher`` and ``linear_cka`` to the teacher on the same
    images (NaN for the teacher): InfoNCE trades alignment for uniformity and a reader
    must see both; the student's ``inputs.meta`` JSON must then carry ``feature_width``,
    the head's input width that caps its rank. With ``inputs.labels`` (the test labels)
    the embeddings must have one row per label, so a matrix from another split or run is
    named here instead of becoming a plausible rank, and ``per_class_effective_rank`` is
    recorded (NaN without labels).
    """
    from kdspectra.geometry import geometry_metrics
    from kdspectra.spectrum import (
        effective_rank_from_singular_values,
        norm_cv,
        rank_ceiling,
        singular_values,
    )

    inputs, outputs = _named(inputs), _named(outputs)
    fit = _alpha_fit(_named(params))
    teacher_test, test_labels = inputs.get("teacher"), inputs.get("labels")
    labels = load_labels(test_labels) if test_labels is not None else None
    emb = load_embeddings(inputs["test"], rows=None if labels is None else len(labels))
    width = _feature_width(inputs.get("meta")) if teacher_test is not None else None
    teacher = (
        load_embeddings(teacher_test, rows=emb.shape[0], dim=emb.shape[1])
        if teacher_test is not None
        else None
    )
    geo = geometry_metrics(emb, labels, teacher, alpha_fit=fit)
    sv = singular_values(emb)
    stats: dict[str, Any] = {
        "n": int(emb.shape[0]),
        "dim": int(emb.shape[1]),
        "effective_rank": geo["effective_rank"],
        "effective_rank_rv": effective_rank_from_singular_values(sv, "roy_vetterli"),
        "effective_rank_l2": geo["effective_rank_l2"],
        "norm_cv": norm_cv(emb),
        "rank_ceiling": rank_ceiling(emb.shape[0], emb.shape[1], width),
        # One definition of the distillation fit: kdspectra.geometry.cos_to_teacher.
        "cos_to_teacher": geo.get("cos_to_reference", float("nan")),
        "linear_cka": geo.get("linear_cka", float("nan")),
        "per_class_effective_rank": geo.get("per_class_effective_rank", float("nan")),
        **{m: geo[m] for m in EXTRA_GEOMETRY},
        "alpha_req_points": geo["alpha_req_points"],
        "alpha_req_fit": list(fit),
        "uniformity_subsample": geo["uniformity_subsample"],
    }
    values = pd.DataFrame({"index": np.arange(len(sv)), "singular_value": sv})
    save_parquet(outputs["values"], values)
    save_json(outputs["stats"], stats)


# The metrics of kdspectra.geometry beyond the paper's ER, in the order tables show them.
EXTRA_GEOMETRY = (
    "rankme",
    "participation_ratio",
    "stable_rank",
    "alpha_req",
    "alpha_req_r2",
    "uniformity",
)


def _alpha_fit(params: Named) -> tuple[int, int]:
    """``params.alpha_req_fit`` ([lo, hi), config ``evaluation.alpha_req_fit``) checked
    here, so a bad range names the config key instead of failing inside the fit."""
    from kdspectra.geometry import ALPHA_FIT

    fit = params.get("alpha_req_fit", ALPHA_FIT)
    ok = len(fit) == 2 and all(isinstance(b, int) and not isinstance(b, bool) for b in fit)
    if not ok or not 1 <= fit[0] < fit[1]:
        raise ArtifactError(
            f"evaluation.alpha_req_fit: expected two integers [lo, hi) with 1 <= lo < hi, "
            f"found {fit!r}"
        )
    return int(fit[0]), int(fit[1])


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


def measure_noise(inputs: Named, outputs: Named, params: Named) -> None:
    """Linear-probe and kNN accuracy under every noise level (``outputs.accuracy``): a probe
    (``params.probe``) fit on ``inputs.train`` embeddings and ``train_labels``, scored on
    ``inputs.noisy`` (one test copy per ``params.sigmas``) against ``test_labels``.

    Beside the probe's ``accuracy``, one ``knn<k>_accuracy`` column per ``params.knn_k``
    (default :data:`KNN_K`): the weighted kNN of :func:`kdspectra.probe.knn_accuracy` with
    temperature ``params.knn_temperature``, on the same clean train embeddings. SSL papers
    report both; the kNN has no fitted parameters, so it cannot absorb a noisy geometry.
    """
    from kdspectra.probe import fit_probe, noise_accuracy

    inputs, params = _named(inputs), _named(params)
    sigmas, noisy_test = params["sigmas"], inputs["noisy"]
    train_labels, test_labels = inputs["train_labels"], inputs["test_labels"]
    train_emb = inputs["train"]

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
    fitted = fit_probe(xtr, ytr, **params["probe"])
    frame = noise_accuracy(fitted, noisy, yte, list(sigmas))
    frame["probe_C"] = fitted.C
    for k, column in knn_columns(params.get("knn_k", KNN_K)).items():
        frame[column] = _knn_curve(xtr, ytr, noisy, yte, k, params)
    save_parquet(_named(outputs)["accuracy"], frame)


KNN_K = (20, 200)  # kNN neighbour counts when params name none (config evaluation.knn_k)
KNN_TEMPERATURE = 0.07  # DINO's T (config evaluation.knn_temperature)


def knn_columns(ks: Sequence[int]) -> dict[int, str]:
    """k → the noise Parquet's column of that kNN's accuracy (``knn20_accuracy``)."""
    return {int(k): f"knn{int(k)}_accuracy" for k in ks}


def _knn_curve(
    xtr: np.ndarray, ytr: np.ndarray, noisy: np.ndarray, yte: np.ndarray, k: int, params: Named
) -> list[float]:
    """kNN accuracy of every noisy test copy against the clean train embeddings."""
    from kdspectra.probe import knn_accuracy

    temperature = float(params.get("knn_temperature", KNN_TEMPERATURE))
    return [knn_accuracy(xtr, ytr, block, yte, k=k, temperature=temperature) for block in noisy]


# What collect carries from each spectrum JSON into the run summary.
SPECTRUM_METRICS = (
    "effective_rank",
    "effective_rank_rv",
    "effective_rank_l2",
    "norm_cv",
    "rank_ceiling",
    "cos_to_teacher",
    "linear_cka",
    "per_class_effective_rank",
    *EXTRA_GEOMETRY,
    "uniformity_subsample",
)

# Which experiment a model belongs to; model_keys() adds which model it is.
RUN_KEYS = ("experiment", "dataset", "teacher")


def model_keys(model: str) -> dict[str, Any]:
    """``teacher`` or a model id (:class:`kdspectra.registry.ModelId`) → summary columns."""
    if model == TEACHER_MODEL:
        return {"role": "teacher", "student": "", "objective": "", "seed": -1}
    mid = ModelId.parse(model)
    return {"role": "student", "student": mid.student, "objective": mid.objective, "seed": mid.seed}


def collect(inputs: Named, outputs: Named, params: Named) -> None:
    """Gather every model's metrics into the run summary and the long noise table
    (``outputs.summary``, ``outputs.noise``).

    Each of ``params.records`` names ``experiment, dataset, teacher, model`` and the paths
    of its ``spectrum`` JSON, ``noise`` Parquet and ``meta`` JSON.
    """
    outputs = _named(outputs)
    rows, noise_rows = [], []
    for rec in _named(params)["records"]:
        keys = {k: rec[k] for k in RUN_KEYS} | model_keys(rec["model"])
        spec = load_json(rec["spectrum"])
        missing = [m for m in SPECTRUM_METRICS if m not in spec]
        if missing:
            raise ArtifactError(
                f"{rec['spectrum']}: missing {missing}; it was written by an older version "
                "of the spectrum rule, delete it so that Snakemake recomputes it"
            )
        curve = pd.read_parquet(rec["noise"])
        accuracies = ["accuracy", *(c for c in curve.columns if _is_knn_column(c))]
        clean = curve.loc[curve["sigma"] == 0.0, accuracies]
        rows.append(
            keys
            | {
                "params": int(load_json(rec["meta"])["params"]),
                **{m: _summary_value(spec[m]) for m in SPECTRUM_METRICS},
                **{
                    f"clean_{c}": float(clean[c].iloc[0]) if len(clean) else float("nan")
                    for c in accuracies
                },
            }
        )
        noise_rows.append(curve[["sigma", *accuracies]].assign(**keys))
    save_parquet(outputs["summary"], pd.DataFrame(rows))
    noise = pd.concat(noise_rows, ignore_index=True)
    knn = [c for c in noise.columns if _is_knn_column(c)]
    cols = [*RUN_KEYS, "role", "student", "objective", "seed", "sigma", "accuracy", *knn]
    save_parquet(outputs["noise"], noise[cols])


def _is_knn_column(column: str) -> bool:
    """A ``knn<k>_accuracy`` column of a noise Parquet (see :func:`knn_columns`)."""
    k = column.removeprefix("knn").removesuffix("_accuracy")
    return column.startswith("knn") and column.endswith("_accuracy") and k.isdigit()


def _summary_value(value: Any) -> Any:
    """A spectrum JSON value as a summary cell: None (e.g. exact uniformity, no
    subsample) becomes NaN so that the column stays numeric."""
    return float("nan") if value is None else value


# --------------------------------------------------------------------------- corruptions


def download_corruptions(inputs: Named, outputs: Named, params: Named) -> None:
    """Fetch one corruption archive (``outputs.archive``) from ``params.url``, verify
    ``params.md5``: the same verified download as the datasets'."""
    from kdspectra.download import download as fetch

    params = _named(params)
    fetch(params["url"], params["md5"], Path(_named(outputs)["archive"]))


def corruptions_fixture(inputs: Named, outputs: Named, params: Named) -> None:
    """A synthetic corruption archive (``outputs.archive``, directory SYNTHETIC-C, never
    CIFAR-C) of the prepared test split in ``params.data_dir``
    (:func:`kdspectra.corruption_fixture.write_fixture`)."""
    from kdspectra.corruption_fixture import write_fixture

    write_fixture(_named(params)["data_dir"], _named(outputs)["archive"])


def measure_corruptions(inputs: Named, outputs: Named, params: Named) -> None:
    """One model's probe and kNN accuracy on every (corruption, severity) set of
    ``inputs.archive`` (``outputs.accuracy``: :func:`kdspectra.corruptions.score_corruptions`
    columns plus ``knn<k>_accuracy`` per ``params.knn_k``, ``knn_accuracy`` = the first k,
    and ``probe_C``).

    The probe is the noise stage's: :func:`kdspectra.probe.fit_probe` with ``params.probe``
    on the model's clean ``inputs.train`` embeddings and ``train_labels``, so the
    accuracies sit on the noise curve's scale. The model is a student when ``inputs``
    names its ``weights`` and ``meta``, else the teacher ``params.spec``; it embeds each
    set in fp32 on ``params.device`` in batches of ``params.batch_size``, one corruption
    member in memory at a time. The archive is checked whole (members, headers, labels
    against ``test_labels``) before the model is even built.
    """
    import itertools
    from functools import partial

    from kdspectra.corruptions import iter_corruption_sets, score_corruptions
    from kdspectra.device import resolve_device
    from kdspectra.probe import fit_probe

    inputs, params = _named(inputs), _named(params)
    ytr, yte = load_labels(inputs["train_labels"]), load_labels(inputs["test_labels"])
    xtr = load_embeddings(inputs["train"], rows=len(ytr))
    names, severities = params["corruptions"], params["severities"]
    sets = iter_corruption_sets(inputs["archive"], names, severities, yte)
    sets = itertools.chain([next(sets)], sets)  # the archive's checks run here, first
    embed = _corruption_embedder(inputs, params, resolve_device(params["device"]))
    fitted = fit_probe(xtr, ytr, **params["probe"])
    temperature = float(params.get("knn_temperature", KNN_TEMPERATURE))
    ks = knn_columns(params.get("knn_k", KNN_K))
    scorers = {
        column: partial(_knn_scorer, xtr, ytr, k=k, temperature=temperature)
        for k, column in ks.items()
    }
    t0 = time.perf_counter()
    frame = score_corruptions(embed, fitted, sets, yte, knn=scorers)
    log.info("%d sets scored in %.1fs", len(frame), time.perf_counter() - t0)
    frame["knn_accuracy"] = frame[next(iter(ks.values()))]
    frame["knn_k"] = next(iter(ks))
    frame["probe_C"] = fitted.C
    save_parquet(_named(outputs)["accuracy"], frame)


def _knn_scorer(
    xtr: np.ndarray,
    ytr: np.ndarray,
    emb: np.ndarray,
    yte: np.ndarray,
    *,
    k: int,
    temperature: float,
) -> float:
    """kNN accuracy of ``emb`` against the clean train embeddings (picklable, unlike a lambda)."""
    from kdspectra.probe import knn_accuracy

    return knn_accuracy(xtr, ytr, emb, yte, k=k, temperature=temperature)


def _corruption_embedder(inputs: Named, params: Named, device: Any) -> Any:
    """uint8 images → fp32 embeddings of the student (``inputs.weights``) or the teacher."""
    bs = int(params["batch_size"])
    if "weights" in inputs:
        from kdspectra.inference import embed_images

        model = _load_trained(inputs["weights"], inputs["meta"], device)
        return lambda x: embed_images(model, x, device=device, batch_size=bs)
    from kdspectra.teachers import build_teacher

    teacher = build_teacher(params["spec"], device=device)
    return lambda x: teacher.embed(x, batch_size=bs)


CORRUPTION_COLUMNS = (
    "experiment", "role", "student", "objective", "seed",
    "corruption", "severity", "accuracy", "knn_accuracy",
)  # fmt: skip


def collect_corruptions(inputs: Named, outputs: Named, params: Named) -> None:
    """The run's long corruption table (``outputs.corruptions``: :data:`CORRUPTION_COLUMNS`,
    then the other kNN columns) from every model's Parquet; ``params.records`` name each
    one's ``experiment``, ``model`` and ``path`` (a teacher's file serves every experiment
    that uses it)."""
    frames = []
    for rec in _named(params)["records"]:
        frame = pd.read_parquet(rec["path"])
        frames.append(frame.assign(experiment=rec["experiment"], **model_keys(rec["model"])))
    data = pd.concat(frames, ignore_index=True)
    extra = [c for c in data.columns if _is_knn_column(c) or c == "knn_k"]
    save_parquet(_named(outputs)["corruptions"], data[[*CORRUPTION_COLUMNS, *extra]])


def corruption_table(inputs: Named, outputs: Named, params: Named) -> None:
    """``tables/corruptions.{csv,md}`` (+ provenance sidecar) from the run's corruption
    table and summary (:func:`kdspectra.corruption_tables.corruption_table`)."""
    from kdspectra import corruption_tables, render

    inputs, out, params = _named(inputs), _named(outputs), _named(params)
    frame = corruption_tables.corruption_table(
        pd.read_parquet(inputs["corruptions"]),
        pd.read_parquet(inputs["summary"]),
        **params["options"],
    )
    provenance = Provenance.from_dict(params["provenance"])
    save_csv(out["csv"], frame)
    save_json(out["provenance"], provenance.to_dict())
    note = corruption_tables.NOTE
    save_text(out["md"], render.to_markdown(frame, "corruptions", provenance, note=note))


def fig5(inputs: Named, outputs: Named, params: Named) -> None:
    """Figure 5 (``outputs.png``/``pdf``): accuracy vs severity per corruption family and
    student, beside the Gaussian-noise curve (:func:`kdspectra.corruption_figure.fig5`)."""
    from kdspectra.corruption_figure import fig5 as draw

    inputs, out, params = _named(inputs), _named(outputs), _named(params)
    draw(
        pd.read_parquet(inputs["corruptions"]),
        pd.read_parquet(inputs["noise"]),
        Provenance.from_dict(params["provenance"]),
        png=out["png"],
        pdf=out["pdf"],
        **params["options"],
    )


# --------------------------------------------------------------------------- report


def resolved_config(inputs: Named, outputs: Named, params: Named) -> None:
    """Record the exact config the run used, defaults filled in (``outputs.config``)."""
    import yaml

    config = _named(params)["config"]
    save_text(_named(outputs)["config"], yaml.safe_dump(dict(config), sort_keys=False))


def _report_inputs(inputs: Named) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run summary and the long noise table every report rule reads."""
    inputs = _named(inputs)
    return pd.read_parquet(inputs["summary"]), pd.read_parquet(inputs["noise"])


def table(inputs: Named, outputs: Named, params: Named) -> None:
    """Render one table as CSV (+ ``md``/``tex`` when ``outputs`` names them).

    The table is named by its CSV file's stem (``table1``, ``table2``, ``ablation``,
    ``teachers``, ``fig2``, ``fig3``). The CSV gets a ``<table>.provenance.json`` sidecar
    (``outputs.provenance``): commit, config hash, teacher weights and the random-init
    flag, which a CSV cannot carry. ``params.options`` are the builder's options.
    """
    from kdspectra import render, tables

    out, params = _named(outputs), _named(params)
    kind = Path(out["csv"]).stem
    frame = tables.build(kind, *_report_inputs(inputs), **params["options"])
    provenance = Provenance.from_dict(params["provenance"])
    save_csv(out["csv"], frame)
    save_json(out["provenance"], provenance.to_dict())
    if "md" in out:
        save_text(out["md"], render.to_markdown(frame, kind, provenance))
    if "tex" in out:
        save_text(out["tex"], render.to_latex(frame, kind, provenance))


# The data tables behind Figures 2 and 3 (and the teachers' table): CSV only.
data_table = table


def fig4_data(inputs: Named, outputs: Named, params: Named) -> None:
    """Figure 4's data table (``outputs.csv`` with its ``outputs.provenance`` sidecar) from
    every run's tracked geometry: ``inputs.metrics`` and ``inputs.meta`` are row-paired
    lists of metrics.csv / meta.json (:func:`kdspectra.dynamics.fig4_data`)."""
    from kdspectra.dynamics import fig4_data as build

    inputs, out, params = _named(inputs), _named(outputs), _named(params)
    experiment = str(params["options"].get("experiment", ""))
    frame = build(list(inputs["metrics"]), list(inputs["meta"]), experiment=experiment)
    save_csv(out["csv"], frame)
    save_json(out["provenance"], Provenance.from_dict(params["provenance"]).to_dict())


def claims(inputs: Named, outputs: Named, params: Named) -> None:
    """Judge the paper's claims on the run: ``outputs`` holds ``csv``, ``md`` and
    ``provenance``; ``params.options`` are :func:`kdspectra.claims.claims_frame` keyword
    arguments plus ``omitted`` (report artifacts left out, listed in the .md)."""
    from kdspectra import claims as judge

    out, params = _named(outputs), _named(params)
    opts = dict(params["options"])
    omitted = opts.pop("omitted", [])
    provenance = Provenance.from_dict(params["provenance"])
    corrupted = _named(inputs).get("corruptions") or None  # [] when the stage is off
    frame = judge.claims_frame(
        *_report_inputs(inputs),
        random_init=provenance.random_init,
        corruptions=pd.read_parquet(corrupted) if corrupted else pd.DataFrame(),
        **opts,
    )
    save_csv(out["csv"], frame)
    save_json(out["provenance"], provenance.to_dict())
    save_text(out["md"], judge.to_markdown(frame, provenance, omitted))


def paper_comparison(inputs: Named, outputs: Named, params: Named) -> None:
    """Every number of the paper beside ours (``outputs.md``)."""
    from kdspectra import paper

    params = _named(params)
    text = paper.paper_comparison(
        *_report_inputs(inputs), Provenance.from_dict(params["provenance"]), **params["options"]
    )
    save_text(_named(outputs)["md"], text)


def figure(inputs: Named, outputs: Named, params: Named) -> None:
    """Render Figure 1, 2 or 3 (named by the PNG's stem) as PNG and PDF; ``inputs`` are
    the spectra (Figure 1) or the data table (Figures 2 and 3)."""
    from kdspectra import figures

    out, params = _named(outputs), _named(params)
    figures.build(
        Path(out["png"]).stem,
        _named(inputs),
        Provenance.from_dict(params["provenance"]),
        png=out["png"],
        pdf=out["pdf"],
        **params["options"],
    )
