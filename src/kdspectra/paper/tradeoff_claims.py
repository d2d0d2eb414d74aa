"""The projector claim (beyond the paper): does InfoNCE's expansion survive when the
contrastive loss acts on a SimCLR projector head instead of on the very embedding that is
measured? One id of :data:`kdspectra.paper.verdicts.CLAIMS`, ``expansion_survives_projector``.

A run with ``training.infonce.projector: [none, mlp]`` trains, for each λ, one arm without
the head and one with it (:func:`kdspectra.registry.objective_arms`); their students start
from the same initial weights and see the same views, and ER is always measured on the
embedding the cosine loss sees. Per student and λ > 0, the row tests the gain with the
head, ER(λ, head) − ER(cosine), paired over seeds, against 0; the note puts it beside the
gain without the head and the paired difference head − no head (interval), so a reader
sees how much of the expansion the head keeps. λ = 0 is skipped: it adds no InfoNCE.
"""

from __future__ import annotations

from collections.abc import Iterator

from kdspectra import registry
from kdspectra.errors import ConfigError
from kdspectra.paper.claim_rows import ER_MEASURES, PRIMARY_ER, Row, Run, not_tested
from kdspectra.paper.paper_values import COS, quantity
from kdspectra.paper.statistics import interval, paired
from kdspectra.paper.verdicts import Rule
from kdspectra.report.render import student_label

CLAIM = "expansion_survives_projector"
Q0 = "ER(λ, InfoNCE on the head) − ER(cosine)"


def head_pairs(run: Run, experiment: str) -> Iterator[tuple[registry.Arm, str]]:
    """(arm with the head, the same λ's arm without it) for every λ > 0 that ``experiment``
    ran both ways, in the summary's order."""
    rows = run.summary[
        (run.summary["experiment"] == experiment) & (run.summary["role"] == "student")
    ]
    names = list(dict.fromkeys(rows["objective"].astype(str)))
    for name in names:
        try:
            arm = registry.parse_arm(name)
        except ConfigError:
            continue
        plain = registry.arm_name(arm.objective, arm.weight, "none")
        if arm.projector != "none" and arm.weight != 0 and plain in names:
            yield arm, plain


def _note(run: Run, experiment: str, student: str, arm: registry.Arm, plain: str) -> str:
    """The gain without the head and the paired difference head − no head, with its CI."""
    base = run.series(experiment, student, COS, PRIMARY_ER)
    without = paired(base, run.series(experiment, student, plain, PRIMARY_ER))
    diff = paired(
        run.series(experiment, student, plain, PRIMARY_ER),
        run.series(experiment, student, arm.name, PRIMARY_ER),
    )
    low, high = interval(diff)
    return (
        f"without the head ({plain}): gain {without.mean:+.3g}; head − no head "
        f"{diff.mean:+.3g} [{low:.3g}, {high:.3g}] (paired, 95 % CI)"
    )


def _rows(run: Run, experiment: str, student: str, arm: registry.Arm, plain: str) -> list[Row]:
    rows = []
    gain = float(
        (run.series(experiment, student, plain, PRIMARY_ER)
         - run.series(experiment, student, COS, PRIMARY_ER)).mean()
    )  # fmt: skip
    for m in run.measures():
        sample = paired(
            run.series(experiment, student, COS, m), run.series(experiment, student, arm.name, m)
        )
        what = f"{student_label(student)}, {registry.parse_arm(arm.name).label} ({experiment})"
        rows.append(
            run.row(
                CLAIM,
                ER_MEASURES[m],
                quantity(f"{Q0}, {what}", m),
                sample,
                Rule.above(0.0, gain if gain > 0 else None),
                [(experiment, student, COS), (experiment, student, arm.name)],
                primary=m == PRIMARY_ER,
                note=_note(run, experiment, student, arm, plain) if m == PRIMARY_ER else "",
            )
        )
    return rows


def expansion_survives_projector(run: Run) -> list[Row]:
    """Per experiment (the tables and figures ones first, then every other the summary
    holds, e.g. one that sweeps alone), student and λ > 0 run with and without the head:
    the gain over cosine with the head, paired t against 0 (see the module docstring)."""
    rows: list[Row] = []
    found_head = False
    others = run.summary["experiment"].astype(str)
    for exp in dict.fromkeys((run.tables_experiment, run.figures_experiment, *others)):
        for arm, plain in head_pairs(run, exp):
            found_head = True
            students = [
                s
                for s in dict.fromkeys([*run.table_students, *run.ablation_students])
                if all(run.has(exp, s, o) for o in (COS, plain, arm.name))
            ]
            for s in students:
                rows += _rows(run, exp, s, arm, plain)
    if rows:
        return rows
    why = (
        "no student ran cosine and one λ > 0 both with and without the head"
        if found_head
        else "the run trained no arm with a projector head beside the same λ without it "
        "(training.infonce.projector: [none, mlp])"
    )
    return [not_tested(CLAIM, ER_MEASURES[PRIMARY_ER], Q0, why)]
