"""``tables/corruptions.{csv,md}``: every model's accuracy under common corruptions.

One row per model (experiment, teacher or student × objective, mean over seeds): the mean
probe accuracy over Hendrycks & Dietterich's 15 benchmark corruptions and over all 19,
per family (noise, blur, weather, digital), and relative robustness acc_c / acc_clean
(clean = the noise stage's σ = 0 probe accuracy, same probe). Averages are over the
configured severities. A mean whose corruptions were not all run is left empty rather
than averaged over a subset: "mean over 15" must mean the benchmark's 15.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdspectra.data.corruptions import BENCHMARK_15, CORRUPTIONS, FAMILIES
from kdspectra.errors import ArtifactError
from kdspectra.report.render import objective_label, student_label

MODEL_KEYS = ["experiment", "role", "student", "objective"]
NOTE = (
    "Linear-probe accuracy (fraction) on common corruptions (Hendrycks & Dietterich 2019), "
    "the probe fitted on clean train embeddings as in the noise stage; mean over the "
    "configured severities and over seeds (Seeds column). mean15: the 15 benchmark "
    "corruptions; mean19: all 19; noise/blur/weather/digital: the corruptions of that "
    "family that were run; relative15/19 = mean / clean accuracy. Empty: not every "
    "corruption of that mean was run. knn_mean19: the kNN accuracy (k in the CSV's knn_k) "
    "over all 19."
)


def _mean_of(per: pd.DataFrame, names: tuple[str, ...], complete: bool) -> pd.Series:
    """Row-wise mean over the corruption columns ``names`` (NaN if ``complete`` and one
    is missing, or if none was run)."""
    have = [n for n in names if n in per.columns]
    if not have or (complete and len(have) < len(names)):
        return pd.Series(np.nan, index=per.index)
    return per[have].mean(axis=1)


def _label(key: tuple[str, str, str, str], teachers: dict[str, str]) -> str:
    experiment, role, student, objective = key
    if role == "teacher":
        return f"Teacher ({teachers.get(experiment, '?')})"
    return f"{student_label(student)}, {objective_label(objective)}"


def corruption_table(corruptions: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The table described in the module docstring from the run's ``corruptions.parquet``
    and ``summary.parquet`` (its ``clean_accuracy`` per model and seed)."""
    need = {*MODEL_KEYS, "seed", "corruption", "severity", "accuracy", "knn_accuracy"}
    if missing := sorted(need - set(corruptions.columns)):
        raise ArtifactError(f"corruptions.parquet: missing columns {missing}")
    keys = [*MODEL_KEYS, "seed"]
    clean = summary.set_index(keys)["clean_accuracy"]
    teachers = dict(zip(summary["experiment"], summary["teacher"], strict=False))
    rows = []
    for key, grp in corruptions.groupby(MODEL_KEYS, sort=False):
        per_seed = grp.groupby(["seed", "corruption"])[["accuracy", "knn_accuracy"]].mean()
        acc = per_seed["accuracy"].unstack("corruption")
        knn = per_seed["knn_accuracy"].unstack("corruption")
        means = pd.DataFrame(
            {
                "mean15_accuracy": _mean_of(acc, BENCHMARK_15, True),
                "mean19_accuracy": _mean_of(acc, CORRUPTIONS, True),
                **{f"{f}_accuracy": _mean_of(acc, n, False) for f, n in FAMILIES.items()},
                "knn_mean19_accuracy": _mean_of(knn, CORRUPTIONS, True),
            }
        )
        seeds = [(*key, s) for s in means.index]
        base = clean.reindex(seeds).to_numpy(dtype=float)
        means["clean_accuracy"] = base
        means["relative15"] = means["mean15_accuracy"] / base
        means["relative19"] = means["mean19_accuracy"] / base
        rows.append(
            {
                "experiment": key[0],
                "model": _label(key, teachers),
                **means.mean(axis=0).to_dict(),
                "knn_k": int(grp["knn_k"].iloc[0]) if "knn_k" in grp else np.nan,
                "n_seeds": len(means),
            }
        )
    order = ["experiment", "model", "clean_accuracy", "mean15_accuracy", "mean19_accuracy"]
    order += [f"{f}_accuracy" for f in FAMILIES]
    order += ["relative15", "relative19", "knn_mean19_accuracy", "knn_k", "n_seeds"]
    frame = pd.DataFrame(rows, columns=order)
    frame.attrs["title"] = "Accuracy under common corruptions"
    return frame
