"""``make bench``: every benchmark against its naive baseline, plus where a run's time goes.

Runs ``run(quick=..., device=...)`` of every ``benchmarks/bench_*.py`` module (each one
times our path and a naive baseline alternately in the same process, so load from other
processes hits both alike, and reports medians), then the per-stage times of a workflow
run from Snakemake's ``benchmark:`` files (:mod:`kdspectra.runtime.stagetimes`), and writes both,
with the machine they were measured on, to ``results/bench/<host>-<date>.json`` and a
Markdown summary beside it.

Speed claims in this project are ratios measured in one run on one machine; the machine
block (CPU model, cores, load average before and after, device, torch, commit) is what
makes a figure comparable with another one later.

    PYTHONPATH=src python benchmarks/run_all.py --demo           # make bench: ~7 min, 2 cores
    PYTHONPATH=src python benchmarks/run_all.py                  # modules only, ~1.5 min
    PYTHONPATH=src python benchmarks/run_all.py --full --device cuda
    PYTHONPATH=src python benchmarks/run_all.py --only loader --stage-times results/tiny

Stage times: ``--demo`` runs the whole demo DAG (``config/demo.yaml``) from nothing in a
scratch directory and times it, so the whole-pipeline wall time is measured afresh each
time, never read from a stale or half-finished run. Without it they come from
``--stage-times RESULTS_DIR`` (default ``results/demo``, written by ``make demo``); when
that run does not exist the summary says so instead of failing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT / "benchmarks"):  # runnable without PYTHONPATH=src
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from common import machine  # noqa: E402
from kdspectra.errors import ArtifactError  # noqa: E402
from kdspectra.io import save_json, save_text  # noqa: E402
from kdspectra.runtime.stagetimes import stage_times  # noqa: E402
from kdspectra.runtime.stagetimes import to_markdown as stage_markdown  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_RUN = ROOT / "results" / "demo"
DEMO_CONFIG = ROOT / "config" / "demo.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
ROW_KEYS = ("name", "unit", "ours", "baseline", "ratio", "repeats")


def _rel(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (shorter reports)."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def discover(only: list[str] | None = None) -> dict[str, Path]:
    """``bench_<name>.py`` files by ``<name>``, sorted; ``only`` keeps the named ones."""
    found = {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}
    if only:
        unknown = sorted(set(only) - set(found))
        if unknown:
            raise SystemExit(f"--only: unknown benchmark(s) {unknown}; known: {sorted(found)}")
        found = {k: v for k, v in found.items() if k in only}
    return found


def load_module(name: str, path: Path) -> ModuleType:
    """Import a benchmark file by path (``benchmarks/`` is a folder of scripts)."""
    spec = importlib.util.spec_from_file_location(f"kdspectra_bench_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class builds
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def run_benchmark(name: str, path: Path, *, quick: bool, device: str) -> dict[str, Any]:
    """One module's rows, its wall time, and its error (a failing module never hides the
    others' results: it is recorded, and the exit status says so)."""
    start = time.perf_counter()
    entry: dict[str, Any] = {"module": name, "file": _rel(path)}
    try:
        rows = load_module(name, path).run(quick=quick, device=device)
        missing = [sorted(set(ROW_KEYS) - set(r)) for r in rows if not set(ROW_KEYS) <= set(r)]
        if missing:
            raise ValueError(f"rows lack the keys {missing[0]} (expected {list(ROW_KEYS)})")
        entry["rows"] = rows
    except Exception as exc:  # report, keep going
        entry["rows"] = []
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc()
    entry["seconds"] = round(time.perf_counter() - start, 1)
    return entry


def read_stage_times(run_dir: Path, *, explicit: bool) -> dict[str, Any]:
    """The per-stage table of a finished run, or why there is none."""
    try:
        table = stage_times(run_dir)
    except ArtifactError as exc:
        if explicit:
            raise SystemExit(f"--stage-times: {exc}") from exc
        return {"run_dir": str(run_dir), "missing": f"{exc}"}
    return {
        "run_dir": str(run_dir),
        "total_job_s": round(float(table["total_s"].sum()), 1),
        # NaN (a measure Snakemake could not take) becomes null: valid, strict JSON.
        "stages": table.round(3).astype(object).where(table.notna(), None).to_dict("records"),
    }


def _steps_done(log: str) -> int | None:
    """The job count from Snakemake's last ``N of M steps (100%) done`` line."""
    found = re.findall(r"(\d+) of (\d+) steps \(100%\) done", log)
    return int(found[-1][1]) if found else None


def time_demo(cores: int, config: Path = DEMO_CONFIG) -> dict[str, Any]:
    """Run the demo DAG from nothing in a scratch directory: wall time and per-stage table.

    The scratch directory holds its own ``config.yaml`` (the paper's, as in a clone) and
    ``results/``, so nothing of the user's ``results/demo`` is read or overwritten; it is
    deleted afterwards, the JSON keeps the numbers. A failed run is recorded, not raised.
    """
    name = yaml_name(config)
    with tempfile.TemporaryDirectory(prefix="kdspectra-bench-demo-") as tmp:
        work = Path(tmp)
        shutil.copy(ROOT / "config.yaml", work / "config.yaml")
        cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(work)]
        cmd += ["--cores", str(cores), "--configfile", str(config)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = round(time.perf_counter() - start, 1)
        where = f"a fresh run of {_rel(config)} in a scratch directory"
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-3000:]
            return {
                "run_dir": where,
                "missing": f"the demo run failed (exit {proc.returncode})",
                "error": f"snakemake exit {proc.returncode}",
                "log_tail": tail,
            }
        entry = read_stage_times(work / "results" / name, explicit=False)
    entry.update(run_dir=where, wall_s=wall, cores=cores, jobs=_steps_done(proc.stderr))
    return entry


