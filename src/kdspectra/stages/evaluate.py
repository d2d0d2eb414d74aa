"""Stages of `workflow/rules/evaluate.smk`: one model's spectrum and geometry and its probe
and kNN accuracy under noise (one job: :func:`measure_model`), and the run summary that
gathers them. The columns they write are :mod:`kdspectra.report.columns`'s; the metrics,
:mod:`kdspectra.metrics.catalog`'s."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdspectra.data.embeddings import load_embeddings, load_labels
from kdspectra.errors import ArtifactError
from kdspectra.io import array_digest, load_json, load_npy, save_json, save_parquet
from kdspectra.metrics.catalog import METRICS
from kdspectra.report.columns import (
    RUN_KEYS,
    SPECTRUM_KEYS,
    accuracy_columns,
    clean_column,
    knn_columns,
    model_keys,
    noise_columns,
)
from kdspectra.stages._common import Named, PathLike, _named


def measure_model(inputs: Named, outputs: Named, params: Named) -> None:
    """Everything measured of one model, in one job: its spectrum and geometry
    (``outputs.values`` and ``outputs.stats``, :func:`_measure_spectrum`) and its probe and
    kNN accuracy under noise (``outputs.accuracy``, :func:`_measure_noise`).

    Each part runs when ``outputs`` names its files, so a caller can ask for one; the rule
    asks for both. ``inputs`` and ``params`` are the union of the parts' (their keys do
    not overlap). One job instead of two per model saves a process start-up and the
    array imports, about as long as the spectrum itself; the demo measures ~40 models.
    """
    out = _named(outputs)
    spectrum, noise = {"values", "stats"} <= set(out), "accuracy" in out
    if not spectrum and not noise:
        raise ArtifactError(
            f"measure_model: outputs name neither values/stats nor accuracy: {sorted(out)}"
        )
    if spectrum:
        _measure_spectrum(inputs, outputs, params)
    if noise:
        _measure_noise(inputs, outputs, params)


def _measure_spectrum(inputs: Named, outputs: Named, params: Named) -> None:
    """Singular values (``outputs.values``) and every geometry metric (``outputs.stats``)
    of one model's test embeddings (``inputs.test``).

    Records ``effective_rank`` (raw rows: the paper's number), ``effective_rank_l2``
    (rows L2-normalised first), ``norm_cv`` and ``rank_ceiling``, and beside them every
    metric of :func:`kdspectra.metrics.geometry.geometry_metrics` (RankMe, participation ratio,
    stable rank, α-ReQ with its R², fit bounds ``params.alpha_req_fit`` and point count,
    the window actually fitted (``alpha_req_window``, clipped at the rank) and
    ``alpha_req_reason`` (why α is NaN or how the window was clipped; null when neither),
    uniformity with its subsample size): researchers compare several and each catches
    what ER misses. For students (those with an ``inputs.teacher``, the teacher's test
    embeddings) also ``cos_to_teacher`` and ``linear_cka`` to the teacher on the same
    images (NaN for the teacher): InfoNCE trades alignment for uniformity and a reader
    must see both; the student's ``inputs.meta`` JSON must then carry ``feature_width``,
    the head's input width that caps its rank. With ``inputs.labels`` (the test labels)
    the embeddings must have one row per label, so a matrix from another split or run is
    named here instead of becoming a plausible rank, and ``per_class_effective_rank`` is
    recorded (NaN without labels).

    The guards (:mod:`kdspectra.metrics.sanity`): ``mean_pairwise_cosine`` and
    ``centred_energy_share`` of every model, ``chance_accuracy`` of the labels, and with
    ``inputs.teacher_train`` (the teacher's train embeddings) ``constant_cosine`` (c0, the
    teacher's mean direction's cosine to its test rows) and, for students,
    ``fidelity_gain`` = (cos_to_teacher − c0)/(1 − c0); NaN where an input is missing.
    Both values and stats must be named in ``outputs``.
    """
    from kdspectra.metrics.geometry import alpha_req_fit, geometry_metrics
    from kdspectra.metrics.spectrum import (
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
    if teacher_test is not None:
        _check_teacher_digest(inputs.get("meta"), inputs.get("teacher_train"))
    # the teacher's files against the digests its extraction recorded (test: the student's
    # reference, or the teacher's own rows when the teacher is the model measured)
    check_teacher_files(
        inputs.get("teacher_meta"),
        {"train": inputs.get("teacher_train"), "test": teacher_test or inputs["test"]},
    )
    teacher = (
        load_embeddings(teacher_test, rows=emb.shape[0], dim=emb.shape[1])
        if teacher_test is not None
        else None
    )
    sv = singular_values(emb)
    geo = geometry_metrics(emb, labels, teacher, alpha_fit=fit, centred_sv=sv)
    # the same fit as geometry_metrics' alpha_req (same singular values and window): where
    # it was clipped at the rank, or why α is NaN, belongs beside the value
    power_law = alpha_req_fit(sv, *fit)
    stats: dict[str, Any] = {
        "n": int(emb.shape[0]),
        "dim": int(emb.shape[1]),
        # the catalog's stage-only metrics
        "effective_rank_rv": effective_rank_from_singular_values(sv, "roy_vetterli"),
        "norm_cv": norm_cv(emb),
        "rank_ceiling": rank_ceiling(emb.shape[0], emb.shape[1], width),
        # every catalog metric of geometry_metrics under its pipeline name (cos_to_reference
        # is cos_to_teacher); NaN where its labels or reference were not given
        **{m.column: geo.get(m.name, float("nan")) for m in METRICS if m.source == "geometry"},
        "alpha_req_fit": list(fit),
        "alpha_req_window": list(power_law.window),
        "alpha_req_reason": power_law.reason or None,
        **_guards(emb, labels, teacher, inputs.get("teacher_train")),
    }
    values = pd.DataFrame({"index": np.arange(len(sv)), "singular_value": sv})
    save_parquet(outputs["values"], values)
    save_json(outputs["stats"], stats)


def _guards(
    emb: np.ndarray,
    labels: np.ndarray | None,
    teacher_test: np.ndarray | None,
    teacher_train: PathLike | None,
) -> dict[str, float]:
    """The catalog's guard entries of one model (see :func:`_measure_spectrum`)."""
    from kdspectra.metrics import sanity

    nan = float("nan")
    out = {
        "mean_pairwise_cosine": sanity.mean_pairwise_cosine(emb),
        "centred_energy_share": sanity.centred_energy_share(emb),
        "chance_accuracy": nan if labels is None else sanity.chance_accuracy(labels),
        "constant_cosine": nan,
        "fidelity_gain": nan,
    }
    if teacher_train is None:
        return out
    train = load_embeddings(teacher_train, dim=emb.shape[1])
    # The teacher's own test rows are ``emb`` when no teacher_test is given (the teacher).
    reference = emb if teacher_test is None else teacher_test
    out["constant_cosine"] = sanity.constant_predictor_cosine(train, reference)
    if teacher_test is not None:
        out["fidelity_gain"] = sanity.fidelity_gain(emb, train, teacher_test)
    return out


def _alpha_fit(params: Named) -> tuple[int, int]:
    """``params.alpha_req_fit`` ([lo, hi), config ``evaluation.alpha_req_fit``) checked
    here, so a bad range names the config key instead of failing inside the fit."""
    from kdspectra.metrics.geometry import ALPHA_FIT

    fit = params.get("alpha_req_fit", ALPHA_FIT)
    ok = len(fit) == 2 and all(isinstance(b, int) and not isinstance(b, bool) for b in fit)
    if not ok or not 1 <= fit[0] < fit[1]:
        raise ArtifactError(
            f"evaluation.alpha_req_fit: expected two integers [lo, hi) with 1 <= lo < hi, "
            f"found {fit!r}"
        )
    return int(fit[0]), int(fit[1])


def _check_teacher_digest(meta: PathLike | None, teacher_train: PathLike | None) -> None:
    """Refuse a teacher whose train embeddings are not the ones the student was trained on.

    Training records ``inputs.teacher_digest`` (:func:`kdspectra.io.
    array_digest` of the clean train targets) in the student's meta.json. A teacher file
    rewritten since (re-extracted, edited in place with its mtime restored, so Snakemake
    sees nothing) would compare the student with a teacher it never saw. With
    ``teacher_view: same`` the digest is of the cached views, which this stage does not read.
    """
    if meta is None or teacher_train is None:
        return
    record = load_json(meta)
    recorded = (record.get("inputs") or {}).get("teacher_digest")
    if recorded is None or record.get("teacher_view", "clean") != "clean":
        return
    found = array_digest(load_embeddings(teacher_train))
    if found != recorded:
        raise ArtifactError(
            f"{teacher_train}: not the teacher embeddings the student was trained on: {meta} "
            f"records teacher_digest {recorded}, the file now hashes to {found}. Re-extract "
            f"the teacher (delete {teacher_train}) or retrain the student (delete its folder)"
        )


def check_teacher_files(meta: PathLike | None, files: Mapping[str, PathLike | None]) -> None:
    """Refuse a teacher file that is not what its extraction wrote: ``meta`` (the teacher's
    meta.json) records ``digests`` of train and test; a file edited in place with its mtime
    restored (Snakemake sees nothing) would put another teacher's numbers in the tables.
    Extractions from before the digests were recorded are not checked."""
    if meta is None:
        return
    recorded = load_json(meta).get("digests") or {}
    for split, path in files.items():
        if path is None or split not in recorded:
            continue
        found = array_digest(load_embeddings(path))
        if found != recorded[split]:
            raise ArtifactError(
                f"{path}: not the teacher embeddings its extraction wrote: {meta} records "
                f"{split} digest {recorded[split]}, the file now hashes to {found}. "
                f"Re-extract the teacher (delete {Path(path).parent})"
            )


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


def _measure_noise(inputs: Named, outputs: Named, params: Named) -> None:
    """Linear-probe and kNN accuracy under every noise level (``outputs.accuracy``): a probe
    (``params.probe``) fit on ``inputs.train`` embeddings and ``train_labels``, scored on
    ``inputs.noisy`` (one test copy per ``params.sigmas``) against ``test_labels``.

    Beside the probe's ``accuracy``, one ``knn<k>_accuracy`` column per ``params.knn_k``
    (default :data:`KNN_K`): the weighted kNN of :func:`kdspectra.metrics.probe.knn_accuracy` with
    temperature ``params.knn_temperature``, on the same clean train embeddings. SSL papers
    report both; the kNN has no fitted parameters, so it cannot absorb a noisy geometry.
    """
    from kdspectra.metrics.probe import fit_probe, noise_accuracy

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


def _knn_curve(
    xtr: np.ndarray, ytr: np.ndarray, noisy: np.ndarray, yte: np.ndarray, k: int, params: Named
) -> list[float]:
    """kNN accuracy of every noisy test copy against the clean train embeddings."""
    from kdspectra.metrics.probe import knn_accuracy

    temperature = float(params.get("knn_temperature", KNN_TEMPERATURE))
    return [knn_accuracy(xtr, ytr, block, yte, k=k, temperature=temperature) for block in noisy]


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
        missing = [m for m in SPECTRUM_KEYS if m not in spec]
        if missing:
            raise ArtifactError(
                f"{rec['spectrum']}: missing {missing}; it was written by an older version "
                "of the spectrum rule, delete it so that Snakemake recomputes it"
            )
        curve = pd.read_parquet(rec["noise"])
        accuracies = accuracy_columns(curve.columns)
        clean = curve.loc[curve["sigma"] == 0.0, accuracies]
        rows.append(
            keys
            | {
                "params": int(load_json(rec["meta"])["params"]),
                **{m: _summary_value(spec[m]) for m in SPECTRUM_KEYS},
                **{
                    clean_column(c): float(clean[c].iloc[0]) if len(clean) else float("nan")
                    for c in accuracies
                },
            }
        )
        noise_rows.append(curve[["sigma", *accuracies]].assign(**keys))
    save_parquet(outputs["summary"], pd.DataFrame(rows))
    noise = pd.concat(noise_rows, ignore_index=True)
    save_parquet(outputs["noise"], noise[noise_columns(noise.columns)])


def _summary_value(value: Any) -> Any:
    """A spectrum JSON value as a summary cell: None (e.g. exact uniformity, no
    subsample) becomes NaN so that the column stays numeric."""
    return float("nan") if value is None else value
