"""Tables I–II, the ablation, teachers and the data behind Figures 2–3, as exact frames.

Everything here is a pure function of the run summary (``summary.parquet``, one row per
experiment × model × seed; schema in ``docs/architecture.md``) and the noise long table
(``noise.parquet``), so a table can be rebuilt from those two files alone and tested with
synthetic summaries. Experiment and student names are parameters: the paper's run and the
offline demo use different experiment names but the same table code.

Seeds: every number is the mean over seeds; with more than one seed, ``*_std`` (sample
std, ddof = 1) and ``n_seeds`` are added and Markdown/LaTeX show ``mean ± std``. CSV keeps
exact ``params`` (Markdown/LaTeX: 0.50M) and accuracies as fractions (people read %).
Rendering: :mod:`kdspectra.report.render`; the paper's numbers: :mod:`kdspectra.paper.comparison`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from kdspectra import registry
from kdspectra.errors import ArtifactError
from kdspectra.metrics.catalog import REPORTED_METRICS
from kdspectra.report.columns import NOISE_COLUMNS, SUMMARY_COLUMNS, clean_accuracy_columns
from kdspectra.report.render import objective_label, student_label, teacher_label

# What every model row shows: the paper's raw ER, the ER of L2-normalised rows (the losses
# ignore norms), the norm spread that separates them, and the architecture's rank cap.
GEOMETRY_METRICS = ("effective_rank", "effective_rank_l2", "norm_cv")
# Beside the fit to the teacher, how much of it beats predicting the teacher's mean
# direction (the guard against students that learned nothing, docs/design.md "Guards").
STUDENT_METRICS = (*GEOMETRY_METRICS, "cos_to_teacher", "fidelity_gain")

# Defaults from the registry: the CNN students (Tables I–II, Figures 2–3) and the first
# registered student of each family (the ablation: local CNN, semi-global Hybrid, global ViT).
CNN_STUDENTS = tuple(s for s in registry.student_names() if registry.student(s).family == "cnn")
_FIRST_OF_FAMILY: dict[str, str] = {}
for _s in registry.student_names():
    _FIRST_OF_FAMILY.setdefault(registry.student(_s).family, _s)
ABLATION_STUDENTS = tuple(_FIRST_OF_FAMILY.values())
OBJECTIVES = registry.objective_names()

# The registered students' names at import (the builders look names up when called).
STUDENT_NAMES = {s: student_label(s) for s in registry.student_names()}
ABLATION_NAMES = {s: student_label(s, ablation=True) for s in registry.student_names()}


# --------------------------------------------------------------------------- selection


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Fail naming the missing columns of ``what`` (a file a stage read) and those found."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ArtifactError(f"{what}: missing columns {missing}; found {list(frame.columns)}")


def _select(frame: pd.DataFrame, what: str, **match: object) -> pd.DataFrame:
    """Rows equal to every ``match`` value; a clear error naming what exists otherwise."""
    mask = np.ones(len(frame), dtype=bool)
    for col, val in match.items():
        mask &= (frame[col] == val).to_numpy()
    rows = frame[mask]
    if rows.empty:
        have = frame[list(match)].drop_duplicates().to_dict("records")
        raise ArtifactError(f"{what}: no rows with {match}; available: {have}")
    return rows


def _student_rows(
    frame: pd.DataFrame, what: str, experiment: str, student: str, objective: str
) -> pd.DataFrame:
    """Every seed's row of one student × objective in one experiment (see :func:`_select`)."""
    return _select(
        frame, what, experiment=experiment, role="student", student=student, objective=objective
    )


def seed_stats(rows: pd.DataFrame, column: str) -> tuple[float, float, int]:
    """Mean, sample std (NaN for one value) and count of a column over seeds (the one
    aggregation every table, figure and comparison uses, so they agree)."""
    vals = rows[column].astype(float).to_numpy()
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan
    return float(np.mean(vals)), std, len(vals)


def _model_row(rows: pd.DataFrame, name: str, metrics: Sequence[str]) -> dict[str, object]:
    """One table row: display name, exact params, rank ceiling (fixed by the architecture
    and the split, so no std), mean/std of ``metrics`` over seeds."""
    out: dict[str, object] = {"model": name, "params": int(rows["params"].iloc[0])}
    out["rank_ceiling"] = int(rows["rank_ceiling"].max())
    for m in metrics:
        out[m], out[f"{m}_std"], out["n_seeds"] = seed_stats(rows, m)
    return out


