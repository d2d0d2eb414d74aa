"""What every claim row is made of: the run's inputs, the per-seed selections, the guards
that stop a row, and the table with Holm's correction applied.

:class:`Run` bundles what the claims read (the summary, the noise table, which experiment
plays which of the paper's runs) and builds rows: :meth:`Run.row` tests a sample under a
:class:`~kdspectra.paper.verdicts.Rule` unless a guard stops it, :func:`not_tested` says
why an id could not be tested. :func:`table` turns the rows into claims.csv's columns,
with Holm–Bonferroni over the primary rows. The claims themselves are in
:mod:`kdspectra.paper.claims` (geometry) and :mod:`kdspectra.paper.robustness` (noise).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from kdspectra.paper.statistics import Sample, holm
from kdspectra.paper.verdicts import CLAIMS, Judged, Rule, judge, judge_fixed, verdict
from kdspectra.report.tables import ABLATION_STUDENTS, CNN_STUDENTS

COLUMNS = (
    "id",
    "claim",
    "measure",
    "primary",
    "quantity",
    "paper",
    "ours",
    "ci_low",
    "ci_high",
    "n_seeds",
    "test",
    "p_holm",
    "verdict",
    "verdict_raw",
    "note",
)
# The rank measures an ER claim is judged on; the paper's own (raw ER) is primary, the
# others are sensitivity rows (does the verdict depend on the measure?).
ER_MEASURES = {"effective_rank": "raw ER", "effective_rank_l2": "L2-row ER", "rankme": "RankMe"}
PRIMARY_ER = "effective_rank"
DEFAULT_MIN_FIDELITY_GAIN = 0.25  # evaluation.min_fidelity_gain's schema default
RANDOM_INIT_NOTE = "random-init teachers: structural only"

Arm = tuple[str, str, str]  # (experiment, student, objective); student "" = the teacher


@dataclass
class Row:
    """One claims row before Holm's correction (``judged``/``rule`` None: not tested)."""

    id: str
    measure: str
    primary: bool
    quantity: str
    paper: float = math.nan
    judged: Judged | None = None
    rule: Rule | None = None
    note: str = ""


def not_tested(claim_id: str, measure: str, quantity: str, why: str, primary: bool = True) -> Row:
    """The row of an id the run cannot test, saying why."""
    return Row(claim_id, measure, primary, quantity, note=why)


