"""Stages of `workflow/rules/report.smk`: the resolved config, tables, data tables, Figure
4's data, the claims, the paper comparison and the figures, all from the run summary and
the long noise table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kdspectra.io import save_csv, save_json, save_text
from kdspectra.report.provenance import Provenance
from kdspectra.stages._common import Named, _named


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
    from kdspectra.report import render, tables

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
# The geometry table (tables/geometry.*): the same builder, its own rule and options.
geometry_table = table


def fig4_data(inputs: Named, outputs: Named, params: Named) -> None:
    """Figure 4's data table (``outputs.csv`` with its ``outputs.provenance`` sidecar) from
    every run's tracked geometry: ``inputs.metrics`` and ``inputs.meta`` are row-paired
    lists of metrics.csv / meta.json (:func:`kdspectra.report.dynamics.fig4_data`)."""
    from kdspectra.report.dynamics import fig4_data as build

    inputs, out, params = _named(inputs), _named(outputs), _named(params)
    experiment = str(params["options"].get("experiment", ""))
    frame = build(list(inputs["metrics"]), list(inputs["meta"]), experiment=experiment)
    save_csv(out["csv"], frame)
    save_json(out["provenance"], Provenance.from_dict(params["provenance"]).to_dict())


def claims(inputs: Named, outputs: Named, params: Named) -> None:
    """Judge the paper's claims on the run: ``outputs`` holds ``csv``, ``md`` and
    ``provenance``; ``params.options`` are :func:`kdspectra.paper.claims.claims_frame` keyword
    arguments plus ``omitted`` (report artifacts left out, listed in the .md);
    ``params.chance`` / ``params.min_fidelity_gain`` the robustness rows' chance accuracy and
    the fidelity guard; ``inputs.spectra`` Figure 1's spectra ([] when it is left out), in
    the order ``params.fig1`` (its student and seeds) describes."""
    from kdspectra.paper import claims as judge
    from kdspectra.paper import claims_markdown
    from kdspectra.paper.tracking import read_fig1_spectra

    inputs, out, params = _named(inputs), _named(outputs), _named(params)
    opts = dict(params["options"])
    omitted = opts.pop("omitted", [])
    provenance = Provenance.from_dict(params["provenance"])
    corrupted = inputs.get("corruptions") or None  # [] when the stage is off
    paths, fig1 = list(inputs.get("spectra") or []), params.get("fig1") or {}
    spectra = read_fig1_spectra(paths, list(fig1["seeds"]), str(fig1["student"])) if paths else None
    frame = judge.claims_frame(
        *_report_inputs(inputs),
        random_init=provenance.random_init,
        corruptions=pd.read_parquet(corrupted) if corrupted else pd.DataFrame(),
        chance=params.get("chance"),
        min_fidelity_gain=float(params.get("min_fidelity_gain", 0.25)),
        spectra=spectra,
        **opts,
    )
    save_csv(out["csv"], frame)
    save_json(out["provenance"], provenance.to_dict())
    save_text(out["md"], claims_markdown.to_markdown(frame, provenance, omitted))


def paper_comparison(inputs: Named, outputs: Named, params: Named) -> None:
    """Every number of the paper beside ours (``outputs.md``)."""
    from kdspectra.paper import comparison as paper

    params = _named(params)
    text = paper.paper_comparison(
        *_report_inputs(inputs), Provenance.from_dict(params["provenance"]), **params["options"]
    )
    save_text(_named(outputs)["md"], text)


def figure(inputs: Named, outputs: Named, params: Named) -> None:
    """Render Figure 1, 2, 3 or 4 (named by the PNG's stem) as PNG and PDF; ``inputs`` are
    the spectra (Figure 1) or the data table (Figures 2-4); ``params.chance`` draws
    Figure 3's chance line."""
    from kdspectra.report import figures

    out, params = _named(outputs), _named(params)
    figure = Path(out["png"]).stem
    options = dict(params["options"])
    if figure == "fig3_noise_robustness" and params.get("chance") is not None:
        options["chance"] = float(params["chance"])
    figures.build(
        figure,
        _named(inputs),
        Provenance.from_dict(params["provenance"]),
        png=out["png"],
        pdf=out["pdf"],
        **options,
    )


def fig6_mirror(inputs: Named, outputs: Named, params: Named) -> None:
    """Figure 6 (the mirror) as PNG and PDF, and its data as ``outputs.csv``, from the run
    summary (``inputs.summary``) and the dial's cells (``params.cells``: dicts of
    :class:`kdspectra.dials.Cell`'s fields)."""
    from kdspectra.dials import Cell
    from kdspectra.report.figures_mirror import fig6, fig6_data

    inputs, out, params = _named(inputs), _named(outputs), _named(params)
    cells = [Cell(**c) for c in params["cells"]]
    data = fig6_data(pd.read_parquet(inputs["summary"]), cells)
    provenance = Provenance.from_dict(params["provenance"])
    save_csv(out["csv"], data)
    save_json(out["provenance"], provenance.to_dict())
    fig6(data, provenance=provenance, png=out["png"], pdf=out["pdf"])


def fig7_tradeoff(inputs: Named, outputs: Named, params: Named) -> None:
    """Figure 7 (the expansion's cost per λ and projector) as PNG and PDF, and its data as
    ``outputs.csv``, from the run summary (``inputs.summary``); ``params.options`` holds
    the experiment, its teacher, the students and the objective arms
    (:func:`kdspectra.report.options.tradeoff_options`)."""
    from kdspectra.report.figures_tradeoff import fig7, fig7_data

    inputs, out, params = _named(inputs), _named(outputs), _named(params)
    opts = dict(params["options"])
    data = fig7_data(
        pd.read_parquet(inputs["summary"]), opts["experiment"], opts["students"], opts["objectives"]
    )
    provenance = Provenance.from_dict(params["provenance"])
    save_csv(out["csv"], data)
    save_json(out["provenance"], provenance.to_dict())
    fig7(data, experiment=opts["experiment"], teacher=opts["teacher"], provenance=provenance,
         png=out["png"], pdf=out["pdf"])  # fmt: skip


def table_html(inputs: Named, outputs: Named, params: Named) -> None:
    """One table as an HTML page the report shows inline (``outputs.html``), from its
    Markdown or, for CSV-only tables, its CSV (``inputs.table``); ``params.title``."""
    from kdspectra.report.html import table_page

    source = Path(_named(inputs)["table"])
    text = source.read_text(encoding="utf-8")
    save_text(_named(outputs)["html"], table_page(_named(params)["title"], source.name, text))


def verdict_summary(inputs: Named, outputs: Named, params: Named) -> None:
    """The report landing page's summary of the claims' verdicts (``outputs.rst``) from
    ``inputs.claims`` (tables/claims.csv) (:func:`kdspectra.report.landing.verdict_summary`)."""
    from kdspectra.report.landing import verdict_summary as summarise

    claims_csv = Path(_named(inputs)["claims"])
    text = summarise(pd.read_csv(claims_csv), str(claims_csv.with_suffix(".md")))
    save_text(_named(outputs)["rst"], text)
