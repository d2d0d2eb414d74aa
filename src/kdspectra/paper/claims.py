"""The paper's claims, judged on one run: every id of :data:`~kdspectra.paper.verdicts.CLAIMS`
gets rows (per student, per measure), or a "not tested" row saying why.

Pure functions of the run summary, the noise long table and (for Figure 1's claim) the
spectra, so a claims table can be rebuilt from those files and tested on synthetic
summaries. One function per collapse id (§III-A/B) here; the expansion ids are in
:mod:`kdspectra.paper.expansion_claims`, the robustness ids in
:mod:`kdspectra.paper.robustness`, Figure 1's in :mod:`kdspectra.paper.tracking`. The
statistics are :mod:`kdspectra.paper.statistics`, the decision rule
:mod:`kdspectra.paper.verdicts`, the rows and Holm's correction
:mod:`kdspectra.paper.claim_rows`, claims.md :mod:`kdspectra.paper.claims_markdown`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import combinations

import pandas as pd

from kdspectra.dials import Cell
from kdspectra.paper import robustness, tracking
from kdspectra.paper.claim_rows import (
    COLUMNS,
    DEFAULT_MIN_FIDELITY_GAIN,
    ER_MEASURES,
    PRIMARY_ER,
    Row,
    Run,
    not_tested,
    relative,
    table,
)
from kdspectra.paper.expansion_claims import (
    capacity_saturation,
    dino_above_clip,
    dino_capacity_limit,
    dino_infonce_raises_er,
    infonce_gain,
    infonce_raises_er,
    infonce_uniformity,
)
from kdspectra.paper.mirror_claims import mirror_rows
from kdspectra.paper.paper_values import (
    COS,
    LARGE,
    MEDIUM,
    MINIATURE_NOTE,
    NCE,
    PAPER_ABL,
    PAPER_T1,
    SMALL,
    equivalent_pair,
    level_row,
    paper_raw,
    paper_value,
    quantity,
)
from kdspectra.paper.statistics import one_sample, paired
from kdspectra.paper.tradeoff_claims import expansion_survives_projector
from kdspectra.paper.verdicts import FAR_BELOW_RATIO, LEVEL_MARGIN, NOT_ABOVE_MARGIN, Rule
from kdspectra.report.render import student_label
from kdspectra.report.tables import ABLATION_STUDENTS, CNN_STUDENTS

__all__ = ["COLUMNS", "claims_frame"]


def teacher_er_level(run: Run) -> list[Row]:
    exp, target = run.tables_experiment, paper_value("teacher_clip")
    value = run.teacher_value(exp, PRIMARY_ER)
    q = f"teacher ER ({exp}), raw ER"
    if math.isnan(value):
        return [not_tested("teacher_er_level", "raw ER", q, f"no teacher row in {exp!r}")]
    rule = Rule.within(target * (1 - LEVEL_MARGIN), target * (1 + LEVEL_MARGIN))
    return [
        run.fixed_row("teacher_er_level", q, value, rule, [(exp, "", "")], target, MINIATURE_NOTE)
    ]


def cosine_far_below_teacher(run: Run) -> list[Row]:
    exp, rows = run.tables_experiment, []
    students = [s for s in run.table_students if run.has(exp, s, COS)]
    for m in run.measures():
        teacher = run.teacher_value(exp, m)
        if math.isnan(teacher) or not students:
            why = f"experiment {exp!r} has no teacher row or no cosine student"
            rows.append(
                not_tested(
                    "cosine_far_below_teacher",
                    ER_MEASURES[m],
                    quantity("ratio", m),
                    why,
                    m == PRIMARY_ER,
                )
            )
            continue
        for s in students:
            ratio = paper_value(PAPER_T1.get(s)) / paper_value("teacher_clip")
            rule = Rule.below(
                FAR_BELOW_RATIO, None if math.isnan(ratio) else FAR_BELOW_RATIO - ratio
            )
            sample = one_sample(run.series(exp, s, COS, m) / teacher)
            q = quantity(f"{student_label(s)} / teacher", m)
            rows.append(
                run.row(
                    "cosine_far_below_teacher",
                    ER_MEASURES[m],
                    q,
                    sample,
                    rule,
                    [(exp, "", ""), (exp, s, COS)],
                    paper=paper_raw(m, ratio),
                    primary=m == PRIMARY_ER,
                )
            )
    return rows


def cosine_er_level(run: Run) -> list[Row]:
    exp = run.tables_experiment
    students = [s for s in run.table_students if run.has(exp, s, COS) and s in PAPER_T1]
    if not students:
        why = f"experiment {exp!r} has no cosine student of Table I"
        return [not_tested("cosine_er_level", "raw ER", "student ER, raw ER", why)]
    return [level_row(run, "cosine_er_level", exp, s, COS, PAPER_T1[s]) for s in students]


def cosine_flat(run: Run) -> list[Row]:
    exp = run.tables_experiment
    students = run.cnns(exp, COS)
    if len(students) < 2:
        why = f"experiment {exp!r} has < 2 CNN students with cosine"
        return [not_tested("cosine_flat", "raw ER", "pairwise gap / mean ER", why)]
    return [
        equivalent_pair(run, "cosine_flat", exp, COS, pair, m, students, PAPER_T1)
        for m in run.measures()
        for pair in combinations(students, 2)
    ]


def ablation_not_above_cnn(run: Run) -> list[Row]:
    exp = run.tables_experiment
    cnn = next((s for s in run.ablation_students if s in CNN_STUDENTS), None)
    others = [s for s in run.ablation_students if s not in CNN_STUDENTS and run.has(exp, s, COS)]
    if cnn is None or not run.has(exp, cnn, COS) or not others:
        why = f"experiment {exp!r} lacks a cosine CNN or a non-CNN ablation student"
        return [not_tested("ablation_not_above_cnn", "raw ER", "(ER(s) − ER(CNN)) / ER(CNN)", why)]
    rows = []
    for m in run.measures():
        base = run.series(exp, cnn, COS, m)
        for s in others:
            gap = paper_value(PAPER_ABL.get(s)) / paper_value("abl_cnn") - 1
            effect = None if math.isnan(gap) else NOT_ABOVE_MARGIN - gap
            sample = paired(
                relative(base, base.mean()), relative(run.series(exp, s, COS, m), base.mean())
            )
            q = quantity(
                f"({student_label(s)} − {student_label(cnn)}) / ER({student_label(cnn)})", m
            )
            rows.append(
                run.row(
                    "ablation_not_above_cnn",
                    ER_MEASURES[m],
                    q,
                    sample,
                    Rule.below(NOT_ABOVE_MARGIN, effect),
                    [(exp, cnn, COS), (exp, s, COS)],
                    paper=paper_raw(m, gap),
                    primary=m == PRIMARY_ER,
                )
            )
    return rows


GEOMETRY_CLAIMS = (
    teacher_er_level,
    cosine_far_below_teacher,
    cosine_er_level,
    cosine_flat,
    ablation_not_above_cnn,
    infonce_raises_er,
    infonce_gain,
    infonce_uniformity,
    capacity_saturation,
    dino_above_clip,
    dino_infonce_raises_er,
    dino_capacity_limit,
)


def claims_frame(
    summary: pd.DataFrame,
    noise: pd.DataFrame,
    *,
    tables_experiment: str,
    figures_experiment: str,
    table_students: Sequence[str] = CNN_STUDENTS,
    ablation_students: Sequence[str] = ABLATION_STUDENTS,
    noise_objective: str = NCE,
    random_init: bool = False,
    corruptions: pd.DataFrame | None = None,
    chance: float | None = None,
    min_fidelity_gain: float = DEFAULT_MIN_FIDELITY_GAIN,
    spectra: Mapping[str, object] | None = None,
    dial_cells: Sequence[Mapping[str, object]] = (),
) -> pd.DataFrame:
    """claims.csv: rows of every id (:data:`~kdspectra.paper.claim_rows.COLUMNS`).

    ``chance``: chance accuracy of the figures experiment (a fraction; the brittleness id is
    not tested without it). ``spectra``: Figure 1's singular values (see
    :func:`kdspectra.paper.tracking.spectrum_tracks_teacher`). ``corruptions``: the run's
    corruptions.parquet (empty when the stage is off). ``dial_cells``: the recolour dial's
    cells as dicts of :class:`kdspectra.dials.Cell` (the mirror ids, not tested without
    them). With ``random_init`` every note says
    the verdicts are structural only."""
    run = Run(
        summary,
        noise,
        tables_experiment,
        figures_experiment,
        tuple(table_students),
        tuple(ablation_students),
        noise_objective,
        chance,
        min_fidelity_gain,
        spectra,
        corruptions,
    )
    rows = [r for claim in GEOMETRY_CLAIMS for r in claim(run)]
    rows += tracking.spectrum_tracks_teacher(run)
    rows += robustness.robustness_rows(run, SMALL, MEDIUM, LARGE)
    rows += expansion_survives_projector(run)
    rows += mirror_rows(run, [Cell(**c) for c in dial_cells])  # type: ignore[arg-type]
    return table(rows, random_init)
