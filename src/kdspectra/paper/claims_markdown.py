"""claims.md: the claims table as Markdown, with each id's decision rule, the verdict
counts, the paper's own contradiction on the cause of collapse, and the provenance.

Rendering only: the rows come from :func:`kdspectra.paper.claims.claims_frame`, the rule
texts from :data:`kdspectra.paper.verdicts.CLAIMS` and
:data:`kdspectra.paper.verdicts.DECISION_RULE`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from kdspectra.paper.verdicts import CLAIMS, DECISION_RULE, VERDICTS
from kdspectra.report.provenance import Provenance

# The paper contradicts itself on what causes the collapse (paper.txt, §III-B and §IV-A).
CONTRADICTION = """\
**The paper on the cause of collapse contradicts itself.** §III-B (ablation): "This
confirms that dimensional collapse is a geometric bottleneck explicitly enforced by the
objective function." §IV-A (DINOv2): "This reveals that dimensional collapse is not
inherently caused by the cosine distance, but is an artifact of inherited anisotropy."
Both cannot be the whole story: `ablation_not_above_cnn` tests the first reading (no
architecture escapes the cosine objective), `dino_above_clip` the second (a more isotropic
teacher gives cosine students a higher rank). A run where both hold says the objective
transmits the teacher's anisotropy rather than creating collapse on its own."""

TABLE_COLUMNS = (
    "id", "measure", "primary", "quantity", "paper", "ours", "ci_low", "ci_high", "n_seeds",
    "test", "p_holm", "verdict", "verdict_raw", "note",
)  # fmt: skip


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def verdict_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many primary rows have each verdict (Holm-adjusted)."""
    primary = frame[frame["primary"].astype(bool)]
    return {v: int((primary["verdict"] == v).sum()) for v in VERDICTS}


def changed_by_holm(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows whose verdict differs between the raw and the Holm-adjusted p."""
    return frame[frame["verdict"] != frame["verdict_raw"]]


def _rules_table(frame: pd.DataFrame) -> str:
    """One line per id: the paper's claim, its decision rule, its primary verdicts."""
    lines = ["| id | the paper's claim | decision rule | primary verdicts |", "|---|---|---|---|"]
    for cid, (claim, rule) in CLAIMS.items():
        rows = frame[(frame["id"] == cid) & frame["primary"].astype(bool)]
        counts = rows["verdict"].value_counts()
        verdicts = ", ".join(f"{n} {v}" for v, n in counts.items()) or "no primary row"
        lines.append(f"| `{cid}` | {claim} | {rule} | {verdicts} |")
    return "\n".join(lines)


def _summary(frame: pd.DataFrame) -> list[str]:
    counts = verdict_counts(frame)
    changed = changed_by_holm(frame)
    lines = [
        "Primary rows (Holm-adjusted): "
        + ", ".join(f"{n} {v}" for v, n in counts.items())
        + f". Ids with rows: {frame['id'].nunique()} of {len(CLAIMS)}.",
        "",
    ]
    if changed.empty:
        return [*lines, "No verdict changes between the raw and the Holm-adjusted p.", ""]
    lines += ["Verdicts changed by Holm's correction:", ""]
    lines += [
        f"- `{r.id}` {r.quantity}: {r.verdict_raw} → {r.verdict}" for r in changed.itertuples()
    ]
    return [*lines, ""]


def to_markdown(
    frame: pd.DataFrame, provenance: Provenance | None = None, omitted: Sequence[str] = ()
) -> str:
    """claims.md: the random-init banner, the verdict counts, each id's decision rule, the
    paper's contradiction, the table, the general rule, what was left out of the run and
    why, and the provenance footer."""
    lines = ["# The paper's claims, judged on this run", ""]
    if provenance is not None and provenance.notice():
        lines += [
            f"> **⚠ {provenance.notice()}.** Every verdict below is about this "
            "pipeline on random-init teachers, not about the paper.",
            "",
        ]
    lines += _summary(frame)
    lines += ["## Claims and decision rules", "", _rules_table(frame), "", CONTRADICTION, ""]
    disp = frame[list(TABLE_COLUMNS)].copy()
    for col in ("paper", "ours", "ci_low", "ci_high", "p_holm"):
        disp[col] = [_fmt(v) for v in frame[col]]
    disp["primary"] = ["yes" if p else "sensitivity" for p in frame["primary"].astype(bool)]
    disp["verdict"] = [f"**{v}**" for v in frame["verdict"]]
    lines += ["## Rows", "", disp.to_markdown(index=False, disable_numparse=True), ""]
    lines += [DECISION_RULE, ""]
    if omitted:
        lines += ["## Left out of this run", "", *[f"- {o}" for o in omitted], ""]
    if provenance is not None:
        lines += [f"*Provenance:* {provenance.footer()}", ""]
    return "\n".join(lines)
