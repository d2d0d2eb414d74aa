"""Figure 1's claim: "the InfoNCE student tracks the heavy-tailed shape of the teacher's
spectrum significantly further before reaching its capacity limit".

Made measurable as a *tracking length*: the number of leading indices i over which the
student's normalised spectrum σ_i/σ_1 stays within a factor
:data:`~kdspectra.paper.verdicts.TRACK_FACTOR` of the teacher's (both centred, as Figure 1
draws them). Per seed, InfoNCE minus cosine, paired (the seed is shared).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from kdspectra.paper.claim_rows import Row, Run, not_tested
from kdspectra.paper.statistics import paired
from kdspectra.paper.verdicts import TRACK_FACTOR, Rule
from kdspectra.report.render import student_label

CLAIM_ID = "spectrum_tracks_teacher"
MEASURE = "tracking length"
COS, NCE = "cosine", "cosine_infonce"


def tracking_length(student: np.ndarray, teacher: np.ndarray, factor: float = TRACK_FACTOR) -> int:
    """Leading indices where σ_i/σ_1 of ``student`` is within ``factor`` of ``teacher``'s."""
    s = np.sort(np.asarray(student, dtype=np.float64))[::-1]
    t = np.sort(np.asarray(teacher, dtype=np.float64))[::-1]
    k = min(s.size, t.size)
    if k == 0 or s[0] <= 0 or t[0] <= 0:
        return 0
    s, t = s[:k] / s[0], t[:k] / t[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = np.abs(np.log(s) - np.log(t)) <= math.log(factor)
    ok &= (s > 0) & (t > 0)
    return int(k if ok.all() else np.argmin(ok))


def _lengths(spectra: Mapping[str, object], objective: str, teacher: np.ndarray) -> pd.Series:
    runs: Sequence[np.ndarray] = spectra.get(objective, [])  # type: ignore[assignment]
    seeds: Sequence[int] = spectra.get("seeds", range(len(runs)))  # type: ignore[assignment]
    return pd.Series(
        [tracking_length(r, teacher) for r in runs], index=list(seeds)[: len(runs)], dtype=float
    )


def spectrum_tracks_teacher(run: Run) -> list[Row]:
    """One row: Figure 1's student, paired tracking length InfoNCE − cosine > 0.

    ``run.spectra``: ``{"teacher": array, "cosine": [array per seed], "cosine_infonce":
    [...], "seeds": [...], "student": name}`` (Figure 1's inputs)."""
    spectra = run.spectra
    if not spectra or "teacher" not in spectra:
        why = "needs Figure 1's spectra (the claims rule's spectra input)"
        return [not_tested(CLAIM_ID, MEASURE, "tracking length, InfoNCE − cosine", why)]
    exp, student = run.tables_experiment, str(spectra.get("student", ""))
    teacher = np.asarray(spectra["teacher"], dtype=np.float64)
    cos, nce = _lengths(spectra, COS, teacher), _lengths(spectra, NCE, teacher)
    q = (
        f"indices within ×{TRACK_FACTOR:g} of the teacher's σ_i/σ_1, InfoNCE − cosine, "
        f"{student_label(student)} ({exp})"
    )
    note = f"cosine {cos.mean():.1f}, InfoNCE {nce.mean():.1f} indices (mean over seeds)"
    return [
        run.row(
            CLAIM_ID,
            MEASURE,
            q,
            paired(cos, nce),
            Rule.above(0.0),
            [(exp, "", ""), (exp, student, COS), (exp, student, NCE)],
            note=note,
        )
    ]


def read_fig1_spectra(
    paths: Sequence[str], seeds: Sequence[int], student: str
) -> dict[str, object]:
    """Figure 1's spectrum files in the workflow's order ([teacher, cosine/seed k…,
    InfoNCE/seed k…]) as :func:`spectrum_tracks_teacher` reads them."""
    from kdspectra.report.figures_spectrum import read_spectrum

    n = len(seeds)
    runs = [read_spectrum(p) for p in paths]
    return {
        "teacher": runs[0],
        COS: runs[1 : 1 + n],
        NCE: runs[1 + n : 1 + 2 * n],
        "seeds": list(seeds),
        "student": student,
    }
