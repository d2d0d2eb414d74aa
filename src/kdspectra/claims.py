"""The paper's claims, judged on one run: a verdict per claim with a CI over seeds.

Pure functions of the run summary and the noise long table (see :mod:`kdspectra.tables`),
so a claims table can be rebuilt from those two files and tested on synthetic summaries.
Every comparison is *paired across seeds*: the two arms of a difference share the seed
(same initialisation and data order), the per-seed differences (or ratios) are the
sample, and the 95 % interval is Student's t over seeds. Each effective-rank claim is
judged twice, on the paper's raw ER and on the ER of L2-normalised rows, in separate rows
labelled in ``quantity``; when the summary carries RankMe, a third time on RankMe, in
extra rows whose claim ends in "(RankMe)" (the paper used entropy ER).

The decision rule is :data:`DECISION_RULE` (written into claims.md verbatim); its numbers
are the module constants below it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from kdspectra.paper import PAPER, student_keys
from kdspectra.provenance import Provenance
from kdspectra.render import student_label, teacher_label
from kdspectra.tables import ABLATION_STUDENTS, CNN_STUDENTS

COLUMNS = ("claim", "quantity", "paper", "ours", "ci_low", "ci_high", "n_seeds", "verdict")
VERDICTS = ("holds", "fails", "inconclusive", "not tested")
ER_VARIANTS = {"effective_rank": "raw ER", "effective_rank_l2": "L2-row ER"}
# The same ER claims judged on RankMe (Garrido et al. 2023), when the summary carries it:
# does a verdict depend on the rank measure? Extra rows, claim suffixed RANKME_SUFFIX.
RANKME = "rankme"
RANKME_SUFFIX = " (RankMe)"
RANKME_NOTE = "RankMe (Garrido et al. 2023), not the paper's measure: the paper used entropy ER"
VARIANT_LABELS = ER_VARIANTS | {RANKME: "RankMe"}

CONFIDENCE = 0.95
FAR_BELOW_RATIO = 0.5  # "far below": student/teacher ER ratio CI entirely below this
FLAT_TOLERANCE = 0.10  # "flat": every pairwise S/M/L gap within ±10 % of their mean ER
GAIN_TARGET = 2.4  # "gain ≈ 2.4": ratio CI inside [2.4 / 1.25, 2.4 · 1.25]
GAIN_FACTOR = 1.25

DECISION_RULE = f"""\
**Decision rule.** Differences and ratios are paired across seeds (same seed in both
arms); [ci_low, ci_high] is the {100 * CONFIDENCE:.0f} % Student-t interval of the mean of
the per-seed values. A claim *holds* when the whole interval lies on the claimed side,
*fails* when the whole interval lies on the other side, and is *inconclusive* otherwise,
and always with one seed (no interval). *not tested*: the run lacks the claim's inputs.

- "far below the teacher": per-seed student ER / teacher ER;
  holds if ci_high < {FAR_BELOW_RATIO}, fails if ci_low ≥ {FAR_BELOW_RATIO}.
- "flat over S/M/L": each pairwise paired gap between the CNN students, divided by the
  mean of their mean ERs; holds if every interval lies inside ±{FLAT_TOLERANCE:.2f},
  fails if one lies wholly outside it. Reported: (max − min) / mean of the means, with
  the interval of the widest pair.
- "ablation students ≤ CNN": paired gap ER(student) − ER(CNN); holds if ci_high ≤ 0.
- "InfoNCE raises ER": paired gap ER(cosine + InfoNCE) − ER(cosine); holds if ci_low > 0.
- "gain ≈ {GAIN_TARGET}": per seed, mean InfoNCE ER over the CNN students / their mean
  cosine ER; holds if the interval lies inside
  [{GAIN_TARGET / GAIN_FACTOR:.2f}, {GAIN_TARGET * GAIN_FACTOR:.2f}] (a factor {GAIN_FACTOR}
  either way), fails if it lies wholly outside.
