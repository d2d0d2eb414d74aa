"""The verdicts summary on the report's landing page (``workflow/report/workflow.rst``).

The landing page says what the run was (from the config) and what it found: how many of
the paper's claims hold, fail or stay inconclusive here, one line per claim, with a
pointer to ``claims.md`` for the intervals, tests and notes. Snakemake renders the page
from reStructuredText and cannot read a table itself, so a rule writes this summary as
an ``.rst`` fragment that the page includes.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

# Columns of tables/claims.csv this summary reads.
NEEDED = ("id", "primary", "verdict")


def _primary(frame: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in NEEDED if c not in frame.columns]
    if missing:
        raise ValueError(f"claims table: expected columns {list(NEEDED)}, missing {missing}")
    flags = frame["primary"].astype(str).str.lower().isin(("true", "1"))
    return frame[flags]


def _counts(verdicts: pd.Series) -> str:
    counts = Counter(str(v) for v in verdicts)
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.most_common())


def verdict_summary(frame: pd.DataFrame, claims_md: str) -> str:
    """reStructuredText: the verdict counts of the primary rows, then one line per claim.

    ``frame`` is ``tables/claims.csv``; ``claims_md`` the path to name for the details.
    """
    primary = _primary(frame)
    if primary.empty:
        return f"No claim has a primary row on this run: see ``{claims_md}``.\n"
    lines = [
        f"**The paper's claims on this run** (primary rows): {_counts(primary['verdict'])}.",
        "",
    ]
    for cid, rows in primary.groupby("id", sort=False):
        claim = ""
        if "claim" in rows.columns and isinstance(rows["claim"].iloc[0], str):
            claim = f" ({rows['claim'].iloc[0].strip()})"
        lines.append(f"- ``{cid}``{claim}: {_counts(rows['verdict'])}")
    lines += [
        "",
        f"Intervals, tests, guards and the decision rule of each claim: ``{claims_md}`` "
        "(the *claims* table in this report).",
    ]
    return "\n".join(lines) + "\n"
