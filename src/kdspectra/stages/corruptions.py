"""Stages of `workflow/rules/corruptions.smk`: CIFAR-C download (or the synthetic fixture),
per-model scoring with the noise stage's probe and kNN, the run's corruption table, its
report table and Figure 5."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kdspectra.data.embeddings import load_embeddings, load_labels
from kdspectra.io import save_csv, save_json, save_parquet, save_text
from kdspectra.report.columns import corruption_columns, knn_columns, model_keys
from kdspectra.report.provenance import Provenance
from kdspectra.stages._common import Named, _load_trained, _named, log
from kdspectra.stages.evaluate import KNN_K, KNN_TEMPERATURE


def download_corruptions(inputs: Named, outputs: Named, params: Named) -> None:
    """Fetch one corruption archive (``outputs.archive``) from ``params.url``, verify
    ``params.md5``: the same verified download as the datasets'."""
    from kdspectra.data.download import download as fetch

    params = _named(params)
    fetch(params["url"], params["md5"], Path(_named(outputs)["archive"]))


def corruptions_fixture(inputs: Named, outputs: Named, params: Named) -> None:
    """A synthetic corruption archive (``outputs.archive``, directory SYNTHETIC-C, never
    CIFAR-C) of the prepared test split in ``params.data_dir``
    (:func:`kdspectra.data.corruption_fixture.write_fixture`)."""
    from kdspectra.data.corruption_fixture import write_fixture

    write_fixture(_named(params)["data_dir"], _named(outputs)["archive"])


def measure_corruptions(inputs: Named, outputs: Named, params: Named) -> None:
    """One model's probe and kNN accuracy on every (corruption, severity) set of
    ``inputs.archive`` (``outputs.accuracy``: :func:`kdspectra.data.corruptions.score_corruptions`
    columns plus ``knn<k>_accuracy`` per ``params.knn_k``, ``knn_accuracy`` = the first k,
    and ``probe_C``).

    The probe is the noise stage's: :func:`kdspectra.metrics.probe.fit_probe` with ``params.probe``
    on the model's clean ``inputs.train`` embeddings and ``train_labels``, so the
    accuracies sit on the noise curve's scale. The model is a student when ``inputs``
    names its ``weights`` and ``meta``, else the teacher ``params.spec``; it embeds each
    set in fp32 on ``params.device`` in batches of ``params.batch_size``, one corruption
    member in memory at a time. The archive is checked whole (members, headers, labels
    against ``test_labels``) before the model is even built.
    """
    import itertools
    from functools import partial

    from kdspectra.data.corruptions import iter_corruption_sets, score_corruptions
    from kdspectra.metrics.probe import fit_probe
    from kdspectra.runtime.device import resolve_device

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
    total = len(names) * len(severities)
    frame = score_corruptions(embed, fitted, sets, yte, knn=scorers, total=total)
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
    from kdspectra.metrics.probe import knn_accuracy

    return knn_accuracy(xtr, ytr, emb, yte, k=k, temperature=temperature)


def _corruption_embedder(inputs: Named, params: Named, device: Any) -> Any:
    """uint8 images → fp32 embeddings of the student (``inputs.weights``) or the teacher."""
    bs = int(params["batch_size"])
    if "weights" in inputs:
        from kdspectra.models.inference import embed_images

        model = _load_trained(inputs["weights"], inputs["meta"], device)
        return lambda x: embed_images(model, x, device=device, batch_size=bs)
    from kdspectra.models.teachers import build_teacher

    weights = inputs.get("teacher_weights") or None  # a teacher trained here (pretrain:)
    teacher = build_teacher(params["spec"], device=device, weights=weights)
    return lambda x: teacher.embed(x, batch_size=bs)


def collect_corruptions(inputs: Named, outputs: Named, params: Named) -> None:
    """The run's long corruption table (``outputs.corruptions``, columns
    :func:`kdspectra.report.columns.corruption_columns`) from every model's Parquet;
    ``params.records`` name each one's ``experiment``, ``model`` and ``path`` (a teacher's
    file serves every experiment that uses it)."""
    frames = []
    for rec in _named(params)["records"]:
        frame = pd.read_parquet(rec["path"])
        frames.append(frame.assign(experiment=rec["experiment"], **model_keys(rec["model"])))
    data = pd.concat(frames, ignore_index=True)
    save_parquet(_named(outputs)["corruptions"], data[corruption_columns(data.columns)])


def corruption_table(inputs: Named, outputs: Named, params: Named) -> None:
    """``tables/corruptions.{csv,md}`` (+ provenance sidecar) from the run's corruption
    table and summary (:func:`kdspectra.report.corruption_tables.corruption_table`)."""
    from kdspectra.report import corruption_tables, render

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
    student, beside the Gaussian-noise curve (:func:`kdspectra.report.corruption_figure.fig5`)."""
    from kdspectra.report.corruption_figure import fig5 as draw

    inputs, out, params = _named(inputs), _named(outputs), _named(params)
    draw(
        pd.read_parquet(inputs["corruptions"]),
        pd.read_parquet(inputs["noise"]),
        Provenance.from_dict(params["provenance"]),
        png=out["png"],
        pdf=out["pdf"],
        **params["options"],
    )
