"""Stages of `workflow/rules/data.smk`: fetch a dataset archive, prepare its arrays."""

from __future__ import annotations

from pathlib import Path

from kdspectra.io import save_json
from kdspectra.stages._common import Named, _named


def download(inputs: Named, outputs: Named, params: Named) -> None:
    """Fetch one dataset archive (``outputs.archive``) from ``params.url`` and verify
    ``params.md5``."""
    from kdspectra.data.download import download as fetch

    params = _named(params)
    fetch(params["url"], params["md5"], Path(_named(outputs)["archive"]))


def prepare_dataset(inputs: Named, outputs: Named, params: Named) -> None:
    """Turn ``inputs.archive`` (none for built-in sets) into the prepared uint8 arrays in
    ``params.outdir``, with ``outputs.source`` recording ``params.source`` and the format."""
    from kdspectra.data.datasets import prepare_dataset as prepare

    params, outputs = _named(params), _named(outputs)
    fmt, archive = params["fmt"], _named(inputs).get("archive") or None
    info = prepare(fmt, Path(archive) if archive else None, Path(params["outdir"]))
    save_json(outputs["source"], {**dict(params["source"]), "format": fmt, **info})
