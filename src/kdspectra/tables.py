"""Tables I–II, the ablation, teachers, figure data and the paper comparison.

Everything here is a pure function of the run summary (``summary.parquet``, one row per
experiment × model × seed; schema in ``docs/architecture.md``) and the noise long table
(``noise.parquet``), so a table can be rebuilt from those two files alone and tested with
synthetic summaries. Experiment and student names are parameters: the paper's run and the
offline demo use different experiment names but the same table code.

Seeds: every number is the mean over seeds; when any model has more than one seed the
``*_std`` columns (sample std, ddof = 1) and ``n_seeds`` are added and Markdown/LaTeX show
``mean ± std``. CSV keeps exact integers for ``params``; Markdown/LaTeX show 0.50M-style.
Accuracies are fractions in [0, 1] in data files and percentages where people read them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kdspectra.errors import ArtifactError
from kdspectra.io import PathLike, save_csv, save_text
from kdspectra.provenance import Provenance

SUMMARY_COLUMNS = (
    "experiment",
    "dataset",
    "teacher",
    "role",
    "student",
    "objective",
    "seed",
    "params",
    "effective_rank",
    "effective_rank_l2",
    "norm_cv",
    "rank_ceiling",
    "cos_to_teacher",
)
# What every model row shows: the paper's raw ER, the ER of L2-normalised rows (the losses
# ignore norms), the norm spread that separates them, and the architecture's rank cap.
GEOMETRY_METRICS = ("effective_rank", "effective_rank_l2", "norm_cv")
STUDENT_METRICS = (*GEOMETRY_METRICS, "cos_to_teacher")
NOISE_COLUMNS = ("experiment", "role", "student", "objective", "seed", "sigma", "accuracy")

CNN_STUDENTS = ("cnn_s", "cnn_m", "cnn_l")
ABLATION_STUDENTS = ("cnn_s", "hybrid", "tiny_vit")
OBJECTIVES = ("cosine", "cosine_infonce")

# Display names from the paper, so a reader can hold the paper and the tables side by side.
STUDENT_NAMES = {
    "cnn_s": "Student-S",
    "cnn_m": "Student-M",
    "cnn_l": "Student-L",
    "hybrid": "Hybrid",
    "tiny_vit": "Tiny ViT",
}
ABLATION_NAMES = {
    "cnn_s": "CNN",
    "cnn_m": "CNN",
    "cnn_l": "CNN",
    "hybrid": "Hybrid",
    "tiny_vit": "Tiny ViT",
}
OBJECTIVE_NAMES = {"cosine": "cosine", "cosine_infonce": "cosine + InfoNCE"}

HEADERS = {
    "model": "Model",
    "params": "Params",
    "effective_rank": "ER (raw, paper)",
    "effective_rank_l2": "ER (L2 rows)",
    "norm_cv": "Norm CV",
    "rank_ceiling": "Rank ceiling",
    "cos_to_teacher": "cos to teacher",
    "n_seeds": "Seeds",
    "teacher": "Teacher",
    "dataset": "Dataset",
    "student": "Student",
    "objective": "Objective",
    "sigma": "σ",
    "accuracy": "Accuracy",
    "effective_rank_rv": "Effective rank (Roy–Vetterli)",
}
DECIMALS = {
    "effective_rank": 2,
    "effective_rank_rv": 2,
    "effective_rank_l2": 2,
    "norm_cv": 3,
    "cos_to_teacher": 3,
    "accuracy": 4,
}


# --------------------------------------------------------------------------- selection


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
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


def _agg(rows: pd.DataFrame, column: str) -> tuple[float, float, int]:
    """Mean, sample std (NaN for one value) and count of a column over seeds."""
    vals = rows[column].astype(float).to_numpy()
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan
    return float(np.mean(vals)), std, len(vals)


def _model_row(rows: pd.DataFrame, name: str, metrics: Sequence[str]) -> dict[str, object]:
    """One table row: display name, exact params, rank ceiling (fixed by the architecture
    and the split, so no std), mean/std of ``metrics`` over seeds."""
    out: dict[str, object] = {"model": name, "params": int(rows["params"].iloc[0])}
    out["rank_ceiling"] = int(rows["rank_ceiling"].max())
    for m in metrics:
        out[m], out[f"{m}_std"], out["n_seeds"] = _agg(rows, m)
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


def _student_records(
    summary: pd.DataFrame,
    experiment: str,
    students: Sequence[str],
    objective: str,
    names: Mapping[str, str],
) -> list[dict[str, object]]:
    _require(summary, SUMMARY_COLUMNS, "run summary")
    records = []
    for s in students:
        rows = _select(
            summary,
            "run summary",
            experiment=experiment,
            role="student",
            student=s,
            objective=objective,
        )
        records.append(_model_row(rows, names.get(s, s), STUDENT_METRICS))
    return records


# --------------------------------------------------------------------------- tables


def teacher_label(teacher: str) -> str:
    """Paper-style short name of a teacher config key (``clip_vit_b32`` → ``CLIP``)."""
    low = teacher.lower()
    if "dinov2" in low:
        return "DINOv2"
    return "CLIP" if "clip" in low else teacher


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
    names: Mapping[str, str] = STUDENT_NAMES,
) -> pd.DataFrame:
    """Table I: ``Teacher-<label>`` and the cosine-distilled students of one experiment.

    ``teacher_label`` defaults to the paper's name for the summary's teacher (CLIP/DINOv2).
    """
    records = _student_records(summary, experiment, students, objective, names)
    teacher = _teacher_record(summary, experiment, teacher_label)
    teacher |= {"cos_to_teacher": math.nan, "cos_to_teacher_std": math.nan}
    frame = _finish([teacher, *records], STUDENT_METRICS)
    return _titled(
        frame,
        f"Table I — teacher and {OBJECTIVE_NAMES.get(objective, objective)}"
        f"-distilled students ({experiment})",
    )


def table2(
    summary: pd.DataFrame,
    *,
    experiment: str = "clip_cifar10",
    students: Sequence[str] = CNN_STUDENTS,
    objective: str = "cosine_infonce",
    names: Mapping[str, str] = STUDENT_NAMES,
) -> pd.DataFrame:
    """Table II: the same students trained with cosine + InfoNCE."""
    records = _student_records(summary, experiment, students, objective, names)
    frame = _finish(records, STUDENT_METRICS)
    obj = OBJECTIVE_NAMES.get(objective, objective)
    return _titled(frame, f"Table II — students distilled with {obj} ({experiment})")


def ablation(
    summary: pd.DataFrame,
    *,
    experiment: str = "clip_cifar10",
    students: Sequence[str] = ABLATION_STUDENTS,
    objective: str = "cosine",
    names: Mapping[str, str] = ABLATION_NAMES,
) -> pd.DataFrame:
    """§III-B ablation: local CNN vs semi-global Hybrid vs global Tiny ViT, cosine."""
    records = _student_records(summary, experiment, students, objective, names)
    frame = _finish(records, STUDENT_METRICS)
    obj = OBJECTIVE_NAMES.get(objective, objective)
    return _titled(frame, f"Architecture ablation (§III-B) — {obj} distillation ({experiment})")


def teachers(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (teacher, dataset): the teacher's effective rank on that test split."""
    _require(summary, SUMMARY_COLUMNS, "run summary")
    t = summary[summary["role"] == "teacher"]
    if t.empty:
        raise ArtifactError("run summary: no teacher rows (role == 'teacher')")
    cols = [*GEOMETRY_METRICS, "rank_ceiling"]
    out = t.groupby(["teacher", "dataset"], sort=False, as_index=False)[cols].mean()
    out["rank_ceiling"] = out["rank_ceiling"].astype("int64")
    out = out[["teacher", "dataset", *cols]].reset_index(drop=True)
    return _titled(out, "Teacher effective rank per dataset (test split)")


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
    names: Mapping[str, str] = STUDENT_NAMES,
) -> pd.DataFrame:
    """Figure 2 data: raw and L2 effective rank per student × objective (mean, std, n over
    seeds) and each model's rank ceiling.

    A ``role == "teacher"`` row (objective empty) carries the teacher's ranks, drawn as a
    reference line, so the CSV alone is enough to redraw the figure.
    """
    _require(summary, SUMMARY_COLUMNS, "run summary")
    records = []
    for rec in _teacher_fig_record(summary, experiment):
        t = summary[(summary["experiment"] == experiment) & (summary["role"] == "teacher")]
        records.append(rec | _fig2_metrics(t))
    for s in students:
        for obj in objectives:
            rows = _select(
                summary,
                "run summary",
                experiment=experiment,
                role="student",
                student=s,
                objective=obj,
            )
            records.append(
                {
                    "role": "student",
                    "student": s,
                    "model": names.get(s, s),
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
        out[m], out[f"{m}_std"], out["n_seeds"] = _agg(rows, m)
    return out | {"rank_ceiling": int(rows["rank_ceiling"].max())}


def _curve_records(rows: pd.DataFrame, base: dict[str, object]) -> list[dict[str, object]]:
    out = []
    for sigma, grp in rows.groupby("sigma", sort=True):
        acc, sd, n = _agg(grp, "accuracy")
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
    names: Mapping[str, str] = STUDENT_NAMES,
) -> pd.DataFrame:
    """Figure 3 data: probe accuracy (fraction) vs σ per student, mean/std/n over seeds.

    ``summary`` supplies parameter counts for the legend; the teacher's curve (if the noise
    table has one) is included with ``role == "teacher"`` as a reference.
    """
    _require(summary, SUMMARY_COLUMNS, "run summary")
    _require(noise, NOISE_COLUMNS, "noise table")
    records = []
    for base in _teacher_fig_record(summary, experiment):
        rows = noise[(noise["experiment"] == experiment) & (noise["role"] == "teacher")]
        records += _curve_records(rows, base)
    for s in students:
        p = _select(
            summary,
            "run summary",
            experiment=experiment,
            role="student",
            student=s,
            objective=objective,
        )
        rows = _select(
            noise,
            "noise table",
            experiment=experiment,
            role="student",
            student=s,
            objective=objective,
        )
        base = {
            "role": "student",
            "student": s,
            "model": names.get(s, s),
            "params": int(p["params"].iloc[0]),
            "objective": objective,
        }
        records += _curve_records(rows, base)
    return _titled(pd.DataFrame.from_records(records), f"Figure 3 data ({experiment})")


BUILDERS = {
    "table1": table1,
    "table2": table2,
    "ablation": ablation,
    "teachers": teachers,
    "fig2": fig2_data,
    "fig3": fig3_data,
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


# --------------------------------------------------------------------------- formatting


def human_params(n: float) -> str:
    """Parameter count as the paper writes it: 0.50M, 8.00M, 86.57M, 1.20B, 12.3K."""
    n = float(n)
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    if n >= 1e5:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(int(n))


def _fmt(value: object, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if column == "params":
        return human_params(value)  # type: ignore[arg-type]
    if isinstance(value, (float, np.floating)):
        d = DECIMALS.get(column)
        return f"{value:.{d}f}" if d is not None else f"{value:.4g}"
    return str(value)


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Strings for people: human params, fixed decimals, ``mean ± std`` merged columns."""
    out = {}
    for col in frame.columns:
        if col.endswith("_std") and col[: -len("_std")] in frame.columns:
            continue
        std_col = f"{col}_std"
        cells = []
        for i, v in enumerate(frame[col]):
            cell = _fmt(v, col)
            if std_col in frame.columns and cell != "–":
                sd = frame[std_col].iloc[i]
                cell += "" if pd.isna(sd) else f" ± {_fmt(float(sd), col)}"
            cells.append(cell)
        out[HEADERS.get(col, col)] = cells
    return pd.DataFrame(out)


_ER_NOTE = (
    "ER (raw, paper): entropy effective rank of the centred test embeddings (p ∝ σ², "
    "paper Eq. 3). ER (L2 rows): the same after L2-normalising every row (the losses "
    "ignore norms; a norm spread along the mean direction lowers the raw number). "
    "Norm CV: std/mean of the row norms. Rank ceiling: the largest centred rank the model "
    "allows, min(last feature width, N − 1, D) for students, min(N − 1, D) for teachers."
)
NOTES = {
    "table1": f"{_ER_NOTE} cos to teacher: mean cosine similarity of student and teacher "
    "embeddings of the same test images.",
    "teachers": _ER_NOTE,
}
NOTES["table2"] = NOTES["ablation"] = NOTES["table1"]
SEEDS_NOTE = "Mean ± sample std over seeds (Seeds column gives n)."


def _title(frame: pd.DataFrame, kind: str | None, title: str | None) -> str:
    return title or frame.attrs.get("title") or kind or "Table"


def _notes(frame: pd.DataFrame, kind: str | None, note: str | None) -> str:
    parts = [note if note is not None else NOTES.get(kind or "", "")]
    parts += [SEEDS_NOTE] if "n_seeds" in frame.columns else []
    return " ".join(p for p in parts if p)


def to_markdown(
    frame: pd.DataFrame,
    kind: str | None = None,
    provenance: Provenance | None = None,
    *,
    title: str | None = None,
    note: str | None = None,
) -> str:
    """A titled Markdown table with the random-init notice (if any) and provenance footer.

    The title is ``title``, else the one the builder stored in ``frame.attrs``, else
    ``kind``; ``note`` (default: what the columns mean for ``kind``) goes under the table.
    """
    lines = [f"## {_title(frame, kind, title)}", ""]
    if provenance is not None and provenance.notice():
        lines += [f"> **⚠ {provenance.notice()}**", ""]
    lines += [display_frame(frame).to_markdown(index=False, disable_numparse=True), ""]
    text = _notes(frame, kind, note)
    lines += [text, ""] if text else []
    if provenance is not None:
        lines += [f"*Provenance:* {provenance.footer()}", ""]
    return "\n".join(lines)


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    """Escape LaTeX specials; ±, σ and the missing-value dash become LaTeX equivalents."""
    out = "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)
    out = out.replace("±", r"$\pm$").replace("σ", r"$\sigma$").replace("–", "--")
    return out.replace("—", "---").replace("⚠ ", "")


def _tex_body(frame: pd.DataFrame) -> list[str]:
    disp = display_frame(frame)
    head = " & ".join(tex_escape(str(c)) for c in disp.columns) + r" \\"
    rows = [" & ".join(tex_escape(str(c)) for c in r) + r" \\" for r in disp.itertuples(False)]
    align = "l" + "r" * (disp.shape[1] - 1)
    return [
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        head,
        r"\midrule",
        *rows,
        r"\bottomrule",
        r"\end{tabular}",
    ]


def to_latex(
    frame: pd.DataFrame,
    kind: str | None = None,
    provenance: Provenance | None = None,
    *,
    title: str | None = None,
    label: str | None = None,
) -> str:
    """A booktabs ``table`` float (needs ``\\usepackage{booktabs}``).

    The random-init notice is part of the caption, so it cannot be separated from the
    numbers; the provenance footer is a comment and a tiny line under the tabular.
    """
    head = _title(frame, kind, title)
    caption = tex_escape(head)
    if provenance is not None and provenance.notice():
        caption += r" \textbf{" + tex_escape(provenance.notice()) + "}"
    label = label or (f"tab:{kind}" if kind else None)
    lines = [f"% {head}"]
    if provenance is not None:
        lines += [f"% {provenance.notice()}"] if provenance.notice() else []
        lines += [f"% {provenance.footer()}"]
    lines += [r"\begin{table}[htbp]", r"\centering", rf"\caption{{{caption}}}"]
    lines += [rf"\label{{{label}}}"] if label else []
    lines += _tex_body(frame)
    if provenance is not None:
        lines += [r"\par\smallskip{\tiny " + tex_escape(provenance.footer()) + "}"]
    return "\n".join([*lines, r"\end{table}", ""])


def write_table(
    frame: pd.DataFrame,
    kind: str | None = None,
    provenance: Provenance | None = None,
    *,
    title: str | None = None,
    csv: PathLike | None = None,
    md: PathLike | None = None,
    tex: PathLike | None = None,
) -> None:
    """Write any of CSV (exact values), Markdown and LaTeX, each atomically."""
    if csv is not None:
        save_csv(csv, frame)
    if md is not None:
        save_text(md, to_markdown(frame, kind, provenance, title=title))
    if tex is not None:
        save_text(tex, to_latex(frame, kind, provenance, title=title))


# --------------------------------------------------------------------------- the paper


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


_T1, _ABL, _T2 = (
    "Table I — CLIP, cosine",
    "Ablation (§III-B) — CLIP, cosine",
    "Table II — CLIP, cosine + InfoNCE",
)
_DINO, _NOISE = "Figure 2 — DINOv2 / CIFAR-100", "Figure 3 — noise, highest σ, cosine + InfoNCE"
_PAR = "Parameters (Table I)"

PAPER: dict[str, PaperNumber] = {
    "teacher_clip": PaperNumber(
        _T1, "Teacher-CLIP ER", 88.68, "Table I; §III-A; abstract", "clip", role="teacher"
    ),
    "t1_s": PaperNumber(
        _T1, "Student-S ER", 15.91, "Table I", "clip", student="cnn_s", objective="cosine"
    ),
    "t1_m": PaperNumber(
        _T1, "Student-M ER", 16.62, "Table I", "clip", student="cnn_m", objective="cosine"
    ),
    "t1_l": PaperNumber(
        _T1, "Student-L ER", 16.66, "Table I", "clip", student="cnn_l", objective="cosine"
    ),
    "abl_cnn": PaperNumber(
        _ABL, "CNN ER", 15.90, "§III-B text", "clip", student="cnn_s", objective="cosine"
    ),
    "abl_hybrid": PaperNumber(
        _ABL, "Hybrid ER", 14.54, "§III-B text", "clip", student="hybrid", objective="cosine"
    ),
    "abl_vit": PaperNumber(
        _ABL, "Tiny ViT ER", 8.70, "§III-B text", "clip", student="tiny_vit", objective="cosine"
    ),
    "t2_s": PaperNumber(
        _T2, "Student-S ER", 32.80, "Table II", "clip", student="cnn_s", objective="cosine_infonce"
    ),
    "t2_m": PaperNumber(
        _T2, "Student-M ER", 38.41, "Table II", "clip", student="cnn_m", objective="cosine_infonce"
    ),
    "t2_l": PaperNumber(
        _T2, "Student-L ER", 38.30, "Table II", "clip", student="cnn_l", objective="cosine_infonce"
    ),
    "expansion": PaperNumber(
        _T2,
        "InfoNCE / cosine ER, mean of S/M/L",
        2.4,
        "abstract ('by 2.4 (to 38 …)')",
        "clip",
        metric="expansion",
        approx=True,
        note="abstract rounds 38/16; Tables I–II give 36.50/16.40 = 2.23",
    ),
    "dino_teacher": PaperNumber(
        _DINO, "Teacher-DINOv2 ER", None, "not reported", "dino", role="teacher"
    ),
    "dino_cos_s": PaperNumber(
        _DINO,
        "Student-S cosine ER",
        53.78,
        "§IV-A, Fig. 2",
        "dino",
        student="cnn_s",
        objective="cosine",
        note="paper: 'the pure cosine baseline', student not named",
    ),
    "dino_cos_m": PaperNumber(
        _DINO,
        "Student-M cosine ER",
        53.78,
        "§IV-A, Fig. 2",
        "dino",
        student="cnn_m",
        objective="cosine",
        note="paper: 'the pure cosine baseline', student not named",
    ),
    "dino_cos_l": PaperNumber(
        _DINO,
        "Student-L cosine ER",
        53.78,
        "§IV-A, Fig. 2",
        "dino",
        student="cnn_l",
        objective="cosine",
        note="paper: 'the pure cosine baseline', student not named",
    ),
    "dino_nce_s": PaperNumber(
        _DINO,
        "Student-S cosine + InfoNCE ER",
        None,
        "§IV-A ('up to 82')",
        "dino",
        student="cnn_s",
        objective="cosine_infonce",
        note="paper names only 2.0M and 8.0M at 82",
    ),
    "dino_nce_m": PaperNumber(
        _DINO,
        "Student-M cosine + InfoNCE ER",
        82.0,
        "§IV-B; abstract",
        "dino",
        student="cnn_m",
        objective="cosine_infonce",
        approx=True,
        note="'2.0M and 8.0M students achieved identical Effective Ranks (82)'",
    ),
    "dino_nce_l": PaperNumber(
        _DINO,
        "Student-L cosine + InfoNCE ER",
        82.0,
        "§IV-B; abstract",
        "dino",
        student="cnn_l",
        objective="cosine_infonce",
        approx=True,
        note="'2.0M and 8.0M students achieved identical Effective Ranks (82)'",
    ),
    "noise_s": PaperNumber(
        _NOISE,
        "Student-S accuracy (%)",
        21.32,
        "§IV-B, Fig. 3",
        "dino",
        student="cnn_s",
        objective="cosine_infonce",
        metric="noise_accuracy",
        note="'the 0.5M InfoNCE model'; σ not stated",
    ),
    "noise_m": PaperNumber(
        _NOISE,
        "Student-M accuracy (%)",
        None,
        "Fig. 3 (no number)",
        "dino",
        student="cnn_m",
        objective="cosine_infonce",
        metric="noise_accuracy",
    ),
    "noise_l": PaperNumber(
        _NOISE,
        "Student-L accuracy (%)",
        17.03,
        "§IV-B, Fig. 3",
        "dino",
        student="cnn_l",
        objective="cosine_infonce",
        metric="noise_accuracy",
        note="'the 8.0M Student-L'; σ not stated",
    ),
    "params_teacher": PaperNumber(
        _PAR,
        "Teacher-CLIP params (M)",
        500.0,
        "Table I",
        "clip",
        role="teacher",
        metric="params",
        note="the paper's count; the ViT-B/32 image tower alone is ~88M",
    ),
    "params_s": PaperNumber(
        _PAR,
        "Student-S params (M)",
        0.5,
        "Table I; §II-A",
        "clip",
        student="cnn_s",
        objective="cosine",
        metric="params",
    ),
    "params_m": PaperNumber(
        _PAR,
        "Student-M params (M)",
        2.0,
        "Table I; §II-A",
        "clip",
        student="cnn_m",
        objective="cosine",
        metric="params",
    ),
    "params_l": PaperNumber(
        _PAR,
        "Student-L params (M)",
        8.0,
        "Table I; §II-A",
        "clip",
        student="cnn_l",
        objective="cosine",
        metric="params",
    ),
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
    m, s, n = _agg(rows, "accuracy")
    note = f"ours at σ = {sigma:g}"
    if objective != num.objective:
        note += f", objective {objective} (paper: {num.objective})"
    return 100 * m, 100 * s, n, note


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
    rows = _rows_for(summary, experiment, num.role, student, num.objective)
    if rows.empty:
        return math.nan, math.nan, 0, ""
    if num.metric == "params":
        return float(rows["params"].iloc[0]) / 1e6, math.nan, 1, ""
    return (*_agg(rows, "effective_rank"), "")


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
    rows = _rows_for(summary, experiment, num.role, student, num.objective)
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
    _require(summary, SUMMARY_COLUMNS, "run summary")
    if noise is not None:
        _require(noise, NOISE_COLUMNS, "noise table")
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
    open (:mod:`kdspectra.deviations`); ``omitted`` lists report artifacts this run left
    out and why. Other options as in :func:`paper_comparison_frame`.
    """
    from kdspectra import deviations

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
    if omitted:
        lines += ["## Left out of this run", "", *[f"- {o}" for o in omitted], ""]
    if provenance is not None:
        lines += [f"*Provenance:* {provenance.footer()}", ""]
    return "\n".join(lines)
