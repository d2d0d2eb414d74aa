"""The paper's numbers as the claims use them, and the row builders two or more claim
modules share (a level against the paper's number, an equivalence of two students).

Keys into ``paper_numbers.yaml`` (:data:`kdspectra.paper.comparison.PAPER`) per student and
table, the paper's S/M/L students of Figure 3, and :func:`paper_raw` (the paper reports raw
ER only, so its numbers stay off the L2-row and RankMe rows).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from kdspectra.paper.claim_rows import ER_MEASURES, PRIMARY_ER, Row, Run, relative
from kdspectra.paper.comparison import PAPER, student_keys
from kdspectra.paper.statistics import one_sample, paired
from kdspectra.paper.verdicts import FLAT_MARGIN, LEVEL_MARGIN, Rule
from kdspectra.report.render import student_label
from kdspectra.report.tables import CNN_STUDENTS

COS, NCE = "cosine", "cosine_infonce"
# Student → key of its number in paper_numbers.yaml, per table of the paper.
PAPER_T1, PAPER_T2 = student_keys("t1_s"), student_keys("t2_s")
PAPER_ABL = {s: k for s, k in student_keys("abl_hybrid").items() if s not in CNN_STUDENTS}
# Figure 2 (DINOv2): student -> key of its cosine / cosine + InfoNCE ER in the paper's data.
DINO_COSINE, DINO_INFONCE = (
    {
        n.student: k
        for k, n in PAPER.items()
        if n.section == PAPER["dino_cos_s"].section
        and n.role == "student"
        and n.metric == "effective_rank"
        and n.objective == objective
    }
    for objective in (COS, NCE)
)
SMALL, MEDIUM, LARGE = (PAPER[k].student for k in ("noise_s", "noise_m", "noise_l"))
MINIATURE_NOTE = "a level: the offline miniature tests the paper's relations, not its levels"


def paper_value(key: str | None) -> float:
    value = PAPER[key].value if key is not None else None
    return math.nan if value is None else float(value)


def paper_raw(measure: str, value: float) -> float | None:
    """The paper reports raw ER only: its numbers do not apply to other measures."""
    return value if measure == PRIMARY_ER and not math.isnan(value) else None


def quantity(text: str, measure: str) -> str:
    return f"{text}, {ER_MEASURES.get(measure, measure)}"


def level_row(run: Run, claim_id: str, exp: str, student: str, obj: str, key: str) -> Row:
    """TOST of one student's raw ER against the paper's number ± LEVEL_MARGIN."""
    target = paper_value(key)
    rule = Rule.within(target * (1 - LEVEL_MARGIN), target * (1 + LEVEL_MARGIN))
    q = quantity(f"{student_label(student)} ER ({exp})", PRIMARY_ER)
    s = one_sample(run.series(exp, student, obj, PRIMARY_ER))
    return run.row(
        claim_id, "raw ER", q, s, rule, [(exp, student, obj)], paper=target, note=MINIATURE_NOTE
    )


def equivalent_pair(
    run: Run,
    claim_id: str,
    exp: str,
    obj: str,
    pair: tuple[str, str],
    m: str,
    scale_students: Sequence[str],
    paper_keys: Mapping[str, str],
) -> Row:
    """TOST of (ER(b) − ER(a)) / mean ER over ``scale_students`` within ±FLAT_MARGIN."""
    a, b = pair
    scale = float(np.mean([run.series(exp, s, obj, m).mean() for s in scale_students]))
    sample = paired(
        relative(run.series(exp, a, obj, m), scale), relative(run.series(exp, b, obj, m), scale)
    )
    pv = [paper_value(paper_keys.get(s)) for s in scale_students]
    gap = (paper_value(paper_keys.get(b)) - paper_value(paper_keys.get(a))) / float(np.mean(pv))
    q = quantity(f"({student_label(b)} − {student_label(a)}) / mean ER, {exp}", m)
    return run.row(
        claim_id,
        ER_MEASURES[m],
        q,
        sample,
        Rule.within(-FLAT_MARGIN, FLAT_MARGIN),
        [(exp, a, obj), (exp, b, obj)],
        paper=paper_raw(m, gap),
        primary=m == PRIMARY_ER,
    )


def infonce_paper_gap(tables_run: bool, student: str) -> float:
    """Table II − Table I (CLIP), or Fig. 2's 82 − 53.78 (DINOv2, Student-M/L only)."""
    if tables_run:
        return paper_value(PAPER_T2.get(student)) - paper_value(PAPER_T1.get(student))
    return paper_value(DINO_INFONCE.get(student)) - paper_value(DINO_COSINE.get(student))