def _finish(records: list[dict[str, object]], metrics: Sequence[str]) -> pd.DataFrame:
    """Order columns; keep std/n_seeds only when some model has several seeds."""
    frame = pd.DataFrame.from_records(records)
    frame["params"] = frame["params"].astype("int64")
    frame["rank_ceiling"] = frame["rank_ceiling"].astype("int64")
    seeds = int(frame["n_seeds"].max()) > 1
    cols = ["model", "params"]
    for m in metrics:
        cols += [m, f"{m}_std"] if seeds else [m]
        cols += ["rank_ceiling"] if m == "effective_rank_l2" else []
    cols += ["n_seeds"] if seeds else []
    out = frame[cols].reset_index(drop=True)
    if seeds:
        out["n_seeds"] = out["n_seeds"].astype("int64")
    return out


def _label(student: str, names: Mapping[str, str] | None, ablation: bool = False) -> str:
    """``names[student]`` when given, else the registry's name for the student."""
    if names is not None and student in names:
        return names[student]
    return student_label(student, ablation=ablation)


def _student_records(
    summary: pd.DataFrame,
    experiment: str,
    students: Sequence[str],
    objective: str,
    names: Mapping[str, str] | None,
    ablation: bool = False,
) -> list[dict[str, object]]:
    require_columns(summary, [*SUMMARY_COLUMNS, *STUDENT_METRICS], "run summary")
    records = []
    for s in students:
        rows = _student_rows(summary, "run summary", experiment, s, objective)
        records.append(_model_row(rows, _label(s, names, ablation), STUDENT_METRICS))
    return records


# --------------------------------------------------------------------------- tables


def _teacher_record(summary: pd.DataFrame, experiment: str, label: str | None) -> dict:
    rows = _select(summary, "run summary", experiment=experiment, role="teacher")
    name = f"Teacher-{label or teacher_label(str(rows['teacher'].iloc[0]))}"
    return _model_row(rows, name, GEOMETRY_METRICS)


def _titled(frame: pd.DataFrame, title: str) -> pd.DataFrame:
    frame.attrs["title"] = title  # read by to_markdown / to_latex when no title is given
    return frame


