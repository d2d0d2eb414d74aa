"""claims.md: the claims table as Markdown, with the decision rule and the provenance.

Rendering only: the rows come from :func:`kdspectra.paper.claims.claims_frame`, the rule text
from :data:`kdspectra.paper.verdicts.DECISION_RULE`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from kdspectra.paper.verdicts import DECISION_RULE
from kdspectra.report.provenance import Provenance


def _fmt(value: float, digits: int = 3) -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}g}"
    )


def to_markdown(
    frame: pd.DataFrame,
    provenance: Provenance | None = None,
    omitted: Sequence[str] = (),
) -> str:
    """claims.md: the random-init banner, the table, the decision rule, what was left out
    of the run and why, and the provenance footer."""
    lines = ["# The paper's claims, judged on this run", ""]
    if provenance is not None and provenance.notice():
        lines += [
            f"> **⚠ {provenance.notice()}.** Every verdict below is about this "
            "pipeline on random-init teachers, not about the paper.",
            "",
        ]
    disp = frame.copy()
    for col in ("paper", "ours", "ci_low", "ci_high"):
        disp[col] = [_fmt(v) for v in frame[col]]
    disp["verdict"] = [f"**{v}**" for v in frame["verdict"]]
    lines += [disp.to_markdown(index=False, disable_numparse=True), "", DECISION_RULE, ""]
    if omitted:
        lines += ["## Left out of this run", "", *[f"- {o}" for o in omitted], ""]
    if provenance is not None:
        lines += [f"*Provenance:* {provenance.footer()}", ""]
    return "\n".join(lines)