- "DINOv2 > CLIP": paired gap of the mean cosine ER over the CNN students between the two
  experiments (they also differ in dataset, as in the paper); holds if ci_low > 0.
- "0.5M beats 8M at the highest σ": paired gap in linear-probe accuracy (percentage
  points) of the InfoNCE students at the highest σ of the run; holds if ci_low > 0.

Rows whose claim ends in "(RankMe)" apply the same rules to RankMe (Garrido et al. 2023,
the entropy of the *uncentred* singular values, the number SSL papers report) in place of
ER. The paper used entropy ER; these rows say whether a verdict depends on that choice.

The *paper* column is the paper's value of the quantity where it reports one (it
reports raw ER only, so L2-row and RankMe rows have none)."""


@dataclass(frozen=True)
class Estimate:
    """Mean of per-seed values with its t-interval (NaN bounds for fewer than 2 seeds)."""

    mean: float
    low: float
    high: float
    n: int


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Student-t interval of the mean of ``values`` (one value per seed)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if v.size < 2:
        return Estimate(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Estimate(mean, mean - half, mean + half, int(v.size))


def verdict_inside(est: Estimate, lo: float, hi: float) -> str:
    """holds if the interval lies in [lo, hi], fails if wholly outside it."""
    if est.n < 2 or math.isnan(est.low):
        return "inconclusive"
    if lo <= est.low and est.high <= hi:
        return "holds"
    if est.high < lo or est.low > hi:
        return "fails"
    return "inconclusive"


def verdict_above(est: Estimate, threshold: float, strict: bool = True) -> str:
    """holds if the whole interval is above ``threshold`` (or at it, when not strict)."""
    if est.n < 2 or math.isnan(est.low):
        return "inconclusive"
    if est.low > threshold or (not strict and est.low >= threshold):
        return "holds"
    if est.high < threshold or (strict and est.high <= threshold):
        return "fails"
    return "inconclusive"


def verdict_below(est: Estimate, threshold: float, strict: bool = True) -> str:
    """holds if the whole interval is below ``threshold`` (or at it, when not strict)."""
    flipped = Estimate(-est.mean, -est.high, -est.low, est.n)
    return verdict_above(flipped, -threshold, strict)


# --------------------------------------------------------------------------- selection


def per_seed(
    summary: pd.DataFrame, experiment: str, student: str, objective: str, metric: str
) -> pd.Series:
    """One student's ``metric`` indexed by seed (empty if the run lacks that model)."""
    rows = summary[
        (summary["experiment"] == experiment)
        & (summary["role"] == "student")
        & (summary["student"] == student)
        & (summary["objective"] == objective)
    ]
    return rows.set_index("seed")[metric].astype(float).sort_index()


def teacher_value(summary: pd.DataFrame, experiment: str, metric: str) -> float:
    rows = summary[(summary["experiment"] == experiment) & (summary["role"] == "teacher")]
    return float(rows[metric].mean()) if len(rows) else math.nan


def paired(a: pd.Series, b: pd.Series) -> pd.DataFrame:
    """The seeds both arms ran, as columns ``a`` and ``b``."""
    return pd.concat({"a": a, "b": b}, axis=1, join="inner")


# --------------------------------------------------------------------------- rows


def _row(
    claim: str, quantity: str, paper: float | None, est: Estimate, verdict: str, note: str = ""
) -> dict[str, object]:
    if est.n == 1 and verdict == "inconclusive":
        note = "; ".join(x for x in ("one seed: no interval", note) if x)
    return {
        "claim": claim,
        "quantity": quantity,
        "paper": math.nan if paper is None else float(paper),
        "ours": est.mean,
        "ci_low": est.low,
        "ci_high": est.high,
        "n_seeds": est.n,
        "verdict": verdict,
        "note": note,
    }


def not_tested(claim: str, quantity: str, why: str) -> dict[str, object]:
    return _row(claim, quantity, None, Estimate(math.nan, math.nan, math.nan, 0), "not tested", why)


def _paper(metric: str, value: float | None) -> float | None:
    """The paper reports raw ER only; its numbers do not apply to the L2 variant."""
    return value if metric == "effective_rank" else None


