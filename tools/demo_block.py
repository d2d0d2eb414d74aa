"""Write the demo's numbers from a demo run: the numbers the docs quote are generated.

A README table typed by hand drifted from what ``make demo`` produces (Student-S cosine ER
3.12 in the README, 2.58 in the run). This tool reads a finished run's tables and claims
and writes two things:

* ``docs/demo-results.md``, whole: which machine and commit made the run, its wall time
  and per-stage table, the teachers' sanity numbers, every student's fidelity gain and
  effective rank, and the primary claim verdicts;
* the README's short block between ``<!-- demo:begin -->`` and ``<!-- demo:end -->``: the
  machine, the wall time, the teachers and a count of the verdicts, linking the page.

With ``--replicate`` (a second run of the same config on other seeds, e.g.
``config/demo-seeds345.yaml``) both also say which primary verdicts held on both seed sets.

    python tools/demo_block.py results/demo --wall-s 583     # README.md + docs/demo-results.md
    python tools/demo_block.py results/demo --replicate results/demo_seeds345 --print

The machine is the one this tool runs on, so run it where the demo ran: it refuses when
the run's job logs name another host. ``--wall-s`` is the run's wall time as measured
around ``make demo`` (e.g. ``/usr/bin/time -v``); Snakemake records only job times.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # the checkout's package, installed or not

from kdspectra.paper.verdicts import VERDICTS  # noqa: E402
from kdspectra.report.provenance import cpu_model  # noqa: E402
from kdspectra.runtime import stagetimes  # noqa: E402

BEGIN, END = "<!-- demo:begin -->", "<!-- demo:end -->"
DOC = "docs/demo-results.md"
FLOAT_NOTE = (
    "Float kernels (BLAS, oneDNN) differ across CPU types, so another machine's digits may "
    "differ from these; retraining on the same machine type reproduces them."
)
LOG_HEADER = re.compile(r"^(\S+) kdspectra job started on (\S+) \(pid")


class BlockError(RuntimeError):
    """A run directory or README this tool cannot use; the message says what to do."""


def _read_csv(run: Path, name: str) -> pd.DataFrame:
    path = run / "tables" / name
    if not path.is_file():
        raise BlockError(f"{path}: missing; is {run} a finished demo run (make demo)?")
    return pd.read_csv(path)


def run_hosts(run: Path) -> tuple[set[str], str]:
    """The hosts the run's job logs name and the earliest job start (ISO time)."""
    hosts, starts = set(), []
    for log in (run / "logs").rglob("*.log"):
        with log.open(errors="replace") as fh:
            match = LOG_HEADER.match(fh.readline())
        if match:
            starts.append(match.group(1))
            hosts.add(match.group(2))
    if not hosts:
        raise BlockError(f"{run}/logs: no job log with a kdspectra header; not a finished run")
    return hosts, min(starts)


def machine_line(run: Path) -> str:
    """Which machine made the run: this one, checked against the run's logs."""
    hosts, _ = run_hosts(run)
    here = socket.gethostname()
    if hosts != {here}:
        raise BlockError(
            f"{run}: its job logs name host(s) {sorted(hosts)}, this is {here!r}; run "
            "tools/demo_block.py on the machine that made the run"
        )
    return f"`{here}`: {platform.platform()}, {cpu_model()}, {os.cpu_count()} cores"


def provenance(run: Path) -> dict:
    """The claims table's provenance sidecar (commit, config hash, teacher weights)."""
    path = run / "tables" / "claims.provenance.json"
    if not path.is_file():
        raise BlockError(f"{path}: missing; is {run} a finished demo run (make demo)?")
    return json.loads(path.read_text())


def _fmt(value: float, digits: int = 2) -> str:
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


