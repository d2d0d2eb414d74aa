"""Tables rendered for people: Markdown, LaTeX and the number formats they share.

The builders in :mod:`kdspectra.report.tables` return frames of exact values (what the CSVs
hold); this module turns a frame into strings a reader compares with the paper: 0.50M
parameter counts, fixed decimals per column, ``mean ± std`` merged cells, a title, a note
on what the columns mean, the random-init notice and the provenance footer. Keeping the
rendering apart means a table's numbers can be tested without its formatting and the
other way round.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kdspectra import registry
from kdspectra.errors import ConfigError
from kdspectra.metrics.catalog import METRICS
from kdspectra.report.provenance import Provenance

# Column → header: every catalog metric's label, then the other columns tables show.
HEADERS = {m.column: m.label for m in METRICS} | {
    "model": "Model",
    "params": "Params",
    "n_seeds": "Seeds",
    "teacher": "Teacher",
    "dataset": "Dataset",
    "student": "Student",
    "objective": "Objective",
    "sigma": "σ",
    "accuracy": "Accuracy",
    "experiment": "Experiment",
    "clean_accuracy": "Probe acc.",
    # the default evaluation.knn_k; other k show their column name
    "clean_knn20_accuracy": "kNN-20 acc.",
    "clean_knn200_accuracy": "kNN-200 acc.",
    # tables/corruptions
    "mean15_accuracy": "Mean, 15 benchmark",
    "mean19_accuracy": "Mean, all 19",
    "noise_accuracy": "Noise",
    "blur_accuracy": "Blur",
    "weather_accuracy": "Weather",
    "digital_accuracy": "Digital",
    "relative15": "Rel. 15",
    "relative19": "Rel. 19",
    "knn_mean19_accuracy": "kNN, all 19",
    "knn_k": "kNN k",
}
# Column → fixed decimals (others: 4 significant digits): the catalog's, then accuracies.
DECIMALS = {m.column: m.decimals for m in METRICS if m.decimals is not None} | {
    "accuracy": 4,
    "clean_accuracy": 4,
    "clean_knn20_accuracy": 4,
    "clean_knn200_accuracy": 4,
}


def student_label(student: str, *, ablation: bool = False) -> str:
    """The paper's name of a registered student (its ablation-table label with
    ``ablation``), looked up when called so students registered later show too; an
    unregistered name is shown as it is."""
    if student not in registry.student_names():
        return student
    entry = registry.student(student)
    return entry.ablation_name if ablation else entry.display_name


def objective_label(objective: str) -> str:
    """How tables and figures name an objective or one of its arms (``cosine + InfoNCE``,
    ``cosine + InfoNCE λ=0.3 (MLP)``); a name that is neither is shown as it is."""
    try:
        return registry.parse_arm(objective).label
    except ConfigError:
        return objective


def teacher_label(teacher: str) -> str:
    """Paper-style short name of a teacher config key (``clip_vit_b32`` → ``CLIP``)."""
    low = teacher.lower()
    if "dinov2" in low:
        return "DINOv2"
    return "CLIP" if "clip" in low else teacher


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
NOTES["geometry"] = (
    "All on the test split, float64 (docs/design.md, 'Geometry metrics'). ER: entropy "
    "effective rank, raw rows (paper Eq. 3) and L2-normalised rows. RankMe: entropy "
    "effective rank of the *uncentred* singular values (Garrido et al. 2023). "
    "Participation ratio (Σλ)²/Σλ² and stable rank Σλ/λ₁ of the centred eigenvalues "
    "λ = σ². α-ReQ: decay exponent of λ_i ∝ i^−α, OLS fit over the indices "
    "evaluation.alpha_req_fit, with its R² (Agrawal et al. 2022). Uniformity: "
    "ln mean exp(−2‖u_i − u_j‖²) of the L2-normalised rows (Wang & Isola 2020), exact up "
    "to 10,000 rows, a seeded subsample beyond. Per-class ER: mean ER within each class. "
    "CKA to teacher: linear CKA (Kornblith et al. 2019); cos to teacher: mean cosine to "
    "the teacher's embedding of the same image. Probe acc.: clean linear-probe accuracy; "
    "kNN-k acc.: clean weighted kNN accuracy (k neighbours, T = evaluation.knn_temperature)."
)
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