def _paper_er(key: str) -> float:
    value = PAPER[key].value
    return math.nan if value is None else float(value)


def _name(student: str) -> str:
    return student_label(student)


@dataclass(frozen=True)
class Run:
    """What the claims read: the summary, the noise table and which experiment plays which
    of the paper's runs (names from the ``report`` config section)."""

    summary: pd.DataFrame
    noise: pd.DataFrame
    tables_experiment: str
    figures_experiment: str
    table_students: Sequence[str] = CNN_STUDENTS
    ablation_students: Sequence[str] = ABLATION_STUDENTS
    noise_objective: str = "cosine_infonce"

    def has(self, experiment: str, student: str, objective: str) -> bool:
        return not per_seed(self.summary, experiment, student, objective, "effective_rank").empty

    def cnns(self, experiment: str, objective: str) -> list[str]:
        return [s for s in CNN_STUDENTS if self.has(experiment, s, objective)]


# Student → key of its number in paper_numbers.yaml, per table of the paper.
PAPER_T1 = student_keys("t1_s")
PAPER_T2 = student_keys("t2_s")
PAPER_ABL = {s: k for s, k in student_keys("abl_hybrid").items() if s not in CNN_STUDENTS}


def far_below_teacher(run: Run, metric: str) -> list[dict[str, object]]:
    """Cosine students' ER is far below the teacher's (one row per student)."""
    claim, exp = "cosine ER ≪ teacher ER", run.tables_experiment
    teacher = teacher_value(run.summary, exp, metric)
    students = [s for s in run.table_students if run.has(exp, s, "cosine")]
    if math.isnan(teacher) or not students:
        why = f"experiment {exp!r} has no teacher row or no cosine student"
        return [not_tested(claim, f"student / teacher, {VARIANT_LABELS[metric]}", why)]
    rows = []
    for s in students:
        est = t_interval(per_seed(run.summary, exp, s, "cosine", metric) / teacher)
        paper = _paper_er(PAPER_T1[s]) / _paper_er("teacher_clip") if s in PAPER_T1 else None
        q = f"{_name(s)} / teacher, {VARIANT_LABELS[metric]}"
        rows.append(_row(claim, q, _paper(metric, paper), est, verdict_below(est, FAR_BELOW_RATIO)))
    return rows


def flat_over_capacity(run: Run, metric: str) -> list[dict[str, object]]:
    """Cosine ER is flat across S/M/L: an equivalence test on every pairwise gap."""
    claim, exp = "cosine ER flat over S/M/L", run.tables_experiment
    q = f"(max − min) / mean over S/M/L, {VARIANT_LABELS[metric]}"
    students = run.cnns(exp, "cosine")
    if len(students) < 2:
        return [not_tested(claim, q, f"experiment {exp!r} has < 2 CNN students with cosine")]
    series = {s: per_seed(run.summary, exp, s, "cosine", metric) for s in students}
    means = np.array([v.mean() for v in series.values()])
    scale = float(means.mean())
    gaps = [
        t_interval((lambda p: (p["b"] - p["a"]) / scale)(paired(series[a], series[b])))
        for a, b in combinations(students, 2)
    ]
    widest = max(gaps, key=lambda g: abs(g.mean))
    verdicts = [verdict_inside(g, -FLAT_TOLERANCE, FLAT_TOLERANCE) for g in gaps]
    verdict = (
        "fails"
        if "fails" in verdicts
        else "holds"
        if set(verdicts) == {"holds"}
        else "inconclusive"
    )
    est = Estimate(float((means.max() - means.min()) / scale), widest.low, widest.high, widest.n)
    paper_vals = [_paper_er(PAPER_T1[s]) for s in students]
    paper = (max(paper_vals) - min(paper_vals)) / float(np.mean(paper_vals))
    note = f"students {', '.join(students)}; interval of the widest pair"
    return [_row(claim, q, _paper(metric, paper), est, verdict, note)]


