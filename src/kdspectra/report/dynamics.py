"""Figure 4's data: the geometry each student tracked during training, over seeds.

Every training run writes the tracked geometry of a fixed train subset into its
``metrics.csv`` (``track_*`` columns, NaN on epochs not tracked; :mod:`kdspectra.training.tracking`)
and the teacher's ER on the same rows into its ``meta.json`` (``tracking``). This module
turns those per-run files into one long table, ``tables/fig4.csv``: one row per student ×
objective × tracked epoch (mean, sample std and count over seeds, the same aggregation as
every other table: :func:`kdspectra.report.tables.seed_stats`) and a ``role == "teacher"`` row
with the teacher's ER, so the CSV alone redraws the figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from kdspectra.errors import ArtifactError
from kdspectra.io import PathLike, load_json
from kdspectra.report.render import student_label
from kdspectra.report.tables import seed_stats
from kdspectra.training.tracking import TRACK_COLUMNS

# Tracked metrics.csv column -> its name in fig4.csv (the geometry module's names).
FIG4_METRICS = {
    "track_effective_rank": "effective_rank",
    "track_effective_rank_l2": "effective_rank_l2",
    "track_rankme": "rankme",
    "track_uniformity": "uniformity",
    "track_cos_to_teacher": "cos_to_teacher",
}
FIG4_KEYS = ("role", "student", "model", "params", "objective", "epoch")


def read_tracked(metrics: PathLike, meta: PathLike) -> tuple[pd.DataFrame, dict]:
    """One run's tracked rows (epoch + :data:`FIG4_METRICS` names) and its meta.json."""
    info = load_json(meta)
    try:
        frame = pd.read_csv(metrics)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{metrics}: not a readable metrics CSV: {exc}") from exc
    missing = [c for c in ("epoch", *FIG4_METRICS) if c not in frame.columns]
    if missing:
        raise ArtifactError(
            f"{metrics}: no tracked geometry (missing {missing}); retrain with "
            f"training.track_every != 0 (columns {list(TRACK_COLUMNS)})"
        )
    rows = frame[frame["track_effective_rank"].notna()]
    return rows[["epoch", *FIG4_METRICS]].rename(columns=FIG4_METRICS), info


def fig4_data(
    metrics: Sequence[PathLike], metas: Sequence[PathLike], *, experiment: str = ""
) -> pd.DataFrame:
    """Figure 4 data from row-paired lists of runs' ``metrics.csv`` and ``meta.json``.

    Students and objectives keep the order the runs are given in. ``experiment`` only
    titles the table. Raises :class:`ArtifactError` when no run tracked anything.
    """
    if len(metrics) != len(metas):
        raise ArtifactError(f"fig4: {len(metrics)} metrics files but {len(metas)} meta files")
    runs, teacher = [], None
    for m, j in zip(metrics, metas, strict=True):
        rows, info = read_tracked(m, j)
        keys = {"student": info["student"], "objective": info["objective"]}
        runs.append(rows.assign(**keys, params=int(info["params"]), seed=info["seed"]))
        if teacher is None and (info.get("tracking") or {}).get("teacher_effective_rank"):
            teacher = info
    data = pd.concat(runs, ignore_index=True) if runs else pd.DataFrame()
    if data.empty:
        raise ArtifactError("fig4: no run tracked any epoch (training.track_every is 0?)")
    records = _teacher_records(teacher)
    groups = data.groupby(["student", "objective", "epoch"], sort=False)
    for (student, objective, epoch), grp in groups:
        rec = {
            "role": "student",
            "student": student,
            "model": student_label(student),
            "params": int(grp["params"].iloc[0]),
            "objective": objective,
            "epoch": int(epoch),
        }
        for col in FIG4_METRICS.values():
            rec[col], rec[f"{col}_std"], rec["n_seeds"] = seed_stats(grp, col)
        records.append(rec)
    frame = pd.DataFrame.from_records(records)
    frame.attrs["title"] = f"Figure 4 data ({experiment})" if experiment else "Figure 4 data"
    return frame


def _teacher_records(meta: dict | None) -> list[dict[str, object]]:
    """The teacher's reference row (ER on the tracked rows), if a run recorded it."""
    if not meta:
        return []
    tracking = meta["tracking"]
    return [
        {
            "role": "teacher",
            "student": "",
            "model": "teacher",
            "params": math.nan,
            "objective": "",
            "epoch": math.nan,
            "effective_rank": tracking["teacher_effective_rank"],
            "effective_rank_l2": tracking.get("teacher_effective_rank_l2", math.nan),
        }
    ]
