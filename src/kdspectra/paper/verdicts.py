"""The decision rule behind every claims verdict: what each claim id tests, against which
threshold or margin, and how a test's p-value and interval become a verdict.

A row is judged by a :class:`Rule`: *above* / *below* a threshold (a two-sided t-test
against the threshold, 95 % interval; significant on the claimed side = holds, on the other
side = fails) or *within* an equivalence band (TOST, 90 % interval; p < α = holds, interval
wholly outside the band = fails). Not significant: *underpowered* when the interval is wider
than the effect the test had to detect (the paper's effect for one-sided rules, the band
for TOST) or there is one seed, else *inconclusive*. :func:`verdict` is applied twice per
primary row, to the raw p (``verdict_raw``) and to the Holm-adjusted p (``verdict``).
:data:`CLAIMS` holds each id's claim and rule text for claims.md, built from the constants
here, so the text and the code cannot drift apart. The tests are in
:mod:`kdspectra.paper.statistics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kdspectra.paper.statistics import ALPHA, Sample, interval, p_tost, p_two_sided

VERDICTS = ("holds", "fails", "inconclusive", "underpowered", "not tested")

FAR_BELOW_RATIO = 0.5  # "far below": student / teacher ER significantly below 0.5
LEVEL_MARGIN = 0.25  # "≈ paper level": TOST within ±25 % of the paper's number
FLAT_MARGIN = 0.10  # "flat", "M ≈ L": TOST on the relative gap within ±10 %
NOT_ABOVE_MARGIN = 0.10  # "does not exceed": relative gap significantly below +10 %
GAIN_TARGET = 2.4  # "gain ≈ 2.4": TOST of the ratio within [2.4 / 1.25, 2.4 · 1.25]
GAIN_FACTOR = 1.25
CLEAN_COST_PP = 5.0  # "marginal clean cost": S − L clean accuracy significantly above −5 pp
BRITTLE_RETENTION = 0.25  # "catastrophic": L keeps < 25 % of its above-chance accuracy
TRACK_FACTOR = 2.0  # Fig. 1 "tracks": σ_i/σ_1 within a factor 2 of the teacher's
MIRROR_SLOPE = 0.5  # the dial's "mirror": student ER moves ≥ half as much as the teacher's


@dataclass(frozen=True)
class Rule:
    """How a row is judged: ``kind`` is ``above``/``below`` (``low`` = ``high`` = the
    threshold) or ``within`` [low, high]; ``effect`` is the size the test had to detect
    (None: unknown, never "underpowered" unless one seed)."""

    kind: str
    low: float
    high: float
    effect: float | None = None

    @classmethod
    def above(cls, threshold: float, effect: float | None = None) -> Rule:
        return cls("above", threshold, threshold, effect)

    @classmethod
    def below(cls, threshold: float, effect: float | None = None) -> Rule:
        return cls("below", threshold, threshold, effect)

    @classmethod
    def within(cls, low: float, high: float) -> Rule:
        return cls("within", low, high, high - low)

    @property
    def confidence(self) -> float:
        return 1 - 2 * ALPHA if self.kind == "within" else 1 - ALPHA

    def p_value(self, s: Sample) -> float:
        """The p of the test that makes the claim hold (TOST or two-sided t)."""
        return p_tost(s, self.low, self.high) if self.kind == "within" else p_two_sided(s, self.low)

    def describe(self) -> str:
        if self.kind == "within":
            return f"TOST in [{self.low:.3g}, {self.high:.3g}]"
        return f"{'>' if self.kind == 'above' else '<'} {self.low:.3g}"


@dataclass(frozen=True)
class Judged:
    """A row's numbers: mean, interval (at the rule's confidence), seeds, raw p, test."""

    mean: float
    low: float
    high: float
    n: int
    p: float
    test: str


def judge(s: Sample, rule: Rule) -> Judged:
    """Test ``s`` under ``rule``; the ``test`` text names the test, the rule and the raw p."""
    low, high = interval(s, rule.confidence)
    p = rule.p_value(s)
    ptext = "" if math.isnan(p) else f", p = {p:.2g}"
    test = f"{s.test}, {rule.describe()}, {100 * rule.confidence:.0f} % CI{ptext}"
    return Judged(s.mean, low, high, s.n, p, test)


def judge_fixed(value: float, rule: Rule, what: str) -> Judged:
    """A value with no seed variation (one teacher): compared with the rule directly."""
    return Judged(
        value, math.nan, math.nan, 1, math.nan, f"fixed value ({what}), {rule.describe()}"
    )


def verdict(rule: Rule, j: Judged, p: float) -> str:
    """holds / fails / inconclusive / underpowered for numbers ``j`` at p-value ``p``."""
    if j.test.startswith("fixed value"):
        inside = rule.low <= j.mean <= rule.high
        on_side = {"above": j.mean > rule.low, "below": j.mean < rule.low, "within": inside}
        return "holds" if on_side[rule.kind] else "fails"
    if j.n < 2 or math.isnan(j.low):
        return "underpowered"
    if rule.kind == "within":
        if p < ALPHA:
            return "holds"
        if j.high < rule.low or j.low > rule.high:
            return "fails"
    elif p < ALPHA:
        claimed = j.mean > rule.low if rule.kind == "above" else j.mean < rule.low
        return "holds" if claimed else "fails"
    wide = rule.effect is not None and (j.high - j.low) > abs(rule.effect)
    return "underpowered" if wide else "inconclusive"


_F = f"{100 * FLAT_MARGIN:.0f} %"
_LVL = f"±{100 * LEVEL_MARGIN:.0f} %"
# id → (the paper's claim, the decision rule), in the order of claims.md.
CLAIMS: dict[str, tuple[str, str]] = {
    "teacher_er_level": (
        "CLIP teacher ER ≈ 88.68 (Table I)",
        f"the teacher's ER (one fixed value, no seeds) within {_LVL} of 88.68",
    ),
    "cosine_far_below_teacher": (
        "cosine students' ER far below the teacher's",
        f"per student, one-sample t of ER(student) / ER(teacher) against {FAR_BELOW_RATIO}; "
        "holds when significantly below",
    ),
    "cosine_er_level": (
        "cosine students' ER ≈ 16 (Table I)",
        f"per student, TOST of its ER against Table I's number {_LVL}",
    ),
    "cosine_flat": (
        "cosine ER flat over S/M/L (capacity-agnostic)",
        f"per pair of CNN students, TOST of the paired gap / mean ER within ±{_F}; "
        "the claim needs every pair",
    ),
    "ablation_not_above_cnn": (
        "hybrid and tiny ViT do not exceed the CNN (the objective, not the architecture)",
        "per student, paired t of (ER(student) − ER(CNN)) / ER(CNN) against "
        f"+{100 * NOT_ABOVE_MARGIN:.0f} %; holds when significantly below",
    ),
    "infonce_raises_er": (
        "InfoNCE raises ER, per student (CLIP, Table II vs I)",
        "per student, paired t of ER(InfoNCE) − ER(cosine) against 0",
    ),
    "infonce_gain": (
        f"the gain is ≈ {GAIN_TARGET}× (16 → 38)",
        "per seed, mean InfoNCE ER over S/M/L / mean cosine ER; TOST within "
        f"[{GAIN_TARGET / GAIN_FACTOR:.2f}, {GAIN_TARGET * GAIN_FACTOR:.2f}]",
    ),
    "infonce_uniformity": (
        "InfoNCE makes the embedding more uniform ('maximize uniformity')",
        "per student, paired t of uniformity(InfoNCE) − uniformity(cosine) against 0 "
        "(Wang & Isola; lower = more uniform); holds when significantly below",
    ),
    "spectrum_tracks_teacher": (
        "the InfoNCE spectrum tracks the teacher's further (Figure 1)",
        "Figure 1's student: per seed, the number of leading indices over which "
        f"σ_i/σ_1 stays within a factor {TRACK_FACTOR:g} of the teacher's; paired t of "
        "InfoNCE − cosine against 0",
    ),
    "capacity_saturation": (
        "with InfoNCE, S below M ≈ L (Table II)",
        "paired t of ER(S) − ER(M) against 0 (holds when below) and TOST of "
        f"(ER(L) − ER(M)) / mean within ±{_F}",
    ),
    "dino_above_clip": (
        "DINOv2's cosine students have a higher ER than CLIP's (inherited anisotropy)",
        "Welch t (no shared randomness across experiments) of the per-seed mean cosine ER "
        "over S/M/L, DINOv2 − CLIP, against 0; one row per dataset that both teachers ran "
        "(config/factorial.yaml), else across datasets (confounded by the dataset)",
    ),
    "dino_infonce_raises_er": (
        "InfoNCE raises ER on DINOv2 too (53.78 → 82)",
        "per student on the DINOv2 experiment (the figures one, or another with a DINOv2 "
        "teacher when the figures one is the tables one), paired t of ER(InfoNCE) − "
        "ER(cosine) against 0",
    ),
    "dino_capacity_limit": (
        "DINOv2 InfoNCE: M ≈ L ≈ 82, the capacity limit",
        f"TOST of (ER(L) − ER(M)) / mean within ±{_F}; each of M and L TOST within {_LVL} of 82",
    ),
    "small_student_robust": (
        "the 0.5M student beats the larger ones under severe noise (21.32 % vs 17.03 %)",
        "paired t of probe accuracy, S − M and S − L, against 0: on the area under "
        "accuracy-vs-σ (primary) and at each σ > 0; chance level stated",
    ),
    "small_student_clean_cost": (
        "…while giving up a little clean accuracy",
        "at σ = 0, paired t of S − M and S − L against 0 (holds when below) and against "
        f"−{CLEAN_COST_PP:g} pp (holds when above: the cost is marginal)",
    ),
    "large_student_brittle": (
        "the 8M student fails catastrophically under extreme noise",
        "at the highest σ, L's retention (acc − chance) / (clean acc − chance), one-sample t "
        f"against {BRITTLE_RETENTION}, holds when below; and paired t of retention L − S "
        "against 0, holds when below",
    ),
    "mirror_cosine_tracks_teacher": (
        "beyond the paper: a cosine student's ER follows its teacher's when only the "
        "teacher's geometry changes (the mirror, §IV-A)",
        "per dial of re-coloured teachers, cone offset c and student: per seed, the OLS slope "
        "of the cosine student's ER on the teacher's ER across the cells of that c (over α); "
        "one-sample t of the slopes "
        f"against {MIRROR_SLOPE:g} (1 = an exact mirror, 0 = the teacher is ignored)",
    ),
    "mirror_infonce_above_cosine": (
        "beyond the paper: InfoNCE keeps the student's ER above cosine's at every dial cell",
        "per dial cell, student and InfoNCE arm, paired t of ER(InfoNCE) − ER(cosine) against 0",
    ),
    "expansion_survives_projector": (
        "beyond the paper: InfoNCE's expansion survives a projector head (InfoNCE on a "
        "SimCLR MLP head's output, ER still of the embedding the cosine loss sees)",
        "per student and λ > 0 run with and without the head (training.infonce.projector: "
        "[none, mlp]), paired t of ER(λ, head) − ER(cosine) against 0; the note gives the "
        "gain without the head and the paired difference head − no head with its interval",
    ),
}

DECISION_RULE = f"""\
**Decision rule.** Within one experiment the two arms of a difference share the seed, so
differences are *paired* over seeds (Student t); across experiments nothing is shared and
differences are *unpaired* (Welch). One-sided claims ("above", "below") are two-sided
t-tests against the stated threshold with a {100 * (1 - ALPHA):.0f} % interval:
significant on the claimed side = *holds*, on the other side = *fails*. Equivalence claims
("≈", "flat", "M ≈ L") are TOST (two one-sided tests) with a {100 * (1 - 2 * ALPHA):.0f} %
interval against the stated margin: p < {ALPHA} = *holds*; the interval wholly outside the
margin = *fails*. Otherwise *underpowered* when the interval is wider than the effect the
test had to detect (the paper's effect; the margin band for TOST) or only one seed ran, and
*inconclusive* when it is not. *not tested*: the run lacks the inputs, or a guard stopped
the row (a degenerate teacher; a cosine student whose fidelity gain is below
``evaluation.min_fidelity_gain``); the note says which.

``primary`` rows use the paper's own measure (raw entropy ER; linear-probe accuracy).
Holm–Bonferroni over the primary rows' p-values gives ``p_holm``; ``verdict`` uses it,
``verdict_raw`` the unadjusted p (written in ``test``). Sensitivity rows (ER of
L2-normalised rows, RankMe; per-σ robustness) are not adjusted: their ``verdict`` is the
raw one. The *paper* column is the paper's value of the quantity where it reports one
(raw ER only)."""