Arm = tuple[str, str]  # (student, objective)
Pair = tuple[str, Arm, Arm, str, str, float | None]  # experiment, a, b, metric, quantity, paper


def _gap_rows(
    run: Run, claim: str, pairs: Sequence[Pair], judge: Callable[[Estimate], str]
) -> list[dict[str, object]]:
    """One row per pair: the paired per-seed gap metric(b) − metric(a), judged."""
    rows = []
    for exp, (sa, oa), (sb, ob), metric, quantity, paper in pairs:
        p = paired(
            per_seed(run.summary, exp, sa, oa, metric), per_seed(run.summary, exp, sb, ob, metric)
        )
        est = t_interval(p["b"] - p["a"])
        rows.append(_row(claim, quantity, _paper(metric, paper), est, judge(est)))
    return rows


def ablation_not_above_cnn(run: Run, metric: str) -> list[dict[str, object]]:
    """The semi-global and global students do not exceed the CNN (one row each)."""
    claim, exp = "ablation students ≤ CNN", run.tables_experiment
    cnn = next((s for s in run.ablation_students if s in CNN_STUDENTS), None)
    others = [s for s in run.ablation_students if s not in CNN_STUDENTS]
    others = [s for s in others if run.has(exp, s, "cosine")]
    if cnn is None or not run.has(exp, cnn, "cosine") or not others:
        why = f"experiment {exp!r} lacks a cosine CNN or a non-CNN ablation student"
        return [not_tested(claim, f"ER(student) − ER(CNN), {VARIANT_LABELS[metric]}", why)]
    pairs: list[Pair] = []
    for s in others:
        paper = _paper_er(PAPER_ABL[s]) - _paper_er("abl_cnn") if s in PAPER_ABL else None
        q = f"{s} − {cnn}, {VARIANT_LABELS[metric]}"
        pairs.append((exp, (cnn, "cosine"), (s, "cosine"), metric, q, paper))
    return _gap_rows(run, claim, pairs, lambda e: verdict_below(e, 0.0, strict=False))


def infonce_raises_er(run: Run, metric: str) -> list[dict[str, object]]:
    """InfoNCE ER > cosine ER, one row per student and experiment that ran both arms."""
    claim = "InfoNCE ER > cosine ER"
    pairs: list[Pair] = []
    exps = dict.fromkeys((run.tables_experiment, run.figures_experiment))
    for exp in exps:
        label = _experiment_label(run, exp)
        students = dict.fromkeys([*run.table_students, *run.ablation_students])
        for s in students:
            if not (run.has(exp, s, "cosine") and run.has(exp, s, "cosine_infonce")):
                continue
            paper = _infonce_paper_gap(exp == run.tables_experiment, s)
            q = f"{_name(s)} ({label}), {VARIANT_LABELS[metric]}"
            pairs.append((exp, (s, "cosine"), (s, "cosine_infonce"), metric, q, paper))
    if not pairs:
        why = "no experiment ran a student with both objectives"
        return [not_tested(claim, f"ER(InfoNCE) − ER(cosine), {VARIANT_LABELS[metric]}", why)]
    return _gap_rows(run, claim, pairs, lambda e: verdict_above(e, 0.0))


def _infonce_paper_gap(tables_run: bool, student: str) -> float | None:
    """Table II − Table I (CLIP), or Fig. 2's 82 − 53.78 (DINOv2, Student-M/L only)."""
    if tables_run:
        return (
            _paper_er(PAPER_T2[student]) - _paper_er(PAPER_T1[student])
            if student in PAPER_T1
            else None
        )
    key = {"cnn_m": "m", "cnn_l": "l"}.get(student)
    return _paper_er(f"dino_nce_{key}") - _paper_er(f"dino_cos_{key}") if key else None


def _experiment_label(run: Run, exp: str) -> str:
    rows = run.summary[run.summary["experiment"] == exp]
    teacher = teacher_label(str(rows["teacher"].iloc[0])) if len(rows) else "?"
    return f"{exp}, {teacher}"