def table1(
    summary: pd.DataFrame,
    *,
    experiment: str = "clip_cifar10",
    students: Sequence[str] = CNN_STUDENTS,
    objective: str = "cosine",
    teacher_label: str | None = None,
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Table I: ``Teacher-<label>`` and the cosine-distilled students of one experiment.

    ``teacher_label`` defaults to the paper's name for the summary's teacher (CLIP/DINOv2).
    """
    records = _student_records(summary, experiment, students, objective, names)
    teacher = _teacher_record(summary, experiment, teacher_label)
    teacher |= {c: math.nan for m in ("cos_to_teacher", "fidelity_gain") for c in (m, f"{m}_std")}
    frame = _finish([teacher, *records], STUDENT_METRICS)
    return _titled(
        frame,
        f"Table I — teacher and {objective_label(objective)}-distilled students ({experiment})",
    )


def table2(
    summary: pd.DataFrame,
    *,
    experiment: str = "clip_cifar10",
    students: Sequence[str] = CNN_STUDENTS,
    objective: str = "cosine_infonce",
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Table II: the same students trained with cosine + InfoNCE."""
    records = _student_records(summary, experiment, students, objective, names)
    frame = _finish(records, STUDENT_METRICS)
    obj = objective_label(objective)
    return _titled(frame, f"Table II — students distilled with {obj} ({experiment})")


def ablation(
    summary: pd.DataFrame,
    *,
    experiment: str = "clip_cifar10",
    students: Sequence[str] = ABLATION_STUDENTS,
    objective: str = "cosine",
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """§III-B ablation: local CNN vs semi-global Hybrid vs global Tiny ViT, cosine."""
    records = _student_records(summary, experiment, students, objective, names, True)
    frame = _finish(records, STUDENT_METRICS)
    obj = objective_label(objective)
    return _titled(frame, f"Architecture ablation (§III-B) — {obj} distillation ({experiment})")


# The teachers table: geometry, then the sanity numbers that decide ``degenerate``.
TEACHER_COLUMNS = (
    *GEOMETRY_METRICS,
    "rank_ceiling",
    "rankme",
    "uniformity",
    "mean_pairwise_cosine",
    "centred_energy_share",
    "constant_cosine",
)


def teachers(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (teacher, dataset): the teacher's geometry on that test split, its clean
    probe and kNN accuracy, chance, and whether it is ``degenerate`` (with the reasons,
    :func:`kdspectra.metrics.sanity.degenerate_reasons` on the probe and the first kNN).

    A degenerate teacher is no teacher: a narrow cone or a map that separates no classes,
    whose ER and probe can still look ordinary (docs/design.md "Guards").
    """
    from kdspectra.metrics.sanity import degenerate_reasons

    accuracy = clean_accuracy_columns(summary.columns)
    cols = [*TEACHER_COLUMNS, *accuracy, "chance_accuracy"]
    require_columns(summary, [*SUMMARY_COLUMNS, *cols], "run summary")
    t = summary[summary["role"] == "teacher"]
    if t.empty:
        raise ArtifactError("run summary: no teacher rows (role == 'teacher')")
    out = t.groupby(["teacher", "dataset"], sort=False, as_index=False)[cols].mean()
    out["rank_ceiling"] = out["rank_ceiling"].astype("int64")
    guarded = accuracy[:2]  # the probe and the first configured kNN
    reasons = [
        degenerate_reasons(
            row["centred_energy_share"],
            {_accuracy_name(c): row[c] for c in guarded},
            row["chance_accuracy"],
        )
        for _, row in out.iterrows()
    ]
    out["degenerate"] = [bool(r) for r in reasons]
    out["degenerate_reasons"] = ["; ".join(r) for r in reasons]
    out = out[["teacher", "dataset", *cols, "degenerate", "degenerate_reasons"]]
    return _titled(
        out.reset_index(drop=True), "Teachers per dataset (test split): geometry, sanity"
    )


def _accuracy_name(column: str) -> str:
    """``clean_accuracy`` → "linear probe", ``clean_knn20_accuracy`` → "kNN-20"."""
    k = column.removeprefix("clean_knn").removesuffix("_accuracy")
    return "linear probe" if column == "clean_accuracy" else f"kNN-{k}"


def _teacher_fig_record(summary: pd.DataFrame, experiment: str) -> list[dict[str, object]]:
    """The teacher as a reference row of figure data (none if the run has no teacher row)."""
    rows = summary[(summary["experiment"] == experiment) & (summary["role"] == "teacher")]
    if rows.empty:
        return []
    name = f"Teacher-{teacher_label(str(rows['teacher'].iloc[0]))}"
    return [
        {
            "role": "teacher",
            "student": "",
            "model": name,
            "params": int(rows["params"].iloc[0]),
            "objective": "",
        }
    ]


def fig2_data(
    summary: pd.DataFrame,
    *,
    experiment: str = "dinov2_cifar100",
    students: Sequence[str] = CNN_STUDENTS,
    objectives: Sequence[str] = OBJECTIVES,
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Figure 2 data: raw and L2 effective rank per student × objective (mean, std, n over
    seeds) and each model's rank ceiling.

    A ``role == "teacher"`` row (objective empty) carries the teacher's ranks, drawn as a
    reference line, so the CSV alone is enough to redraw the figure.
    """
    require_columns(summary, SUMMARY_COLUMNS, "run summary")
    records = []
    for rec in _teacher_fig_record(summary, experiment):
        t = summary[(summary["experiment"] == experiment) & (summary["role"] == "teacher")]
        records.append(rec | _fig2_metrics(t))
    for s in students:
        for obj in objectives:
            rows = _student_rows(summary, "run summary", experiment, s, obj)
            records.append(
                {
                    "role": "student",
                    "student": s,
                    "model": _label(s, names),
                    "params": int(rows["params"].iloc[0]),
                    "objective": obj,
                }
                | _fig2_metrics(rows)
            )
    return _titled(pd.DataFrame.from_records(records), f"Figure 2 data ({experiment})")


def _fig2_metrics(rows: pd.DataFrame) -> dict[str, object]:
    """Raw and L2 ER (mean, std over seeds), the seed count and the rank ceiling."""
    out: dict[str, object] = {}
    for m in ("effective_rank", "effective_rank_l2"):
        out[m], out[f"{m}_std"], out["n_seeds"] = seed_stats(rows, m)
    return out | {"rank_ceiling": int(rows["rank_ceiling"].max())}


def _curve_records(rows: pd.DataFrame, base: dict[str, object]) -> list[dict[str, object]]:
    out = []
    for sigma, grp in rows.groupby("sigma", sort=True):
        acc, sd, n = seed_stats(grp, "accuracy")
        out.append(
            base | {"sigma": float(sigma), "accuracy": acc, "accuracy_std": sd, "n_seeds": n}
        )
    return out


def fig3_data(
    summary: pd.DataFrame,
    noise: pd.DataFrame,
    *,
    experiment: str = "dinov2_cifar100",
    students: Sequence[str] = CNN_STUDENTS,
    objective: str = "cosine_infonce",
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Figure 3 data: probe accuracy (fraction) vs σ per student, mean/std/n over seeds.

    ``summary`` supplies parameter counts for the legend; the teacher's curve (if the noise
    table has one) is included with ``role == "teacher"`` as a reference.
    """
    require_columns(summary, SUMMARY_COLUMNS, "run summary")
    require_columns(noise, NOISE_COLUMNS, "noise table")
    records = []
    for base in _teacher_fig_record(summary, experiment):
        rows = noise[(noise["experiment"] == experiment) & (noise["role"] == "teacher")]
        records += _curve_records(rows, base)
    for s in students:
        p = _student_rows(summary, "run summary", experiment, s, objective)
        rows = _student_rows(noise, "noise table", experiment, s, objective)
        base = {
            "role": "student",
            "student": s,
            "model": _label(s, names),
            "params": int(p["params"].iloc[0]),
            "objective": objective,
        }
        records += _curve_records(rows, base)
    data = pd.DataFrame.from_records(records).assign(chance=_chance(summary, experiment))
    return _titled(data, f"Figure 3 data ({experiment})")


def _chance(summary: pd.DataFrame, experiment: str) -> float:
    """The chance accuracy the robustness claims use (``chance_accuracy``, the test labels'
    majority-class share), so Figure 3's line agrees with them; NaN without one."""
    rows = summary[summary["experiment"] == experiment]
    return float(rows["chance_accuracy"].mean()) if "chance_accuracy" in rows else float("nan")


# Every metric of kdspectra.metrics.geometry, in the order the geometry table shows them
# (the catalog's; kdspectra.paper.comparison reads it from here).
GEOMETRY_TABLE_METRICS = REPORTED_METRICS
# ... followed by the guards: fidelity_gain beside cos_to_teacher (the last reported metric),
# then how narrow a cone each model's rows are.
GEOMETRY_GUARDS = ("fidelity_gain", "mean_pairwise_cosine", "centred_energy_share")


def geometry_table(
    summary: pd.DataFrame,
    *,
    experiments: Sequence[str] | None = None,
    names: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Every geometry metric (and the clean probe/kNN accuracies) of every model: one row
    per experiment × model (teacher, then each student × objective), mean over seeds.

    ``experiments`` defaults to every experiment of the summary, in its order. The paper
    reports one number (ER); this table is what a reader of the collapse literature
    compares (RankMe, α-ReQ, uniformity, CKA, ...), so it spans all models, not a subset.
    """
    metrics = [*GEOMETRY_TABLE_METRICS, *GEOMETRY_GUARDS, *clean_accuracy_columns(summary.columns)]
    require_columns(summary, [*SUMMARY_COLUMNS, *metrics], "run summary")
    exps = list(experiments) if experiments is not None else list(summary["experiment"].unique())
    records = []
    for exp in exps:
        rows = _select(summary, "run summary", experiment=exp)
        for (role, student, objective), grp in rows.groupby(
            ["role", "student", "objective"], sort=False
        ):
            teacher = role == "teacher"
            model = f"Teacher-{teacher_label(str(grp['teacher'].iloc[0]))}" if teacher else None
            rec: dict[str, object] = {
                "experiment": exp,
                "model": model or _label(str(student), names),
                "objective": "" if teacher else objective_label(str(objective)),
                "params": int(grp["params"].iloc[0]),
            }
            for m in metrics:
                rec[m], rec[f"{m}_std"], rec["n_seeds"] = seed_stats(grp, m)
            records.append(rec)
    frame = pd.DataFrame.from_records(records)
    seeds = int(frame["n_seeds"].max()) > 1
    cols = ["experiment", "model", "objective", "params"]
    for m in metrics:
        cols += [m, f"{m}_std"] if seeds else [m]
    out = frame[cols + (["n_seeds"] if seeds else [])].reset_index(drop=True)
    out["params"] = out["params"].astype("int64")
    if seeds:
        out["n_seeds"] = out["n_seeds"].astype("int64")
    return _titled(
        out, "Geometry of every model (test split): every metric of kdspectra.metrics.geometry"
    )


BUILDERS = {
    "table1": table1,
    "table2": table2,
    "ablation": ablation,
    "teachers": teachers,
    "fig2": fig2_data,
    "fig3": fig3_data,
    "geometry": geometry_table,
}


def build(
    kind: str, summary: pd.DataFrame, noise: pd.DataFrame | None = None, **options: object
) -> pd.DataFrame:
    """Build the table named ``kind`` (a key of :data:`BUILDERS`) with its options.

    One entry point for the workflow's ``table`` rule; ``noise`` is only used by ``fig3``.
    """
    if kind not in BUILDERS:
        raise ValueError(f"unknown table {kind!r}; expected one of {sorted(BUILDERS)}")
    if kind == "fig3":
        if noise is None:
            raise ArtifactError("table fig3 needs the noise table")
        return fig3_data(summary, noise, **options)  # type: ignore[arg-type]
    return BUILDERS[kind](summary, **options)  # type: ignore[operator]