def yaml_name(config: Path) -> str:
    """The run name (``name:``) of a config overlay; results go to ``results/<name>``."""
    data = yaml.safe_load(config.read_text()) or {}
    return str(data.get("name", "paper"))


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    return "" if v is None else str(v)


def to_markdown(report: dict[str, Any]) -> str:
    """The summary a reader compares across machines: machine, every figure, every ratio."""
    m = report["machine"]
    device = m["gpu"] or "CPU"
    lines = [
        f"# Benchmarks — {m['host']}, {m['date']}",
        "",
        "| machine | |",
        "|---|---|",
        f"| host | {m['host']} |",
        f"| CPU | {m['cpu']}, {m['cores']} cores (torch threads: {m['torch_threads']}) |",
        f"| device | {m['device']} ({device}) |",
        f"| torch | {m['torch']} (Python {m['python']}) |",
        f"| commit | {m['git_commit']} |",
        f"| mode | {report['mode']} |",
        f"| load average (1/5/15 min) | before {report['load_before']}, "
        f"after {report['load_after']} |",
        f"| wall time | {report['wall_s']:.0f} s |",
        "",
        "Each ratio is ours ÷ baseline, both measured alternately in the same run (medians "
        "of `repeats` timings). Rows named `..._vs_bare_*` compare our full path with the "
        "bare model step or forward, its ceiling on this machine: 1.0 means no overhead.",
        "",
        "| benchmark | unit | ours | baseline | ratio | target | repeats |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for entry in report["benchmarks"]:
        for r in entry["rows"]:
            target = r.get("target_ratio")
            lines.append(
                f"| {r['name']} | {r['unit']} | {_fmt(r['ours'])} | {_fmt(r['baseline'])} | "
                f"**{_fmt(r['ratio'])}** | {'' if target is None else f'≥ {target}'} | "
                f"{r['repeats']} |"
            )
    lines += ["", "| module | seconds | status |", "|---|---:|---|"]
    for entry in report["benchmarks"]:
        status = entry.get("error", f"{len(entry['rows'])} rows")
        lines.append(f"| {entry['file']} | {entry['seconds']:.0f} | {status} |")
    st = report.get("stage_times")
    if st is not None:
        lines += ["", f"## Per-stage time of the workflow run: {st['run_dir']}", ""]
        if "wall_s" in st:
            lines += [
                f"Whole pipeline: **{st['wall_s']:.0f} s** wall on {st['cores']} cores, "
                f"{st['jobs']} jobs, from nothing (data preparation included).",
                "",
            ]
        if "missing" in st:
            lines.append(f"Not available: {st['missing']}")
        else:
            lines.append(stage_markdown(pd.DataFrame(st["stages"])))
    return "\n".join(lines).rstrip() + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick",
        dest="quick",
        action="store_true",
        default=True,
        help="small inputs, few repeats (default; minutes on a 2-core CPU)",
    )
    mode.add_argument(
        "--full",
        dest="quick",
        action="store_false",
        help="the paper's sizes (224 px teachers, full-width students)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only bench_NAME.py (repeatable; e.g. loader, train, extract, tracking)",
    )
    runs = p.add_mutually_exclusive_group()
    runs.add_argument(
        "--demo",
        action="store_true",
        help="run the demo DAG from nothing in a scratch directory and time it "
        "(whole-pipeline wall time + per-stage table; ~6 min on 2 cores)",
    )
    p.add_argument(
        "--cores",
        type=int,
        default=os.cpu_count() or 1,
        help="--cores for the --demo run (default: all)",
    )
    runs.add_argument(
        "--stage-times",
        type=Path,
        metavar="RESULTS_DIR",
        help=f"a finished run (results/<name>); default {_rel(DEFAULT_RUN)} "
        "if it exists; 'none' skips",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=ROOT / "results" / "bench",
        help="where <host>-<date>.json/.md go",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run, write JSON + Markdown, print the summary; exit 1 if any benchmark failed."""
    args = _parser().parse_args(argv)
    modules = discover(args.only)
    start, load_before = time.perf_counter(), _load()
    report: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "machine": machine(args.device),
        "load_before": load_before,
        "benchmarks": [],
    }
    for name, path in modules.items():
        print(f"[run_all] {path.name} ...", file=sys.stderr, flush=True)
        entry = run_benchmark(name, path, quick=args.quick, device=args.device)
        report["benchmarks"].append(entry)
        status = entry.get("error", f"{len(entry['rows'])} rows")
        print(f"[run_all] {path.name}: {status} in {entry['seconds']:.0f} s", file=sys.stderr)
    explicit = args.stage_times is not None
    if args.demo:
        print(f"[run_all] demo DAG from nothing on {args.cores} cores ...", file=sys.stderr)
        report["stage_times"] = time_demo(args.cores)
    elif not (explicit and str(args.stage_times).lower() == "none"):
        report["stage_times"] = read_stage_times(args.stage_times or DEFAULT_RUN, explicit=explicit)
    report["load_after"] = _load()
    report["wall_s"] = round(time.perf_counter() - start, 1)
    stamp = dt.datetime.now().strftime("%Y-%m-%dT%H%M%S")
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
    out = args.out_dir / f"{host}-{stamp}.json"
    save_json(out, report)
    text = to_markdown(report)
    save_text(out.with_suffix(".md"), text)
    print(text)
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    failed = [e for e in report["benchmarks"] if "error" in e]
    if "error" in report.get("stage_times", {}):
        failed.append(report["stage_times"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
