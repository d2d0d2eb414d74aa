"""The mirror claims, judged on the anisotropy dial (:mod:`kdspectra.dials`): does a
cosine student's effective rank follow its teacher's when only the teacher's geometry
changes, and does InfoNCE stay above cosine in every cell?

``mirror_cosine_tracks_teacher``, per dial, cone offset c, student and ER measure: the
slope of the cosine student's ER on the teacher's ER across the dial's cells of that c
(the decays α). One slope per c, not one over every cell: the raw ER does not see c, so
cells that differ only in c share a teacher ER while c itself moves the student (a cone
is harder to fit), and a guard that stops a cone's cells leaves the other cone's slope
tested. The teacher's ER is one
fixed number per cell; the student's varies with the seed, and within one seed the
cells share the student's initialisation and data order. So the slope is fitted once per
seed (ordinary least squares over the cells) and the per-seed slopes, which are
independent replicates, get a one-sample t interval. Pooling every (cell, seed) point into
one regression would treat the seeds' shared randomness as independent and make the
interval too narrow. The claim holds when the slope is significantly above
:data:`~kdspectra.paper.verdicts.MIRROR_SLOPE` (at least half of the teacher's change
carries over; an exact mirror gives 1, a student that ignores the teacher 0).

``mirror_infonce_above_cosine``, per cell, student and InfoNCE arm: ER(InfoNCE) −
ER(cosine), paired over seeds, against 0. Every primary row joins the claims table's
Holm family, like the per-student rows of the other ids.

Raw ER is the primary measure, the ER of L2-normalised rows a sensitivity row (the cone
offset moves the second, not the first). A run without a dial gets one "not tested" row
per id, saying so.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kdspectra.dials import Cell
from kdspectra.paper.claim_rows import ER_MEASURES, PRIMARY_ER, Arm, Row, Run, not_tested
from kdspectra.paper.paper_values import COS, quantity
from kdspectra.paper.statistics import one_sample, paired
from kdspectra.paper.verdicts import MIRROR_SLOPE, Rule
from kdspectra.report.render import student_label

__all__ = ["MIRROR_MEASURES", "dials", "mirror_rows", "seed_slopes"]

# Measured on both sides of the slope: the paper's raw ER and the L2-row ER.
MIRROR_MEASURES = ("effective_rank", "effective_rank_l2")
NO_DIAL = "the run has no recolour experiment (experiments.<e>.recolour), so no dial"


def dials(cells: Sequence[Cell]) -> dict[str, list[Cell]]:
    """Cells grouped by dial, in config order."""
    out: dict[str, list[Cell]] = {}
    for cell in cells:
        out.setdefault(cell.dial, []).append(cell)
    return out


def seed_slopes(teacher_er: Sequence[float], student_er: pd.DataFrame) -> pd.Series:
    """Per seed (rows of ``student_er``, one column per cell), the OLS slope of the
    student's ER on the cells' ``teacher_er``."""
    x = np.asarray(teacher_er, dtype=np.float64)
    xc = x - x.mean()
    y = student_er.to_numpy(dtype=np.float64)
    slopes = (y - y.mean(axis=1, keepdims=True)) @ xc / float(xc @ xc)
    return pd.Series(slopes, index=student_er.index, dtype=float)


def _students(run: Run, cells: Sequence[Cell], objective: str) -> list[str]:
    """Students that ran ``objective`` in every one of ``cells``."""
    found = run.summary.loc[run.summary["role"] == "student", "student"]
    return [
        s
        for s in dict.fromkeys(found.astype(str))
        if all(run.has(c.experiment, s, objective) for c in cells)
    ]


def _slope_row(run: Run, name: str, cells: Sequence[Cell], student: str, m: str) -> Row:
    """One slope row over ``cells`` (one dial, one cone offset)."""
    claim_id = "mirror_cosine_tracks_teacher"
    label = f"slope of {student_label(student)} cosine ER on teacher ER over α"
    q = quantity(f"{label} ({name}, c={cells[0].cone:g})", m)
    teacher = [run.teacher_value(c.experiment, m) for c in cells]
    if len(cells) < 2 or np.isnan(teacher).any() or np.ptp(teacher) == 0:
        why = f"{q}: needs at least 2 cells (α values) with distinct teacher ER, found {teacher}"
        return not_tested(claim_id, ER_MEASURES[m], q, why, m == PRIMARY_ER)
    per_cell = {c.experiment: run.series(c.experiment, student, COS, m) for c in cells}
    frame = pd.concat(per_cell, axis=1, join="inner").dropna()
    arms: list[Arm] = [
        a for c in cells for a in ((c.experiment, "", ""), (c.experiment, student, COS))
    ]
    rule = Rule.above(MIRROR_SLOPE, MIRROR_SLOPE)
    note = f"{len(cells)} cells, teacher ER {min(teacher):.1f} to {max(teacher):.1f}"
    sample = one_sample(seed_slopes(teacher, frame))
    return run.row(claim_id, ER_MEASURES[m], q, sample, rule, arms, primary=m == PRIMARY_ER,
                   note=note)  # fmt: skip


def mirror_cosine_tracks_teacher(run: Run, cells: Sequence[Cell]) -> list[Row]:
    rows = []
    for name, members in dials(cells).items():
        students = _students(run, members, COS)
        if not students:
            why = f"dial {name!r} has no student distilled with cosine in every cell"
            rows.append(not_tested("mirror_cosine_tracks_teacher", "raw ER", "slope", why))
        cones = {c.cone: [x for x in members if x.cone == c.cone] for c in members}
        for s in students:
            rows += [
                _slope_row(run, name, cone, s, m) for cone in cones.values() for m in _measures(run)
            ]
    return rows or [not_tested("mirror_cosine_tracks_teacher", "raw ER", "slope", NO_DIAL)]


def _infonce_arms(run: Run, cell: Cell, student: str) -> list[str]:
    s = run.summary
    rows = s[(s["experiment"] == cell.experiment) & (s["student"] == student)]
    return [str(o) for o in dict.fromkeys(rows["objective"]) if o != COS]


def _above_rows(run: Run, cell: Cell, student: str) -> list[Row]:
    rows = []
    for arm in _infonce_arms(run, cell, student):
        for m in _measures(run):
            label = f"{student_label(student)}, {arm} − cosine, α={cell.alpha:g} c={cell.cone:g}"
            sample = paired(
                run.series(cell.experiment, student, COS, m),
                run.series(cell.experiment, student, arm, m),
            )
            arms: list[Arm] = [(cell.experiment, student, COS), (cell.experiment, student, arm)]
            rows.append(
                run.row(
                    "mirror_infonce_above_cosine",
                    ER_MEASURES[m],
                    quantity(f"{label} ({cell.experiment})", m),
                    sample,
                    Rule.above(0.0),
                    arms,
                    primary=m == PRIMARY_ER,
                )
            )
    return rows


def mirror_infonce_above_cosine(run: Run, cells: Sequence[Cell]) -> list[Row]:
    rows = [r for c in cells for s in _students(run, [c], COS) for r in _above_rows(run, c, s)]
    if rows:
        return rows
    why = NO_DIAL if not cells else "no dial cell ran a student with cosine and an InfoNCE arm"
    return [not_tested("mirror_infonce_above_cosine", "raw ER", "ER(InfoNCE) − ER(cosine)", why)]


def _measures(run: Run) -> list[str]:
    return [m for m in MIRROR_MEASURES if m in run.summary.columns]


def mirror_rows(run: Run, cells: Sequence[Cell]) -> list[Row]:
    """Every row of the two mirror ids (see the module docstring)."""
    return mirror_cosine_tracks_teacher(run, cells) + mirror_infonce_above_cosine(run, cells)
