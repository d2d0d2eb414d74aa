"""Stages of `workflow/rules/teachers.smk`: pretraining the teachers trained here, the
teacher's embeddings (clean, noisy test copies, cached train views) and its sanity
metrics."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from kdspectra.data.embeddings import save_embeddings
from kdspectra.data.noise import embed_noisy
from kdspectra.errors import ConfigError
from kdspectra.io import array_digest, load_json, load_npy, save_json, save_npy
from kdspectra.stages._common import Named, _named, load_split, log


def pretrain_teacher(inputs: Named, outputs: Named, params: Named) -> None:
    """Train a ``pretrain`` teacher on the train split of its dataset; write its weights.

    ``inputs`` holds ``data`` (the train images and labels; the test split is no input and
    is never read) and ``classes`` (classes.txt, the captions' class names); ``outputs``
    ``weights`` (.safetensors) and ``meta`` (.json); ``params`` the teacher ``spec``,
    ``device``, ``data_dir`` and ``checkpoint`` (resumed when it exists, deleted at the end).
    """
    from kdspectra.models.teacher_libraries import pretrain_size
    from kdspectra.models.teacher_spec import parse_spec
    from kdspectra.models.towers import TowerArch
    from kdspectra.runtime.device import resolve_device
    from kdspectra.training.pretrain import PretrainConfig, pretrain

    params, out, inp = _named(params), _named(outputs), _named(inputs)
    spec = parse_spec(params["spec"])
    pre = spec.pretrain
    if pre is None:
        raise ConfigError(
            f"config key '{spec.key('pretrain')}': rule pretrain_teacher needs it, found none"
        )
    images, labels = load_split(params["data_dir"], "train")
    classes = [c for c in Path(inp["classes"]).read_text().splitlines() if c]
    meta = pretrain(
        TowerArch.from_spec(spec.model, pretrain_size(spec), pre),
        PretrainConfig.from_spec(pre),
        images,
        labels,
        classes,
        device=resolve_device(params["device"]),
        weights_out=Path(out["weights"]),
        meta_out=Path(out["meta"]),
        checkpoint=Path(params["checkpoint"]),
        provenance={"teacher": spec.name, "spec": dict(params["spec"]),
                    "data_dir": str(params["data_dir"]), "classes": classes},
    )  # fmt: skip
    log.info("pretrained %s in %.1f s, final loss %.4f", spec.name, meta["seconds"],
             meta["final_loss"])  # fmt: skip


def _weights(inputs: Named) -> Any:
    """The weights rule pretrain_teacher wrote, for a teacher trained here (else None)."""
    return _named(inputs).get("weights") or None


def _digests(out: Mapping[str, Any]) -> dict[str, str]:
    """:func:`kdspectra.io.array_digest` of the train and test files as written: what
    measurement compares them with (:func:`kdspectra.stages.evaluate.check_teacher_files`)."""
    from kdspectra.data.embeddings import load_embeddings

    return {s: array_digest(load_embeddings(out[s])) for s in ("train", "test")}


def extract_teacher(inputs: Named, outputs: Named, params: Named) -> None:
    """Teacher embeddings of train and test, a JSON of how they were made, sanity metrics.

    ``outputs`` holds ``train``, ``test`` (.npy), ``train_parquet``, ``test_parquet``,
    ``meta`` and ``sanity`` (.json); ``inputs.weights`` (optional) the weights of a
    teacher trained here; ``params`` the teacher ``spec``, ``device``,
    ``data_dir`` and ``probe`` (:func:`kdspectra.metrics.probe.fit_probe` keyword arguments, see
    :func:`kdspectra.config.probe_options`), optionally ``knn_k`` (one k) and
    ``knn_temperature``. The sanity JSON is :func:`kdspectra.metrics.sanity.teacher_sanity`
    (geometry of the test rows, probe and kNN accuracy, ``degenerate`` with its reasons)
    plus the weights source; a degenerate teacher is also a warning in the log.
    """
    from kdspectra.metrics.sanity import teacher_sanity
    from kdspectra.models.teachers import build_teacher
    from kdspectra.runtime.device import device_record, resolve_device

    params, out = _named(params), _named(outputs)
    spec, data_dir, probe = params["spec"], params["data_dir"], params.get("probe")
    device = resolve_device(params["device"])
    teacher = build_teacher(spec, device=device, weights=_weights(inputs))
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
    save_json(out["meta"], meta | {"digests": _digests(out)})
    sanity = teacher_sanity(
        *results["train"],
        *results["test"],
        probe=probe,
        knn_k=int(params.get("knn_k", 20)),
        knn_temperature=float(params.get("knn_temperature", 0.07)),
    )
    sanity["weights_source"] = teacher.weights_source
    log.info("teacher sanity: %s", sanity)
    if sanity["degenerate"]:
        log.warning(
            "teacher %s is DEGENERATE (%s): claims built on it are not tested",
            spec.get("name"),
            "; ".join(sanity["degenerate_reasons"]),
        )
    save_json(out["sanity"], sanity)


def extract_teacher_noisy(inputs: Named, outputs: Named, params: Named) -> None:
    """Teacher embeddings of the test split at every noise level (``outputs.noisy``, S×N×D)
    for ``params.sigmas`` drawn from ``params.seed``."""
    from kdspectra.models.teachers import build_teacher
    from kdspectra.runtime.device import resolve_device

    params = _named(params)
    spec = params["spec"]
    teacher = build_teacher(spec, device=resolve_device(params["device"]), weights=_weights(inputs))
    images, _ = load_split(params["data_dir"], "test")
    bs = int(spec.get("batch_size", 256))
    noisy = embed_noisy(
        lambda x: teacher.embed(x, batch_size=bs), images, params["sigmas"], params["seed"]
    )
    save_npy(_named(outputs)["noisy"], noisy)


def extract_teacher_views(inputs: Named, outputs: Named, params: Named) -> None:
    """Teacher embeddings of K seeded views of every train image.

    ``outputs.views`` gets a K×N×D float32 array, view k of image i made by
    :func:`kdspectra.data.views.cached_view_params` from ``params.views`` (the training keys
    ``teacher_views_k``, ``teacher_views_seed`` and ``augment``); training replays exactly
    these views (``teacher_view: same``). ``outputs.meta`` records how. Costs K
    extractions of the train split.
    """
    import torch

    from kdspectra.data.views import apply_view, cached_view_params
    from kdspectra.models.teachers import build_teacher
    from kdspectra.runtime.device import resolve_device

    params, out = _named(params), _named(outputs)
    spec, training = params["spec"], params["views"]
    device = resolve_device(params["device"])
    teacher = build_teacher(spec, device=device, weights=_weights(inputs))
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


def recolour_teacher(inputs: Named, outputs: Named, params: Named) -> None:
    """A re-coloured teacher's files, derived from its base teacher's (the mirror dial).

    One map (:func:`kdspectra.models.recolour.fit_recolouring`, ``params.recolour``:
    ``alpha``, ``cone``, ``seed``) is fitted on ``inputs.train`` and applied to every array
    of the base teacher the pipeline reads: ``train``, ``test``, ``noisy`` (the test split
    at every σ) and, with ``teacher_view: same``, ``views`` (K cached views). ``outputs``
    mirror the extraction's (``train``, ``test`` with their parquet sidecars, ``noisy``,
    ``meta``, ``sanity``, optionally ``views`` and ``views_meta``) plus ``recolour``, the
    map's record: its parameters, the numerical rank, the target ER and the achieved ER of
    train and test. ``meta.json`` is the base's with that record under ``recolour``, so
    the provenance footers still name the weights behind the numbers. ``sanity.json`` is
    recomputed (``params.probe``, ``knn_k``, ``knn_temperature``) from the new
    embeddings: a cone moves the guards' numbers.
    """
    from kdspectra.data.embeddings import load_embeddings, load_labels
    from kdspectra.metrics.sanity import teacher_sanity
    from kdspectra.metrics.spectrum import effective_rank
    from kdspectra.models.recolour import fit_recolouring

    inp, out, params = _named(inputs), _named(outputs), _named(params)
    cell = params["recolour"]
    labels = {s: load_labels(inp[f"{s}_labels"]) for s in ("train", "test")}
    base = {s: load_embeddings(inp[s], rows=len(labels[s])) for s in ("train", "test")}
    fitted = fit_recolouring(base["train"], alpha=float(cell["alpha"]),
                             cone=float(cell["cone"]), seed=int(cell.get("seed", 0)))  # fmt: skip
    new = {s: fitted.apply(base[s]).astype(np.float32) for s in base}
    for split in new:
        save_embeddings(out[split], out[f"{split}_parquet"], new[split], labels[split], split)
    noisy = load_npy(inp["noisy"], dtype=np.float32, ndim=3, finite=True)
    save_npy(out["noisy"], fitted.apply(noisy).astype(np.float32))
    if "views" in out:
        views = load_npy(inp["views"], dtype=np.float32, ndim=3, finite=True)
        save_npy(out["views"], fitted.apply(views).astype(np.float32))
        save_json(out["views_meta"], load_json(inp["views_meta"]) | {"recolour": fitted.record()})
    record = fitted.record() | {
        "teacher": cell["teacher"],
        "achieved_er_train": effective_rank(new["train"]),
        "achieved_er_test": effective_rank(new["test"]),
        "base_er_test": effective_rank(base["test"]),
    }
    log.info("re-coloured %s: %s", cell["teacher"], record)
    save_json(out["recolour"], record)
    meta = load_json(inp["meta"])
    save_json(out["meta"], meta | {"recolour": record, "digests": _digests(out)})
    sanity = teacher_sanity(
        new["train"], labels["train"], new["test"], labels["test"],
        probe=params.get("probe"), knn_k=int(params.get("knn_k", 20)),
        knn_temperature=float(params.get("knn_temperature", 0.07)),
    )  # fmt: skip
    save_json(out["sanity"], sanity | {"weights_source": meta.get("weights_source")})
