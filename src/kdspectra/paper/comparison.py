"""The paper's reported numbers beside ours.

The numbers themselves are data, in ``paper_numbers.yaml`` next to this module (one
entry per number: where the paper says it, which of its runs, which model, which
metric), so correcting a transcription is an edit to a data file that the tests read,
not to code. This module loads them into :class:`PaperNumber` records and computes ours
for each: :func:`paper_comparison_frame` (exact values) and :func:`paper_comparison`
(the Markdown file a reader opens first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from importlib import resources

import numpy as np
import pandas as pd

from kdspectra.errors import ArtifactError
from kdspectra.io import parse_yaml
from kdspectra.paper import deviations
from kdspectra.report import render
from kdspectra.report.provenance import Provenance
from kdspectra.report.tables import (
    CNN_STUDENTS,
    GEOMETRY_TABLE_METRICS,
    NOISE_COLUMNS,
    OBJECTIVES,
    SUMMARY_COLUMNS,
    geometry_table,
    require_columns,
    seed_stats,
)

PAPER_NUMBERS_FILE = "paper_numbers.yaml"


@dataclass(frozen=True)
class PaperNumber:
    """One number the paper reports, where it says it, and how to find ours.

    ``experiment`` is the paper's logical experiment (``clip`` = CLIP ViT-B/32 on CIFAR-10,
    ``dino`` = DINOv2 ViT-B/14 on CIFAR-100); ``value`` is None where the paper gives no
    number for a model we still show (so the reader sees all three students).
    """

    section: str
    quantity: str
    value: float | None
    where: str
    experiment: str
    role: str = "student"
    student: str = ""
    objective: str = ""
    metric: str = "effective_rank"  # effective_rank | params | noise_accuracy | expansion
    approx: bool = False
    note: str = ""


METRICS = ("effective_rank", "params", "noise_accuracy", "expansion")
EXPERIMENTS = ("clip", "dino")


def _record(key: str, entry: object, source: str) -> PaperNumber:
    """One YAML entry as a :class:`PaperNumber`; an error names the entry and the field."""
    known = {f.name for f in fields(PaperNumber)}
    if not isinstance(entry, Mapping) or set(entry) - known:
        extra = sorted(set(entry) - known) if isinstance(entry, Mapping) else entry
        raise ArtifactError(
            f"{source}: entry {key!r} has unknown fields {extra}; expected {sorted(known)}"
        )
    try:
        num = PaperNumber(**entry)
    except TypeError as err:
        raise ArtifactError(f"{source}: entry {key!r}: {err}") from None
    if num.metric not in METRICS or num.experiment not in EXPERIMENTS:
        raise ArtifactError(
            f"{source}: entry {key!r}: metric {num.metric!r} / experiment {num.experiment!r}; "
            f"expected a metric in {METRICS} and an experiment in {EXPERIMENTS}"
        )
    return replace(num, value=None if num.value is None else float(num.value))


def load_paper_numbers(text: str | None = None) -> dict[str, PaperNumber]:
    """The paper's numbers by key, in file order (``text``: YAML to parse instead of the
    packaged file, for tests)."""
    source = PAPER_NUMBERS_FILE
    if text is None:
        text = resources.files("kdspectra.paper").joinpath(PAPER_NUMBERS_FILE).read_text("utf-8")
    data = parse_yaml(text)
    if not isinstance(data, Mapping):
        raise ArtifactError(f"{source}: expected a mapping of key -> number, found {type(data)}")
    return {str(k): _record(str(k), v, source) for k, v in data.items()}


PAPER: dict[str, PaperNumber] = load_paper_numbers()


def student_keys(section_of: str) -> dict[str, str]:
    """Student → key of its effective-rank number in the section of key ``section_of``
    (e.g. ``student_keys("t1_s")`` maps each Table I student to its key)."""
    section = PAPER[section_of].section
    return {
        n.student: k
        for k, n in PAPER.items()
        if n.section == section and n.role == "student" and n.metric == "effective_rank"
    }


def _rows_for(
    frame: pd.DataFrame, experiment: str, role: str, student: str, objective: str
) -> pd.DataFrame:
    mask = (frame["experiment"] == experiment) & (frame["role"] == role)
    if role == "student":
        mask &= (frame["student"] == student) & (frame["objective"] == objective)
    return frame[mask]


def _ours_noise(
    num: PaperNumber, noise: pd.DataFrame | None, experiment: str, student: str, objective: str
) -> tuple[float, float, int, str]:
    """Our accuracy (%) at the highest σ of the experiment's noise sweep."""
    if noise is None or noise.empty:
        return math.nan, math.nan, 0, "no noise table"
    exp_rows = noise[noise["experiment"] == experiment]
    if exp_rows.empty:
        return math.nan, math.nan, 0, ""
    sigma = float(exp_rows["sigma"].max())
    rows = _rows_for(exp_rows, experiment, num.role, student, objective)
    rows = rows[rows["sigma"] == sigma]
    if rows.empty:
        return math.nan, math.nan, 0, ""
    m, s, n = seed_stats(rows, "accuracy")
    note = f"ours at σ = {sigma:g}"
    if objective != num.objective:
        note += f", objective {objective} (paper: {num.objective})"
    return 100 * m, 100 * s, n, note