def _mean_over(
    run: Run, exp: str, students: Sequence[str], objective: str, metric: str
) -> pd.Series:
    """Per seed, the mean of ``metric`` over ``students`` (seeds all of them ran)."""
    frame = pd.concat(
        {s: per_seed(run.summary, exp, s, objective, metric) for s in students},
        axis=1,
        join="inner",
    )
    return frame.mean(axis=1)


def gain_ratio(run: Run, metric: str) -> list[dict[str, object]]:
    """Mean InfoNCE ER / mean cosine ER over the CNN students is near 2.4."""
    claim, exp = f"InfoNCE / cosine ER ≈ {GAIN_TARGET}", run.tables_experiment
    q = f"mean over S/M/L, InfoNCE / cosine, {VARIANT_LABELS[metric]}"
    students = [s for s in run.cnns(exp, "cosine") if run.has(exp, s, "cosine_infonce")]
    if not students:
        return [not_tested(claim, q, f"experiment {exp!r} has no CNN student with both objectives")]
    p = paired(
        _mean_over(run, exp, students, "cosine", metric),
        _mean_over(run, exp, students, "cosine_infonce", metric),
    )
    est = t_interval(p["b"] / p["a"])
    verdict = verdict_inside(est, GAIN_TARGET / GAIN_FACTOR, GAIN_TARGET * GAIN_FACTOR)
    note = f"students {', '.join(students)}; Tables I-II give 2.23, the abstract 2.4"
    return [_row(claim, q, _paper(metric, GAIN_TARGET), est, verdict, note)]


def dino_above_clip(run: Run, metric: str) -> list[dict[str, object]]:
    """The DINOv2 teacher's cosine students have a higher ER than the CLIP teacher's."""
    claim = "DINOv2 cosine ER > CLIP cosine ER"
    q = f"mean cosine ER over S/M/L, DINOv2 − CLIP, {VARIANT_LABELS[metric]}"
    clip, dino = run.tables_experiment, run.figures_experiment
    if clip == dino:
        return [
            not_tested(
                claim, q, f"one experiment ({clip!r}) plays both the CLIP and the DINOv2 run"
            )
        ]
    students = [s for s in run.cnns(clip, "cosine") if s in run.cnns(dino, "cosine")]
    if not students:
        return [not_tested(claim, q, f"no CNN cosine student in both {clip!r} and {dino!r}")]
    p = paired(
        _mean_over(run, clip, students, "cosine", metric),
        _mean_over(run, dino, students, "cosine", metric),
    )
    est = t_interval(p["b"] - p["a"])
    paper = _paper_er("dino_cos_m") - np.mean([_paper_er(PAPER_T1[s]) for s in CNN_STUDENTS])
    note = f"{dino} − {clip}; the experiments also differ in dataset, as in the paper"
    return [_row(claim, q, _paper(metric, float(paper)), est, verdict_above(est, 0.0), note)]


def small_beats_large_under_noise(run: Run) -> list[dict[str, object]]:
    """The 0.5M InfoNCE student is more accurate than the 8M one at the highest σ."""
    claim, exp, obj = "0.5M beats 8M at the highest σ", run.figures_experiment, run.noise_objective
    rows = run.noise[
        (run.noise["experiment"] == exp)
        & (run.noise["role"] == "student")
        & (run.noise["objective"] == obj)
    ]
    if rows.empty:
        return [
            not_tested(
                claim, "accuracy (pp), Student-S − Student-L", f"no {obj} noise rows in {exp!r}"
            )
        ]
    sigma = float(rows["sigma"].max())
    q = f"accuracy at σ = {sigma:g} (pp), Student-S − Student-L, {obj}"
    at = rows[rows["sigma"] == sigma]
    acc = {
        s: 100 * at[at["student"] == s].set_index("seed")["accuracy"].sort_index()
        for s in ("cnn_s", "cnn_l")
    }
    if any(v.empty for v in acc.values()):
        return [not_tested(claim, q, f"{exp!r} lacks cnn_s or cnn_l with {obj}")]
    est = t_interval((lambda p: p["b"] - p["a"])(paired(acc["cnn_l"], acc["cnn_s"])))
    paper = _paper_er("noise_s") - _paper_er("noise_l")
    note = "paper does not state σ; ours is the highest σ configured"
    return [_row(claim, q, paper, est, verdict_above(est, 0.0), note)]