def teachers_section(run: Path) -> list[str]:
    """teachers.csv as the README shows it: quality, geometry, the degenerate flag."""
    t = _read_csv(run, "teachers.csv")
    knn = next((c for c in t.columns if c.startswith("clean_knn")), None)
    lines = [
        "| teacher | dataset | probe | kNN | ER | RankMe | uniformity | mean pairwise cos "
        "| centred share | degenerate |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in t.to_dict("records"):
        flag = f"**yes**: {r['degenerate_reasons']}" if r["degenerate"] else "no"
        lines.append(
            f"| `{r['teacher']}` | {r['dataset']} | {_fmt(r['clean_accuracy'], 3)} | "
            f"{_fmt(r[knn], 3) if knn else '–'} | {_fmt(r['effective_rank'])} | "
            f"{_fmt(r['rankme'])} | {_fmt(r['uniformity'], 3)} | "
            f"{_fmt(r['mean_pairwise_cosine'], 3)} | {_fmt(r['centred_energy_share'], 3)} | "
            f"{flag} |"
        )
    return lines


def students_section(run: Path) -> list[str]:
    """Every student × objective × teacher: ER, cosine and fidelity gain, mean ± sd."""
    path = run / "summary.parquet"
    if not path.is_file():
        raise BlockError(f"{path}: missing; is {run} a finished demo run (make demo)?")
    s = pd.read_parquet(path)
    s = s[s["role"] == "student"]
    keys = ["experiment", "teacher", "student", "objective"]
    lines = [
        "| experiment | student | objective | seeds | ER (raw) | cos to teacher | fidelity gain |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for (exp, _, student, objective), g in s.groupby(keys, sort=False):
        cells = [
            f"{_fmt(g[c].mean(), d)} ± {_fmt(g[c].std(ddof=1), d)}"
            for c, d in (("effective_rank", 2), ("cos_to_teacher", 3), ("fidelity_gain", 3))
        ]
        lines.append(f"| {exp} | {student} | {objective} | {len(g)} | {' | '.join(cells)} |")
    return lines


def primary_claims(run: Path) -> pd.DataFrame:
    """The primary rows of claims.csv (the paper's own measures)."""
    c = _read_csv(run, "claims.csv")
    return c[c["primary"].astype(str).str.lower() == "true"].reset_index(drop=True)


def _replicated(rows: pd.DataFrame, replicate: Path | None) -> dict | None:
    """(id, quantity) -> the replicate's verdict, or ``None`` without a replicate."""
    if replicate is None:
        return None
    rep = primary_claims(replicate)
    return {(r["id"], r["quantity"]): r["verdict"] for r in rep.to_dict("records")}


def _held(rows: pd.DataFrame, other: dict) -> int:
    return sum(other.get((r["id"], r["quantity"])) == r["verdict"] for r in rows.to_dict("records"))


def claims_section(run: Path, replicate: Path | None) -> list[str]:
    """The primary verdicts; with ``replicate``, the other seed set's beside them."""
    rows = primary_claims(run)
    other = _replicated(rows, replicate)
    head = "| id | quantity | ours [95 % CI] | verdict |"
    rule = "|---|---|---|---|"
    if other is not None:
        head += " verdict, other seeds | held |"
        rule += "---|---|"
    lines = [head, rule]
    for r in rows.to_dict("records"):
        ours = f"{_fmt(r['ours'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        line = f"| `{r['id']}` | {r['quantity']} | {ours} | {r['verdict']} |"
        if other is not None:
            again = other.get((r["id"], r["quantity"]), "absent")
            line += f" {again} | {'yes' if again == r['verdict'] else '**no**'} |"
        lines.append(line)
    if other is not None:
        lines += ["", f"{_held(rows, other)} of {len(rows)} primary verdicts are the same on "
                  "both seed sets."]  # fmt: skip
    return lines


def verdict_count_line(run: Path, replicate: Path | None) -> str:
    """``42 primary verdicts: 0 holds, 7 fails, …``, and how many held on the replicate."""
    rows = primary_claims(run)
    counts = rows["verdict"].value_counts()
    known = [f"{int(counts.get(v, 0))} {v}" for v in VERDICTS]
    other = [f"{int(n)} {v}" for v, n in counts.items() if v not in VERDICTS]
    line = f"{len(rows)} primary claim verdicts: {', '.join(known + other)}."
    rep = _replicated(rows, replicate)
    if rep is not None:
        line += f" {_held(rows, rep)} of {len(rows)} are the same on the other seed set."
    return line


def wall_line(run: Path, wall_s: float | None) -> str:
    """The wall time (when measured) and the job count."""
    jobs = len(stagetimes.read_jobs(run))
    if wall_s is None:
        return f"Wall time not measured here; {jobs} jobs with a `benchmark:` file."
    minutes, seconds = divmod(round(wall_s), 60)
    wall = f"{minutes} min {seconds:02d} s"
    return f"Wall time **{wall}** (`make demo`, `.venv` present), {jobs} timed jobs."


def _header(run: Path, replicate: Path | None) -> str:
    prov = provenance(run)
    _, started = run_hosts(run)
    seeds = f" Replication: `{replicate}`." if replicate is not None else ""
    return (
        f"*Generated by `tools/demo_block.py` from `{run}` (commit `{prov['commit']}`, "
        f"config `{prov['config_hash']}`, started {started}) on {machine_line(run)}.{seeds} "
        f"{FLOAT_NOTE}*"
    )


def results_doc(
    run: Path, *, wall_s: float | None = None, replicate: Path | None = None, note: str = ""
) -> str:
    """``docs/demo-results.md``: every number of the demo run the docs quote."""
    lines = [
        "# The demo's results",
        "",
        "What `make demo` produced on the machine named below: generated from the run's "
        "files, never typed. The README quotes the first lines.",
        "",
        _header(run, replicate),
        "",
        f"{wall_line(run, wall_s)} {note}".rstrip(),
        "",
        stagetimes.to_markdown(stagetimes.stage_times(run)),
        "",
        "## Teachers (`tables/teachers.csv`)",
        "",
        *teachers_section(run),
        "",
        "## Students",
        "",
        "Mean ± sd over seeds; fidelity gain 0 = no better than the teacher's mean "
        "direction, 1 = a perfect fit.",
        "",
        *students_section(run),
        "",
        "## Primary claim verdicts",
        "",
        "`tables/claims.md` has every row and why.",
        "",
        *claims_section(run, replicate),
    ]
    return "\n".join(lines) + "\n"


def readme_block(
    run: Path, *, wall_s: float | None = None, replicate: Path | None = None, note: str = ""
) -> str:
    """The README's short block: machine, wall time, teachers, the verdicts counted."""
    lines = [
        _header(run, replicate),
        "",
        f"{wall_line(run, wall_s)} {note}".rstrip(),
        "",
        *teachers_section(run),
        "",
        f"{verdict_count_line(run, replicate)} Every student, stage and verdict: [{DOC}]({DOC}).",
    ]
    return "\n".join(lines)


def replace_block(readme: str, block: str) -> str:
    """``readme`` with the text between the demo markers replaced by ``block``."""
    if (
        readme.count(BEGIN) != 1
        or readme.count(END) != 1
        or readme.index(BEGIN) > readme.index(END)
    ):
        raise BlockError(f"README: expected one {BEGIN} followed by one {END}")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished demo run, e.g. results/demo")
    parser.add_argument("--replicate", type=Path, help="the same demo on other seeds")
    parser.add_argument("--wall-s", type=float, help="the run's measured wall time, seconds")
    parser.add_argument("--note", default="", help="what else ran meanwhile (machine load)")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--doc", type=Path, default=ROOT / DOC, help=f"default: {DOC}")
    parser.add_argument("--print", action="store_true", help="print both, write nothing")
    args = parser.parse_args(argv)
    kw = {"wall_s": args.wall_s, "replicate": args.replicate, "note": args.note}
    try:
        block, doc = readme_block(args.run, **kw), results_doc(args.run, **kw)
        if args.print:
            print(f"{block}\n\n{doc}")
        else:
            readme = replace_block(args.readme.read_text(), block)
            args.doc.write_text(doc)
            args.readme.write_text(readme)
    except BlockError as err:
        print(f"demo_block: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