# The paper's teacher of each of its runs, as :func:`kdspectra.report.render.teacher_label`
# names a teacher config key.
PAPER_TEACHERS = {"clip": "CLIP", "dino": "DINOv2"}


def _teacher_rows(summary: pd.DataFrame, num: PaperNumber, experiment: str) -> pd.DataFrame:
    """The rows of the paper's teacher for ``num``: in ``experiment`` when its teacher is
    that one, else in the first experiment that ran it (the demo's figures run is a CLIP
    one; its DINOv2 teacher runs elsewhere), else none: never another teacher's number."""
    teachers = summary[summary["role"] == "teacher"]
    labels = [render.teacher_label(str(t)) for t in teachers["teacher"]]
    mine = teachers[[label == PAPER_TEACHERS[num.experiment] for label in labels]]
    if mine.empty or (mine["experiment"] == experiment).any():
        return mine[mine["experiment"] == experiment]
    return mine[mine["experiment"] == mine["experiment"].iloc[0]]


def _ours(
    num: PaperNumber,
    summary: pd.DataFrame,
    noise: pd.DataFrame | None,
    experiment: str,
    student: str,
    noise_objective: str,
) -> tuple[float, float, int, str]:
    """Our mean, std, seed count and a note, for one paper number (NaN mean = not run)."""
    if num.metric == "noise_accuracy":
        return _ours_noise(num, noise, experiment, student, noise_objective)
    if num.role == "teacher" and num.metric == "effective_rank":
        rows = _teacher_rows(summary, num, experiment)
        if rows.empty:
            return math.nan, math.nan, 0, f"no {PAPER_TEACHERS[num.experiment]} teacher in the run"
        where = str(rows["experiment"].iloc[0])
        note = "" if where == experiment else f"ours: the teacher of {where}"
        return (*seed_stats(rows, "effective_rank"), note)
    rows = _rows_for(summary, experiment, num.role, student, num.objective)
    if rows.empty:
        return math.nan, math.nan, 0, ""
    if num.metric == "params":
        return float(rows["params"].iloc[0]) / 1e6, math.nan, 1, ""
    return (*seed_stats(rows, "effective_rank"), "")


def _expansion(
    summary: pd.DataFrame,
    experiment: str,
    students: Sequence[str],
    metric: str = "effective_rank",
) -> float:
    """Mean InfoNCE ``metric`` over the CNN students divided by their mean cosine one."""
    means = []
    for obj in OBJECTIVES:
        vals = [_rows_for(summary, experiment, "student", s, obj) for s in students]
        if any(v.empty for v in vals):
            return math.nan
        means.append(np.mean([v[metric].mean() for v in vals]))
    return float(means[1] / means[0])


def _ours_l2(
    num: PaperNumber, summary: pd.DataFrame, experiment: str, student: str, cnns: Sequence[str]
) -> tuple[float, float]:
    """Our L2-row ER and rank ceiling beside a paper ER number (NaN where not an ER)."""
    if num.metric == "expansion":
        return _expansion(summary, experiment, cnns, "effective_rank_l2"), math.nan
    rows = (
        _teacher_rows(summary, num, experiment)
        if num.role == "teacher"
        else _rows_for(summary, experiment, num.role, student, num.objective)
    )
    if num.metric != "effective_rank" or rows.empty:
        return math.nan, math.nan
    return float(rows["effective_rank_l2"].mean()), float(rows["rank_ceiling"].max())