def small_beats_large_under_corruptions(
    run: Run, corruptions: pd.DataFrame | None
) -> list[dict[str, object]]:
    """The same robustness claim judged on common corruptions: the 0.5M InfoNCE student's
    mean probe accuracy over every corruption and severity run, minus the 8M one's."""
    claim = "0.5M beats 8M on common corruptions"
    exp, obj = run.figures_experiment, run.noise_objective
    q = f"mean corruption accuracy (pp), Student-S − Student-L, {obj}"
    if corruptions is None or corruptions.empty:
        return [not_tested(claim, q, "evaluation.corruptions is empty (stage off)")]
    rows = corruptions[
        (corruptions["experiment"] == exp)
        & (corruptions["role"] == "student")
        & (corruptions["objective"] == obj)
    ]
    acc = {
        s: 100 * rows[rows["student"] == s].groupby("seed")["accuracy"].mean().sort_index()
        for s in ("cnn_s", "cnn_l")
    }
    if any(v.empty for v in acc.values()):
        return [not_tested(claim, q, f"{exp!r} lacks cnn_s or cnn_l with {obj}")]
    est = t_interval((lambda p: p["b"] - p["a"])(paired(acc["cnn_l"], acc["cnn_s"])))
    names = sorted(set(rows["corruption"]))
    note = f"mean over {len(names)} corruption(s) × severities {sorted(set(rows['severity']))}"
    return [_row(claim, q, None, est, verdict_above(est, 0.0), note)]


ER_CLAIMS = (
    far_below_teacher,
    flat_over_capacity,
    ablation_not_above_cnn,
    infonce_raises_er,
    gain_ratio,
    dino_above_clip,
)


def claims_frame(
    summary: pd.DataFrame,
    noise: pd.DataFrame,
    *,
    tables_experiment: str,
    figures_experiment: str,
    table_students: Sequence[str] = CNN_STUDENTS,
    ablation_students: Sequence[str] = ABLATION_STUDENTS,
    noise_objective: str = "cosine_infonce",
    random_init: bool = False,
    corruptions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per claim (and per student / ER variant where the claim is per student):
    :data:`COLUMNS` first, then ``note``. With ``random_init`` every note says so. With
    ``corruptions`` (the run's corruptions.parquet; empty when the stage is off: the row is
    then "not tested") the robustness claim is judged on the corruption mean too."""
    run = Run(
        summary,
        noise,
        tables_experiment,
        figures_experiment,
        tuple(table_students),
        tuple(ablation_students),
        noise_objective,
    )
    rows = [r for claim in ER_CLAIMS for metric in ER_VARIANTS for r in claim(run, metric)]
    if RANKME in summary.columns:  # summaries written before the geometry suite lack it
        rows += [_as_rankme(r) for claim in ER_CLAIMS for r in claim(run, RANKME)]
    rows += small_beats_large_under_noise(run)
    if corruptions is not None:  # the workflow passes an empty frame when the stage is off
        rows += small_beats_large_under_corruptions(run, corruptions)
    frame = pd.DataFrame.from_records(rows, columns=[*COLUMNS, "note"])
    if random_init:
        frame["note"] = [
            "; ".join(x for x in ("random-init teachers: structural only", n) if x)
            for n in frame["note"]
        ]
    frame["n_seeds"] = frame["n_seeds"].astype("int64")
    return frame


def _as_rankme(row: dict[str, object]) -> dict[str, object]:
    """Label an ER claim's row judged on RankMe, in the claim and the note."""
    note = "; ".join(x for x in (RANKME_NOTE, str(row["note"])) if x)
    return row | {"claim": f"{row['claim']}{RANKME_SUFFIX}", "note": note}


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
