"""The expansion claims (§III-C, §IV): InfoNCE raises the rank (CLIP and DINOv2), by
about 2.4×, makes the embedding more uniform, saturates with capacity (S below M ≈ L), the
DINOv2 students start higher than CLIP's (inherited anisotropy, Welch across experiments;
within each dataset when the run has same-dataset pairs, :func:`dino_clip_pairs`) and
reach M ≈ L ≈ 82. One function per id of :data:`kdspectra.paper.verdicts.CLAIMS`,
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


DINO_ABOVE_CLIP = "mean cosine ER over S/M/L, DINOv2 − CLIP"


def _experiment_keys(run: Run) -> dict[str, tuple[str, str]]:
    """Experiment → (dataset, teacher) as the summary records them (config keys)."""
    s = run.summary.drop_duplicates("experiment")
    return {
        str(e): (str(d), str(t))
        for e, d, t in zip(s["experiment"], s["dataset"], s["teacher"], strict=True)
    }


def _on(keys: dict[str, tuple[str, str]], dataset: str, teacher: str, preferred: str) -> str:
    """The experiment with ``teacher`` on ``dataset`` ('' when none): ``preferred`` (the
    one playing the paper's run) when it qualifies, else the first in summary order."""
    found = [e for e, key in keys.items() if key == (dataset, teacher)]
    return preferred if preferred in found else next(iter(found), "")


def dino_clip_pairs(run: Run) -> list[tuple[str, str]]:
    """The (CLIP, DINOv2) experiment pairs that share a dataset, one per dataset.

    The two teachers are those of the experiments playing the paper's runs
    (``tables_experiment`` and :attr:`Run.dino_experiment`), identified by the summary's
    ``teacher`` column, the config's teacher key: one key is one set of weights, so a pair
    differs in the teacher alone, and no experiment name is parsed. An experiment is a
    dataset's CLIP (DINOv2) side when its teacher is the CLIP (DINOv2) run's key and its
    dataset is that one. Empty when the two runs share a teacher key or no dataset has
    both sides (the paper's layout): the caller then falls back to the cross-dataset pair.
    """
    clip, dino = run.tables_experiment, run.dino_experiment
    keys = _experiment_keys(run)
    if dino is None or clip not in keys or dino not in keys:
        return []
    t_clip, t_dino = keys[clip][1], keys[dino][1]
    if t_clip == t_dino:
        return []
    datasets = dict.fromkeys(d for d, _ in keys.values())
    pairs = [(_on(keys, d, t_clip, clip), _on(keys, d, t_dino, dino)) for d in datasets]
    return [(c, d) for c, d in pairs if c and d]


def dino_above_clip(run: Run) -> list[Row]:
    """DINOv2 − CLIP cosine ER: per same-dataset pair when the run has them (the factorial
    overlay), else the paper's comparison across datasets, noted as confounded."""
    missing = _no_dino(run, "dino_above_clip", DINO_ABOVE_CLIP)
    if missing:
        return missing
    pairs = dino_clip_pairs(run)
    if pairs:
        return [r for clip, dino in pairs for r in _dino_vs_clip(run, clip, dino)]
    return _dino_vs_clip(run, run.tables_experiment, str(run.dino_experiment))


def _dataset_note(run: Run, clip: str, dino: str) -> str:
    """Whether the compared experiments share a dataset (the row says which case it is)."""
    keys = _experiment_keys(run)
    d_clip, d_dino = keys.get(clip, ("?", ""))[0], keys.get(dino, ("?", ""))[0]
    if d_clip == d_dino:
        return (
            f"same dataset ({d_clip}): {dino} vs {clip} differ in the teacher only (the "
            "paper's number is its CLIP/CIFAR-10 vs DINOv2/CIFAR-100 comparison)"
        )
    return (
        f"confounded by the dataset: {dino} is on {d_dino}, {clip} on {d_clip}, so teacher "
        "and dataset change together (config/factorial.yaml adds the same-dataset pairs)"
    )


def _dino_vs_clip(run: Run, clip: str, dino: str) -> list[Row]:
    """Welch over seeds of the per-seed mean cosine ER over the shared CNN students."""
    students = [s for s in run.cnns(clip, COS) if s in run.cnns(dino, COS)]
    if not students:
        why = f"no CNN cosine student in both {clip!r} and {dino!r}"
        return [not_tested("dino_above_clip", "raw ER", DINO_ABOVE_CLIP, why)]
    paper = paper_value("dino_cos_m") - float(
        np.mean([paper_value(PAPER_T1[s]) for s in CNN_STUDENTS])
    )
    arms = [(e, s, COS) for e in (clip, dino) for s in students]
    where = _dataset_note(run, clip, dino)
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
                quantity(f"{DINO_ABOVE_CLIP}, {dino} − {clip}", m),
                sample,
                Rule.above(0.0, paper),
                arms,
                paper=paper_raw(m, paper),
                primary=m == PRIMARY_ER,
                note=f"{teachers}; {where}",
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
