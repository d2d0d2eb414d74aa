"""The expansion claims (§III-C, §IV): InfoNCE raises the rank (CLIP and DINOv2), by
about 2.4×, makes the embedding more uniform, saturates with capacity (S below M ≈ L), the
DINOv2 students start higher than CLIP's (inherited anisotropy, Welch across experiments)
and reach M ≈ L ≈ 82. One function per id of :data:`kdspectra.paper.verdicts.CLAIMS`,
each returning its rows (see :mod:`kdspectra.paper.claims`).
"""

from __future__ import annotations

import math

import numpy as np

from kdspectra.paper.claim_rows import ER_MEASURES, PRIMARY_ER, Row, Run, mean_over, not_tested
from kdspectra.paper.paper_values import (
    COS,
    DINO_INFONCE,
    LARGE,
    MEDIUM,
    NCE,
    PAPER_T1,
    PAPER_T2,
    SMALL,
    equivalent_pair,
    infonce_paper_gap,
    level_row,
    paper_raw,
    paper_value,
    quantity,
)
from kdspectra.paper.statistics import one_sample, paired, welch
from kdspectra.paper.verdicts import GAIN_FACTOR, GAIN_TARGET, Rule
from kdspectra.report.render import student_label
from kdspectra.report.tables import CNN_STUDENTS


def _raises(run: Run, claim_id: str, exp: str, tables_run: bool) -> list[Row]:
    """Per student that ran both objectives in ``exp``: paired ER(InfoNCE) − ER(cosine) > 0."""
    students = [
        s
        for s in dict.fromkeys([*run.table_students, *run.ablation_students])
        if run.has(exp, s, COS) and run.has(exp, s, NCE)
    ]
    if not students:
        why = f"experiment {exp!r} ran no student with both objectives"
        return [not_tested(claim_id, "raw ER", "ER(InfoNCE) − ER(cosine)", why)]
    rows = []
    for m in run.measures():
        for s in students:
            gap = infonce_paper_gap(tables_run, s)
            sample = paired(run.series(exp, s, COS, m), run.series(exp, s, NCE, m))
            q = quantity(f"{student_label(s)} ({run.experiment_label(exp)})", m)
            rows.append(
                run.row(
                    claim_id,
                    ER_MEASURES[m],
                    q,
                    sample,
                    Rule.above(0.0, None if math.isnan(gap) else gap),
                    [(exp, s, COS), (exp, s, NCE)],
                    paper=paper_raw(m, gap),
                    primary=m == PRIMARY_ER,
                )
            )
    return rows


def _no_dino(run: Run, claim_id: str, quantity: str) -> list[Row] | None:
    """A not-tested row when no experiment plays the paper's DINOv2 run."""
    if run.dino_experiment is not None:
        return None
    why = (
        f"one experiment ({run.tables_experiment!r}) plays both the CLIP and the DINOv2 "
        "run, and no other experiment has a DINOv2 teacher"
    )
    return [not_tested(claim_id, "raw ER", quantity, why)]


def infonce_raises_er(run: Run) -> list[Row]:
    return _raises(run, "infonce_raises_er", run.tables_experiment, True)


def dino_infonce_raises_er(run: Run) -> list[Row]:
    missing = _no_dino(run, "dino_infonce_raises_er", "ER(InfoNCE) − ER(cosine)")
    return missing or _raises(run, "dino_infonce_raises_er", str(run.dino_experiment), False)


def infonce_gain(run: Run) -> list[Row]:
    exp = run.tables_experiment
    students = run.cnns(exp, COS, NCE)
    if not students:
        why = f"experiment {exp!r} has no CNN student with both objectives"
        return [not_tested("infonce_gain", "raw ER", "InfoNCE / cosine ER", why)]
    rule, rows = Rule.within(GAIN_TARGET / GAIN_FACTOR, GAIN_TARGET * GAIN_FACTOR), []
    arms = [(exp, s, o) for s in students for o in (COS, NCE)]
    for m in run.measures():
        ratio = mean_over(run, exp, students, NCE, m) / mean_over(run, exp, students, COS, m)
        q = quantity(f"mean over {', '.join(map(student_label, students))}, InfoNCE / cosine", m)
        note = "Tables I-II give 36.50 / 16.40 = 2.23, the abstract 2.4"
        rows.append(
            run.row(
                "infonce_gain",
                ER_MEASURES[m],
                q,
                one_sample(ratio.dropna()),
                rule,
                arms,
                paper=paper_raw(m, GAIN_TARGET),
                primary=m == PRIMARY_ER,
                note=note,
            )
        )
    return rows