@dataclass(frozen=True)
class Run:
    """What the claims read and which experiment plays which of the paper's runs (names
    from the ``report`` config section); ``chance`` is the figures experiment's chance
    accuracy (a fraction), ``spectra`` Figure 1's singular values by objective (lists of
    per-seed arrays) and the teacher's under ``"teacher"``."""

    summary: pd.DataFrame
    noise: pd.DataFrame
    tables_experiment: str
    figures_experiment: str
    table_students: Sequence[str] = CNN_STUDENTS
    ablation_students: Sequence[str] = ABLATION_STUDENTS
    noise_objective: str = "cosine_infonce"
    chance: float | None = None
    min_fidelity_gain: float = DEFAULT_MIN_FIDELITY_GAIN
    spectra: Mapping[str, object] | None = None
    corruptions: pd.DataFrame | None = field(default=None, compare=False)

    @cached_property
    def _students(self) -> dict[tuple[str, str, str], pd.DataFrame]:
        """Student rows by (experiment, student, objective), indexed by seed (built once:
        the claims select from it a few hundred times)."""
        rows = self.summary[self.summary["role"] == "student"]
        keys = ["experiment", "student", "objective"]
        return {k: g.set_index("seed").sort_index() for k, g in rows.groupby(keys, sort=False)}

    def series(self, experiment: str, student: str, objective: str, metric: str) -> pd.Series:
        """One student's ``metric`` indexed by seed (empty if the run lacks it)."""
        rows = self._students.get((experiment, student, objective))
        if rows is None or metric not in rows.columns:
            return pd.Series(dtype=float)
        return rows[metric].astype(float)

    def has(self, experiment: str, student: str, objective: str) -> bool:
        return not self.series(experiment, student, objective, PRIMARY_ER).empty

    def cnns(self, experiment: str, *objectives: str) -> list[str]:
        """The CNN students of ``experiment`` that ran every one of ``objectives``."""
        return [s for s in CNN_STUDENTS if all(self.has(experiment, s, o) for o in objectives)]

    def measures(self) -> list[str]:
        """The ER measures the summary carries (RankMe only after the geometry suite)."""
        return [m for m in ER_MEASURES if m in self.summary.columns]

    def teacher_value(self, experiment: str, metric: str) -> float:
        s = self.summary
        rows = s[(s["experiment"] == experiment) & (s["role"] == "teacher")]
        if not len(rows) or metric not in rows:
            return math.nan
        return float(rows[metric].mean())

    def experiment_label(self, experiment: str) -> str:
        from kdspectra.report.render import teacher_label

        rows = self.summary[self.summary["experiment"] == experiment]
        teacher = teacher_label(str(rows["teacher"].iloc[0])) if len(rows) else "?"
        return f"{experiment}, {teacher}"

    @cached_property
    def degenerate(self) -> dict[str, str]:
        """Experiment → why its teacher is degenerate, as teachers.csv decides it
        (:func:`kdspectra.report.tables.teachers`; a ``degenerate`` column of the summary's
        teacher rows wins). Empty when the summary lacks the sanity columns (no guard)."""
        from kdspectra.errors import ArtifactError
        from kdspectra.report.tables import teachers

        t = self.summary[self.summary["role"] == "teacher"]
        if "degenerate" in t.columns:
            flagged = t[t["degenerate"].fillna(False).astype(bool)]
            return dict.fromkeys(flagged["experiment"], "teachers.csv")
        try:
            table = teachers(self.summary)
        except ArtifactError:
            return {}
        bad = {(r.teacher, r.dataset): r.degenerate_reasons for r in table.itertuples()
               if r.degenerate}  # fmt: skip
        return {
            str(r.experiment): bad[(r.teacher, r.dataset)]
            for r in t.itertuples()
            if (r.teacher, r.dataset) in bad
        }

    @cached_property
    def dino_experiment(self) -> str | None:
        """The experiment that plays the paper's DINOv2 run: the figures experiment when it
        is not the tables one, else the first other experiment whose teacher is DINOv2
        (the demo's figures run is its CLIP run), else None."""
        from kdspectra.report.render import teacher_label

        if self.figures_experiment != self.tables_experiment:
            return self.figures_experiment
        t = self.summary[self.summary["role"] == "teacher"]
        for exp, teacher in zip(t["experiment"], t["teacher"], strict=True):
            if exp != self.tables_experiment and teacher_label(str(teacher)) == "DINOv2":
                return str(exp)
        return None

    def chance_of(self, experiment: str) -> float | None:
        """Chance accuracy of ``experiment`` (a fraction): the summary's
        ``chance_accuracy`` (majority-class share of the test labels) when it has one,
        else the ``chance`` option (1 / classes)."""
        s = self.summary
        if "chance_accuracy" in s.columns:
            value = s.loc[s["experiment"] == experiment, "chance_accuracy"].mean()
            if pd.notna(value):
                return float(value)
        return self.chance

    def guard(self, arms: Sequence[Arm]) -> str:
        """Why a row over ``arms`` may not be judged ('' when it may): a degenerate teacher
        (:attr:`degenerate`) or a cosine student whose mean ``fidelity_gain`` is below
        :attr:`min_fidelity_gain`. Absent columns: no guard."""
        for exp in dict.fromkeys(a[0] for a in arms):
            if exp in self.degenerate:
                return f"guard: the teacher of {exp!r} is degenerate ({self.degenerate[exp]})"
        for exp, student, objective in arms:
            if not student or objective != "cosine":
                continue
            gain = float(self.series(exp, student, objective, "fidelity_gain").mean())
            if gain < self.min_fidelity_gain:
                return (
                    f"guard: {student} ({objective}, {exp}) has fidelity_gain {gain:.2f} < "
                    f"evaluation.min_fidelity_gain {self.min_fidelity_gain:g}"
                )
        return ""

    def row(
        self,
        claim_id: str,
        measure: str,
        quantity: str,
        sample: Sample,
        rule: Rule,
        arms: Sequence[Arm],
        *,
        paper: float | None = None,
        primary: bool = True,
        note: str = "",
    ) -> Row:
        """A tested row, or a not-tested one naming the guard that stopped it."""
        stopped = self.guard(arms)
        if stopped:
            return not_tested(claim_id, measure, quantity, stopped, primary)
        if sample.n == 0:
            return not_tested(claim_id, measure, quantity, "no seed ran both arms", primary)
        paper_value = math.nan if paper is None else float(paper)
        if sample.n == 1:
            note = "; ".join(x for x in ("one seed: no interval", note) if x)
        return Row(
            claim_id, measure, primary, quantity, paper_value, judge(sample, rule), rule, note
        )

    def fixed_row(
        self,
        claim_id: str,
        quantity: str,
        value: float,
        rule: Rule,
        arms: Sequence[Arm],
        paper: float,
        note: str = "",
    ) -> Row:
        """A raw-ER row on one value without seeds (a teacher), judged directly."""
        stopped = self.guard(arms)
        if stopped:
            return not_tested(claim_id, ER_MEASURES[PRIMARY_ER], quantity, stopped)
        j = judge_fixed(value, rule, "one teacher, no seeds")
        return Row(claim_id, ER_MEASURES[PRIMARY_ER], True, quantity, paper, j, rule, note)