def paper_comparison_frame(
    summary: pd.DataFrame,
    noise: pd.DataFrame | None = None,
    *,
    tables_experiment: str = "clip_cifar10",
    figures_experiment: str = "dinov2_cifar100",
    fig3_objective: str = "cosine_infonce",
    students: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Every :data:`PAPER` number beside ours: ``ours``, ``ours_std``, ``diff`` (ours − paper).

    ``tables_experiment`` plays the paper's CLIP/CIFAR-10 run (Tables I–II, ablation),
    ``figures_experiment`` its DINOv2/CIFAR-100 run (Figures 2–3); the noise rows use the
    students trained with ``fig3_objective``. ``students`` renames the paper's students
    (``cnn_s`` …) to the run's, if they differ. A model the run lacks gives NaN (not run).
    """
    require_columns(summary, SUMMARY_COLUMNS, "run summary")
    if noise is not None:
        require_columns(noise, NOISE_COLUMNS, "noise table")
    rename = dict(students or {})
    exps = {"clip": tables_experiment, "dino": figures_experiment}
    cnns = [rename.get(s, s) for s in CNN_STUDENTS]
    records = []
    for key, num in PAPER.items():
        exp, student = exps[num.experiment], rename.get(num.student, num.student)
        if num.metric == "expansion":
            ours, std, n, note = _expansion(summary, exp, cnns), math.nan, 1, ""
        else:
            ours, std, n, note = _ours(num, summary, noise, exp, student, fig3_objective)
        diff = ours - num.value if num.value is not None else math.nan
        ours_l2, ceiling = _ours_l2(num, summary, exp, student, cnns)
        records.append(
            {
                "key": key,
                "section": num.section,
                "quantity": num.quantity,
                "where": num.where,
                "paper": num.value,
                "approx": num.approx,
                "ours": ours,
                "ours_std": std,
                "n_seeds": n,
                "diff": diff,
                "ours_l2": ours_l2,
                "rank_ceiling": ceiling,
                "experiment": exp,
                "note": "; ".join(x for x in (num.note, note) if x),
            }
        )
    return pd.DataFrame.from_records(records)


def _cell(
    value: float | None, digits: int, approx: bool = False, std: float = math.nan, n: int = 1
) -> str:
    if value is None or math.isnan(value):
        return "–"
    cell = ("≈ " if approx else "") + f"{value:.{digits}f}"
    return cell + (f" ± {std:.{digits}f} (n={n})" if n > 1 and not math.isnan(std) else "")


def _section_table(rows: pd.DataFrame) -> str:
    dg = 3 if (rows["key"].str.startswith("params")).all() else 2  # params in M: 0.500
    disp = pd.DataFrame(
        {
            "Quantity": rows["quantity"],
            "Where in the paper": rows["where"],
            "Paper": [_cell(v, dg, a) for v, a in zip(rows["paper"], rows["approx"], strict=True)],
            "Ours": [
                "not run" if math.isnan(o) else _cell(o, dg, False, s, n)
                for o, s, n in zip(rows["ours"], rows["ours_std"], rows["n_seeds"], strict=True)
            ],
            "Δ (ours − paper)": ["–" if math.isnan(d) else f"{d:+.{dg}f}" for d in rows["diff"]],
            "Δ %": [
                "–" if math.isnan(d) or not p else f"{100 * d / p:+.1f}%"
                for d, p in zip(rows["diff"], rows["paper"].fillna(0.0), strict=True)
            ],
            "Ours, ER (L2 rows)": [_cell(v, dg) for v in rows["ours_l2"]],
            "Rank ceiling": ["–" if math.isnan(c) else f"{c:.0f}" for c in rows["rank_ceiling"]],
            "Note": rows["note"],
        }
    )
    return disp.to_markdown(index=False, disable_numparse=True)


# What the paper does not report: every geometry metric but its ER, and the kNN accuracy.
BEYOND_THE_PAPER = tuple(
    m for m in GEOMETRY_TABLE_METRICS if m not in ("effective_rank", "effective_rank_l2")
)


def _beyond_the_paper(summary: pd.DataFrame, experiments: Sequence[str]) -> list[str]:
    """A short section with the metrics the paper lacks, per model of its two runs (none
    for a summary written before the geometry suite, which lacks the columns)."""
    if not set(BEYOND_THE_PAPER) <= set(summary.columns):
        return []
    exps = [e for e in dict.fromkeys(experiments) if (summary["experiment"] == e).any()]
    if not exps:
        return []
    table = geometry_table(summary, experiments=exps)
    knn = [c for c in table.columns if c.startswith("clean_knn") and not c.endswith("_std")]
    keep = ["experiment", "model", "objective", *BEYOND_THE_PAPER, *knn]
    keep += [f"{c}_std" for c in keep if f"{c}_std" in table.columns]
    disp = render.display_frame(table[[c for c in table.columns if c in keep]])
    return [
        "## Beyond the paper",
        "",
        "Metrics the paper does not report (mean over seeds, ± sample std when n > 1); "
        "definitions under the table in `geometry.md` and in docs/design.md, 'Geometry "
        "metrics'. No paper values exist to compare with.",
        "",
        disp.to_markdown(index=False, disable_numparse=True),
        "",
    ]


def paper_comparison(
    summary: pd.DataFrame,
    noise: pd.DataFrame | None = None,
    provenance: Provenance | None = None,
    *,
    tables_experiment: str = "clip_cifar10",
    figures_experiment: str = "dinov2_cifar100",
    fig3_objective: str = "cosine_infonce",
    students: Mapping[str, str] | None = None,
    config: Mapping[str, object] | None = None,
    omitted: Sequence[str] = (),
) -> str:
    """Markdown: every number of the paper beside ours with the difference, by section.

    With random-init teachers (``provenance.random_init``) a banner says the comparison
    is structural only. ``config`` (the resolved config's ``seeds``, ``training``,
    ``evaluation`` and ``teachers``) opens the file with the choices the paper leaves
    open (:mod:`kdspectra.paper.deviations`); ``omitted`` lists report artifacts this run left
    out and why. Other options as in :func:`paper_comparison_frame`.
    """
    frame = paper_comparison_frame(
        summary,
        noise,
        tables_experiment=tables_experiment,
        figures_experiment=figures_experiment,
        fig3_objective=fig3_objective,
        students=students,
    )
    lines = ["# Paper vs this run", ""]
    if provenance is not None and provenance.random_init:
        lines += [
            f"> **⚠ {provenance.notice()}.** With random-init teachers this comparison is "
            "structural only: it shows that the pipeline produces every number the paper "
            "reports, not that the numbers match.",
            "",
        ]
    lines += [deviations.to_markdown(config), ""] if config is not None else []
    lines += [
        "Paper: *Breaking the Geometric Bottleneck: Contrastive Expansion in Asymmetric "
        f"Cross-Modal Distillation*. Ours: experiment `{tables_experiment}` plays the paper's "
        f"CLIP/CIFAR-10 run, `{figures_experiment}` its DINOv2/CIFAR-100 run. "
        "ER = entropy effective rank of the centred test embeddings (p ∝ σ²), computed on "
        "the raw rows as the paper does; *Ours, ER (L2 rows)* is the same after "
        "L2-normalising every row, and *Rank ceiling* the largest centred rank the model "
        "allows (min(last feature width, N − 1, D)). "
        "Ours is the mean over seeds (± sample std when n > 1); "
        "Δ = ours − paper; accuracies in %.",
        "",
    ]
    for section, rows in frame.groupby("section", sort=False):
        lines += [f"## {section}", "", _section_table(rows), ""]
    lines += _beyond_the_paper(summary, [tables_experiment, figures_experiment])
    if omitted:
        lines += ["## Left out of this run", "", *[f"- {o}" for o in omitted], ""]
    if provenance is not None:
        lines += [f"*Provenance:* {provenance.footer()}", ""]
    return "\n".join(lines)