def infonce_uniformity(run: Run) -> list[Row]:
    if "uniformity" not in run.summary.columns:
        why = "the summary has no uniformity column (written before the geometry suite)"
        return [not_tested("infonce_uniformity", "uniformity", "uniformity gap", why)]
    rows = []
    for exp in dict.fromkeys((run.tables_experiment, run.figures_experiment)):
        for s in run.cnns(exp, COS, NCE):
            sample = paired(
                run.series(exp, s, COS, "uniformity"), run.series(exp, s, NCE, "uniformity")
            )
            q = f"uniformity(InfoNCE) − uniformity(cosine), {student_label(s)} ({exp})"
            rows.append(
                run.row(
                    "infonce_uniformity",
                    "uniformity",
                    q,
                    sample,
                    Rule.below(0.0),
                    [(exp, s, COS), (exp, s, NCE)],
                    note="the paper does not measure uniformity",
                )
            )
    return rows or [
        not_tested(
            "infonce_uniformity",
            "uniformity",
            "uniformity gap",
            "no CNN student ran both objectives",
        )
    ]


def capacity_saturation(run: Run) -> list[Row]:
    exp = run.tables_experiment
    if not all(run.has(exp, s, NCE) for s in (SMALL, MEDIUM, LARGE)):
        why = f"experiment {exp!r} lacks {SMALL}, {MEDIUM} or {LARGE} with {NCE}"
        return [not_tested("capacity_saturation", "raw ER", "S vs M ≈ L", why)]
    rows = []
    for m in run.measures():
        gap = paper_value(PAPER_T2[SMALL]) - paper_value(PAPER_T2[MEDIUM])
        sample = paired(run.series(exp, MEDIUM, NCE, m), run.series(exp, SMALL, NCE, m))
        q = quantity(f"ER({student_label(SMALL)}) − ER({student_label(MEDIUM)}), {NCE}", m)
        rows.append(
            run.row(
                "capacity_saturation",
                ER_MEASURES[m],
                q,
                sample,
                Rule.below(0.0, abs(gap)),
                [(exp, SMALL, NCE), (exp, MEDIUM, NCE)],
                paper=paper_raw(m, gap),
                primary=m == PRIMARY_ER,
            )
        )
        rows.append(
            equivalent_pair(
                run, "capacity_saturation", exp, NCE, (MEDIUM, LARGE), m, (MEDIUM, LARGE), PAPER_T2
            )
        )
    return rows


def dino_above_clip(run: Run) -> list[Row]:
    q0 = "mean cosine ER over S/M/L, DINOv2 − CLIP"
    missing = _no_dino(run, "dino_above_clip", q0)
    if missing:
        return missing
    clip, dino = run.tables_experiment, str(run.dino_experiment)
    students = [s for s in run.cnns(clip, COS) if s in run.cnns(dino, COS)]
    if not students:
        why = f"no CNN cosine student in both {clip!r} and {dino!r}"
        return [not_tested("dino_above_clip", "raw ER", q0, why)]
    paper = paper_value("dino_cos_m") - float(
        np.mean([paper_value(PAPER_T1[s]) for s in CNN_STUDENTS])
    )
    arms = [(e, s, COS) for e in (clip, dino) for s in students]
    rows = []
    for m in run.measures():
        teachers = (
            f"teachers' own {ER_MEASURES[m]}: {run.teacher_value(clip, m):.3g} ({clip}) "
            f"vs {run.teacher_value(dino, m):.3g} ({dino})"
        )
        sample = welch(
            mean_over(run, clip, students, COS, m), mean_over(run, dino, students, COS, m)
        )
        rows.append(
            run.row(
                "dino_above_clip",
                ER_MEASURES[m],
                quantity(f"{q0}, {dino} − {clip}", m),
                sample,
                Rule.above(0.0, paper),
                arms,
                paper=paper_raw(m, paper),
                primary=m == PRIMARY_ER,
                note=f"{teachers}; the experiments also differ in dataset",
            )
        )
    return rows


def dino_capacity_limit(run: Run) -> list[Row]:
    missing = _no_dino(run, "dino_capacity_limit", "M ≈ L ≈ 82")
    if missing:
        return missing
    exp = str(run.dino_experiment)
    if not all(run.has(exp, s, NCE) for s in (MEDIUM, LARGE)):
        why = f"experiment {exp!r} lacks {MEDIUM} or {LARGE} with {NCE}"
        return [not_tested("dino_capacity_limit", "raw ER", "M ≈ L ≈ 82", why)]
    rows = [
        equivalent_pair(
            run, "dino_capacity_limit", exp, NCE, (MEDIUM, LARGE), m, (MEDIUM, LARGE), DINO_INFONCE
        )
        for m in run.measures()
    ]
    rows += [
        level_row(run, "dino_capacity_limit", exp, s, NCE, DINO_INFONCE[s]) for s in (MEDIUM, LARGE)
    ]
    return rows