def _fmt_verdicts(row: Row, p_adjusted: float) -> tuple[str, str]:
    if row.judged is None or row.rule is None:
        return "not tested", "not tested"
    raw = verdict(row.rule, row.judged, row.judged.p)
    p = p_adjusted if row.primary and not math.isnan(p_adjusted) else row.judged.p
    return verdict(row.rule, row.judged, p), raw


def table(rows: Sequence[Row], random_init: bool = False) -> pd.DataFrame:
    """claims.csv: :data:`COLUMNS`, ids in :data:`CLAIMS` order; ``p_holm`` over the primary
    tested rows, ``verdict`` from it (sensitivity rows: the raw verdict)."""
    order = {k: i for i, k in enumerate(CLAIMS)}
    rows = sorted(rows, key=lambda r: order[r.id])
    raw_p = [r.judged.p if r.primary and r.judged is not None else math.nan for r in rows]
    adjusted = holm(raw_p)
    records = []
    for r, p_adj in zip(rows, adjusted, strict=True):
        v, v_raw = _fmt_verdicts(r, p_adj)
        j = r.judged
        note = "; ".join(x for x in (RANDOM_INIT_NOTE if random_init else "", r.note) if x)
        records.append(
            {
                "id": r.id,
                "claim": CLAIMS[r.id][0],
                "measure": r.measure,
                "primary": bool(r.primary),
                "quantity": r.quantity,
                "paper": r.paper,
                "ours": j.mean if j else math.nan,
                "ci_low": j.low if j else math.nan,
                "ci_high": j.high if j else math.nan,
                "n_seeds": j.n if j else 0,
                "test": j.test if j else "",
                "p_holm": p_adj,
                "verdict": v,
                "verdict_raw": v_raw,
                "note": note,
            }
        )
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    frame["n_seeds"] = frame["n_seeds"].astype("int64")
    frame["primary"] = frame["primary"].astype(bool)
    return frame


def mean_over(
    run: Run, experiment: str, students: Sequence[str], objective: str, metric: str
) -> pd.Series:
    """Per seed, the mean of ``metric`` over ``students`` (the seeds all of them ran)."""
    frame = pd.concat(
        {s: run.series(experiment, s, objective, metric) for s in students}, axis=1, join="inner"
    )
    return frame.mean(axis=1) if len(frame.columns) else pd.Series(dtype=float)


def relative(series: pd.Series, scale: float) -> pd.Series:
    """``series`` divided by a positive scale (NaN scale: all NaN)."""
    return series / scale if scale and np.isfinite(scale) else series * math.nan
