"""Which stage of a run costs what: the jobs' benchmark files, aggregated per rule.

Every heavy rule of the workflow writes one benchmark file per job under
``results/<name>/benchmarks/<stage>/<wildcards...>.tsv`` (the first directory is the rule's
stage name, e.g. ``train`` for ``train_student``): its ``log: times=`` entry, written by the
job itself (:mod:`kdspectra.runtime.jobstats`) in the format of Snakemake's ``benchmark:``
files, which this module reads too. Each row holds the job's wall seconds ``s`` since its
process started (imports, model builds and file I/O included: what a user waits for),
its peak resident memory ``max_rss`` in MB and its CPU seconds. Summing them per stage
answers "where does a run's time go?" without re-running anything; ``kdspectra
stage-times RESULTS_DIR`` prints the table and ``benchmarks/run_all.py`` records it with
every benchmark run.

The job sum is *job-seconds*, not the run's wall time: Snakemake runs jobs side by side,
so on ``--cores 2`` the wall time is lower. A file with several rows (Snakemake's
``repeat("x.tsv", n)``) counts as one job timed by the mean of its rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from kdspectra.errors import ArtifactError

COLUMNS = ("rule", "jobs", "total_s", "median_s", "max_s", "max_rss_mb", "share")
_MISSING = ("-", "NA", "")  # Snakemake writes "-" (None) or "NA" when it collected nothing


def benchmark_dir(run_dir: str | Path) -> Path:
    """``results/<name>/benchmarks`` for a run directory (or that folder itself)."""
    path = Path(run_dir)
    if (path / "benchmarks").is_dir():
        return path / "benchmarks"
    if path.is_dir() and path.name == "benchmarks":
        return path
    raise ArtifactError(
        f"{path}: expected a run directory holding benchmarks/ (e.g. results/demo) or the "
        "benchmarks/ folder itself; run the workflow first (make demo)"
    )


def _read_file(path: Path) -> pd.DataFrame:
    """One benchmark file (TSV, or JSON lines when it ends in .jsonl) as a frame."""
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            frame = pd.DataFrame(rows).replace(list(_MISSING), np.nan)
        else:
            frame = pd.read_csv(path, sep="\t", na_values=list(_MISSING))
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ArtifactError(f"{path}: not a readable Snakemake benchmark file: {exc}") from exc
    if "s" not in frame.columns or frame.empty:
        raise ArtifactError(
            f"{path}: expected Snakemake benchmark rows with an 's' (seconds) column, "
            f"found columns {list(frame.columns)} and {len(frame)} rows"
        )
    return frame


def read_jobs(run_dir: str | Path) -> pd.DataFrame:
    """One row per job: ``rule``, ``job`` (path below the rule), ``s``, ``max_rss_mb``, ``cpu_s``.

    Raises :class:`ArtifactError` naming the folder when it holds no benchmark file, or
    naming the file when one is unreadable: a silently partial table would mislead.
    """
    root = benchmark_dir(run_dir)
    files = sorted(p for p in root.rglob("*") if p.suffix in (".tsv", ".jsonl") and p.is_file())
    if not files:
        raise ArtifactError(f"{root}: holds no benchmark files (*.tsv, *.jsonl)")
    rows = []
    for path in files:
        rel = path.relative_to(root)
        frame = _read_file(path)
        seconds = pd.to_numeric(frame["s"], errors="coerce")
        if seconds.isna().all():
            raise ArtifactError(f"{path}: the 's' column holds no number")
        rss = pd.to_numeric(frame.get("max_rss", pd.Series(dtype=float)), errors="coerce")
        cpu = pd.to_numeric(frame.get("cpu_time", pd.Series(dtype=float)), errors="coerce")
        rows.append(
            {
                "rule": rel.parts[0] if len(rel.parts) > 1 else "(top level)",
                "job": str(rel.with_suffix("")),
                "s": float(seconds.mean()),
                "max_rss_mb": float(rss.max()) if rss.notna().any() else np.nan,
                "cpu_s": float(cpu.mean()) if cpu.notna().any() else np.nan,
            }
        )
    return pd.DataFrame(rows)


def stage_times(run_dir: str | Path) -> pd.DataFrame:
    """Per stage: jobs, total/median/max seconds, peak RSS and share of all job-seconds.

    Sorted by ``total_s``, most expensive first, so the first row is what to profile.
    """
    jobs = read_jobs(run_dir)
    table = (
        jobs.groupby("rule", sort=False)
        .agg(
            jobs=("s", "size"),
            total_s=("s", "sum"),
            median_s=("s", "median"),
            max_s=("s", "max"),
            max_rss_mb=("max_rss_mb", "max"),
        )
        .reset_index()
    )
    total = float(table["total_s"].sum())
    table["share"] = table["total_s"] / total if total > 0 else np.nan
    table = table.sort_values(["total_s", "rule"], ascending=[False, True], ignore_index=True)
    return table[list(COLUMNS)]


def to_markdown(table: pd.DataFrame, *, title: str | None = None) -> str:
    """Render :func:`stage_times` as a Markdown table with a total row."""
    lines = [f"**{title}**", ""] if title else []
    lines += [
        "| stage | jobs | total s | median s | max s | peak RSS MB | share |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def num(v: float, fmt: str) -> str:
        return "n/a" if pd.isna(v) else format(v, fmt)

    for r in table.itertuples(index=False):
        lines.append(
            f"| {r.rule} | {r.jobs} | {num(r.total_s, '.1f')} | {num(r.median_s, '.1f')} | "
            f"{num(r.max_s, '.1f')} | {num(r.max_rss_mb, '.0f')} | {num(r.share * 100, '.1f')} % |"
        )
    lines.append(
        f"| **all** | {int(table['jobs'].sum())} | {table['total_s'].sum():.1f} | | | "
        f"{num(table['max_rss_mb'].max(), '.0f')} | 100 % |"
    )
    lines += [
        "",
        "Job-seconds and peak memory as each job measured itself (`benchmarks/`); jobs that "
        "ran side by side overlap, so the run's wall time is lower than the total.",
    ]
    return "\n".join(lines) + "\n"
