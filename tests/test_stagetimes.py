"""Per-stage times from Snakemake benchmark files: aggregation, rendering, CLI, bad input."""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from kdspectra.cli import main
from kdspectra.errors import ArtifactError
from kdspectra.runtime.stagetimes import COLUMNS, read_jobs, stage_times, to_markdown

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"


def write_tsv(path: Path, *rows: tuple[float, str]) -> None:
    """A benchmark file as Snakemake 9 writes it; each row is (seconds, max_rss)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [HEADER] + [
        f"{s:.2f}\t0:00:{int(s):02d}\t{rss}\t1\t1\t1\t0\t0\t50.0\t{s}" for s, rss in rows
    ]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """results/<name> with three stages: train (3 jobs), extract_teacher (1), spectrum (2)."""
    bench = tmp_path / "results" / "demo" / "benchmarks"
    write_tsv(bench / "train/clip_digits/cnn_s/cosine/seed0.tsv", (10.0, "500.5"))
    write_tsv(bench / "train/clip_digits/cnn_m/cosine/seed0.tsv", (20.0, "800.0"))
    write_tsv(bench / "train/clip_digits/cnn_l/cosine/seed0.tsv", (60.0, "1200.0"))
    write_tsv(bench / "extract_teacher/digits/clip_vit_b32.tsv", (50.0, "2000.0"))
    write_tsv(bench / "spectrum/clip_digits/teacher.tsv", (4.0, "-"))  # "-": not collected
    write_tsv(bench / "spectrum/clip_digits/cnn_s/cosine/seed0.tsv", (6.0, "NA"))
    return bench.parent


def test_aggregates_per_stage_sorted_by_total(run_dir: Path) -> None:
    table = stage_times(run_dir)
    assert tuple(table.columns) == COLUMNS
    assert table["rule"].tolist() == ["train", "extract_teacher", "spectrum"]
    train = table.iloc[0]
    assert train["jobs"] == 3
    assert train["total_s"] == pytest.approx(90.0)
    assert train["median_s"] == pytest.approx(20.0)
    assert train["max_s"] == pytest.approx(60.0)
    assert train["max_rss_mb"] == pytest.approx(1200.0)
    assert train["share"] == pytest.approx(90.0 / 150.0)
    assert table["share"].sum() == pytest.approx(1.0)
    assert pd.isna(table.set_index("rule").loc["spectrum", "max_rss_mb"])


def test_accepts_the_benchmarks_folder_itself(run_dir: Path) -> None:
    pd.testing.assert_frame_equal(stage_times(run_dir / "benchmarks"), stage_times(run_dir))


def test_repeated_rows_count_as_one_job_at_their_mean(tmp_path: Path) -> None:
    write_tsv(tmp_path / "benchmarks/noise/a.tsv", (10.0, "100"), (30.0, "300"))
    jobs = read_jobs(tmp_path)
    assert len(jobs) == 1
    assert jobs.loc[0, "s"] == pytest.approx(20.0)
    assert jobs.loc[0, "max_rss_mb"] == pytest.approx(300.0)
    assert jobs.loc[0, "job"] == "noise/a"


def test_reads_jsonl_benchmarks(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks/train/x.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"s": 12.5, "max_rss": 42.0, "cpu_time": "NA"}) + "\n")
    table = stage_times(tmp_path)
    assert table.loc[0, "rule"] == "train" and table.loc[0, "total_s"] == pytest.approx(12.5)


def test_markdown_has_every_stage_and_a_total(run_dir: Path) -> None:
    text = to_markdown(stage_times(run_dir), title="demo")
    assert text.startswith("**demo**")
    for stage in ("train", "extract_teacher", "spectrum"):
        assert f"| {stage} |" in text
    assert "| **all** | 6 | 150.0 |" in text
    assert "| train | 3 | 90.0 | 20.0 | 60.0 | 1200 | 60.0 % |" in text
    assert "n/a" in text  # spectrum's RSS was not collected


def test_missing_run_dir_names_it(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"nowhere.*benchmarks/"):
        stage_times(tmp_path / "nowhere")


def test_empty_benchmarks_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "benchmarks").mkdir()
    with pytest.raises(ArtifactError, match="no benchmark files"):
        stage_times(tmp_path)


def test_malformed_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "benchmarks/train/bad.tsv"
    bad.parent.mkdir(parents=True)
    bad.write_text("seconds\tfoo\n1\t2\n")
    with pytest.raises(ArtifactError, match=r"bad\.tsv.*'s'"):
        stage_times(tmp_path)


def test_cli_prints_table_and_writes_csv(run_dir: Path, tmp_path: Path, capsys) -> None:
    csv = tmp_path / "stages.csv"
    assert main(["stage-times", str(run_dir), "--csv", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "| train | 3 |" in out and f"table: {csv}" in out
    assert pd.read_csv(csv)["rule"].tolist() == ["train", "extract_teacher", "spectrum"]


def test_cli_bad_dir_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["stage-times", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdspectra stage-times: error:") and "Traceback" not in err


@pytest.fixture
def run_all(monkeypatch) -> ModuleType:
    """benchmarks/run_all.py loaded as a module (registered: its benchmarks need that)."""
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("run_all", root / "benchmarks/run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "run_all", module)
    spec.loader.exec_module(module)
    return module


def test_run_all_records_benchmarks_stage_times_and_failures(
    run_all: ModuleType, run_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """benchmarks/run_all.py: every module's rows, a failing module recorded (exit 1),
    the run's stage table in the JSON and the Markdown summary."""
    benches = tmp_path / "benches"
    benches.mkdir()
    (benches / "bench_fast.py").write_text(  # a dataclass needs its module in sys.modules
        "from __future__ import annotations\n"
        "from dataclasses import dataclass\n"
        "@dataclass(frozen=True)\n"
        "class Case:\n"
        "    repeats: int\n"
        "def run(*, quick=True, device='cpu'):\n"
        "    return [{'name': 'fast_vs_slow', 'unit': 'images/s', 'ours': 30.0,"
        " 'baseline': 10.0, 'ratio': 3.0, 'repeats': Case(3).repeats}]\n"
    )
    (benches / "bench_broken.py").write_text(
        "def run(*, quick=True, device='cpu'):\n    raise RuntimeError('boom')\n"
    )
    monkeypatch.setattr(run_all, "BENCH_DIR", benches)
    monkeypatch.setattr(run_all, "DEFAULT_RUN", tmp_path / "no-demo-run")
    out = tmp_path / "bench"
    assert run_all.main(["--stage-times", str(run_dir), "--out-dir", str(out)]) == 1
    (report_path,) = out.glob("*.json")
    report = json.loads(report_path.read_text())
    by_module = {b["module"]: b for b in report["benchmarks"]}
    assert by_module["fast"]["rows"][0]["ratio"] == 3.0
    assert "RuntimeError: boom" in by_module["broken"]["error"]
    stages = report["stage_times"]["stages"]
    assert stages[0]["rule"] == "train" and stages[-1]["max_rss_mb"] is None  # NaN → null
    json.loads(report_path.read_text(), parse_constant=pytest.fail)  # strict JSON, no NaN
    assert report["machine"]["cores"] >= 1 and report["mode"] == "quick"
    md = report_path.with_suffix(".md").read_text()
    assert "| fast_vs_slow | images/s | 30.0 | 10.0 | **3.000** |" in md
    assert "| train | 3 | 90.0 |" in md and "RuntimeError: boom" in md
    # Without a demo run the summary says so; an explicit missing run is an error.
    assert run_all.main(["--only", "fast", "--out-dir", str(out)]) == 0
    latest = max(out.glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    assert "missing" in json.loads(latest.read_text())["stage_times"]
    with pytest.raises(SystemExit, match="--stage-times"):
        run_all.main(
            ["--only", "fast", "--stage-times", str(tmp_path / "no"), "--out-dir", str(out)]
        )


FAKE_SNAKEMAKE = '''#!{python}
"""Stands in for snakemake: checks the command, writes one benchmark file, or fails."""
import sys
from pathlib import Path

args = sys.argv[1:]
work = Path(args[args.index("--directory") + 1])
assert (work / "config.yaml").is_file(), "the scratch directory needs the paper config"
assert args[args.index("--cores") + 1] == "2"
if "{mode}" == "fail":
    print("MissingInputException in rule train", file=sys.stderr)
    sys.exit(3)
bench = work / "results" / "demo" / "benchmarks" / "train" / "a.tsv"
bench.parent.mkdir(parents=True)
bench.write_text("{header}\\n7.50\\t0:00:07\\t321\\t1\\t1\\t1\\t0\\t0\\t50\\t7.5\\n")
print("Finished jobid: 0 (Rule: all)\\n5 of 5 steps (100%) done", file=sys.stderr)
'''


@pytest.mark.parametrize("mode", ["ok", "fail"])
def test_run_all_demo_times_a_fresh_run_in_a_scratch_directory(
    run_all: ModuleType, tmp_path: Path, monkeypatch, mode: str
) -> None:
    """--demo: the DAG runs from nothing elsewhere; wall time, jobs and stages are kept,
    a failed run is recorded with its log tail and makes the exit status 1."""
    fake = tmp_path / "snakemake"
    fake.write_text(FAKE_SNAKEMAKE.format(python=sys.executable, mode=mode, header=HEADER))
    fake.chmod(0o755)
    monkeypatch.setattr(run_all, "SNAKEMAKE", fake)
    monkeypatch.setattr(run_all, "BENCH_DIR", tmp_path / "no-benches")
    (tmp_path / "no-benches").mkdir()
    out = tmp_path / "bench"
    rc = run_all.main(["--demo", "--cores", "2", "--out-dir", str(out)])
    (report_path,) = out.glob("*.json")
    st = json.loads(report_path.read_text())["stage_times"]
    md = report_path.with_suffix(".md").read_text()
    if mode == "ok":
        assert rc == 0 and st["jobs"] == 5 and st["cores"] == 2 and st["wall_s"] >= 0
        assert st["stages"][0]["rule"] == "train" and st["total_job_s"] == 7.5
        assert "Whole pipeline: **" in md and "5 jobs" in md
    else:
        assert rc == 1 and "exit 3" in st["error"] and "MissingInputException" in st["log_tail"]
        assert "the demo run failed (exit 3)" in md
    assert not list(Path(tempfile.gettempdir()).glob("kdspectra-bench-demo-*/results"))
