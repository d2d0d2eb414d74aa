"""tools/demo_block.py writes docs/demo-results.md and the README's short demo block from a
run's files, on a synthetic run: the machine and commit, the float-kernel sentence, the
numbers as the files hold them, and which primary verdicts held on a second seed set."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import demo_block


def fake_run(root: Path, verdicts: dict[str, str], host: str | None = None) -> Path:
    """A finished run's files, as the workflow writes them, with the given primary verdicts."""
    run = root / "results" / "demo"
    (run / "tables").mkdir(parents=True)
    (run / "logs" / "train").mkdir(parents=True)
    (run / "benchmarks" / "train_student").mkdir(parents=True)
    (run / "benchmarks" / "measure_model").mkdir(parents=True)
    host = host or socket.gethostname()
    (run / "logs" / "train" / "a.log").write_text(
        f"2026-12-03T21:00:05 kdspectra job started on {host} (pid 1); log a.log\nmore\n"
    )
    (run / "logs" / "b.log").write_text(
        f"2026-12-03T20:59:58 kdspectra job started on {host} (pid 2); log b.log\n"
    )
    bench = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (run / "benchmarks" / "train_student" / "s.tsv").write_text(
        bench + "30.0\t0\t900\t0\t0\t0\t0\t0\t0\t29\n"
    )
    (run / "benchmarks" / "measure_model" / "t.tsv").write_text(
        bench + "5.0\t0\t200\t0\t0\t0\t0\t0\t0\t4\n"
    )
    prov = {"commit": "abc1234567", "config_hash": "cfg0", "teacher_weights": {}}
    (run / "tables" / "claims.provenance.json").write_text(json.dumps(prov))
    pd.DataFrame(
        [
            {"teacher": "clip_tiny", "dataset": "digits", "effective_rank": 6.61,
             "rankme": 8.2, "uniformity": -2.5, "mean_pairwise_cosine": 0.12,
             "centred_energy_share": 0.9, "clean_accuracy": 0.961, "clean_knn20_accuracy": 0.93,
             "degenerate": False, "degenerate_reasons": ""},
            {"teacher": "dino_random", "dataset": "digits", "effective_rank": 10.48,
             "rankme": 1.01, "uniformity": -7e-8, "mean_pairwise_cosine": 0.9999999,
             "centred_energy_share": 2e-8, "clean_accuracy": 0.96, "clean_knn20_accuracy": 0.89,
             "degenerate": True, "degenerate_reasons": "centred energy share 2e-08 < 0.05"},
        ]
    ).to_csv(run / "tables" / "teachers.csv", index=False)  # fmt: skip
    rows = [
        {"experiment": "clip_digits", "teacher": "clip_tiny", "role": "student",
         "student": "cnn_s", "objective": "cosine", "seed": k, "effective_rank": 3.0 + k,
         "cos_to_teacher": 0.9, "fidelity_gain": 0.4 + 0.1 * k}
        for k in range(3)
    ]  # fmt: skip
    rows.append(rows[0] | {"role": "teacher", "student": "", "objective": "", "seed": -1})
    pd.DataFrame(rows).to_parquet(run / "summary.parquet")
    claims = [
        {"id": cid, "primary": True, "quantity": f"{cid} quantity", "ours": 2.35,
         "ci_low": 1.57, "ci_high": 3.13, "verdict": v}
        for cid, v in verdicts.items()
    ]  # fmt: skip
    claims.append(claims[0] | {"primary": False, "quantity": "sensitivity", "verdict": "fails"})
    pd.DataFrame(claims).to_csv(run / "tables" / "claims.csv", index=False)
    return run


def test_results_say_which_machine_and_commit_and_quote_the_files(tmp_path: Path) -> None:
    run = fake_run(tmp_path, {"infonce_gain": "inconclusive", "cosine_flat": "holds"})
    block = demo_block.results_doc(run, wall_s=583, note="Load ~3.")
    assert f"`{socket.gethostname()}`" in block and "cores" in block
    assert "commit `abc1234567`" in block and "started 2026-12-03T20:59:58" in block
    assert "Float kernels" in block and "CPU types" in block
    assert "Wall time **9 min 43 s**" in block and "2 timed jobs. Load ~3." in block
    assert "| train_student | 1 | 30.0 |" in block  # the per-stage table
    assert "| `dino_random` | digits | 0.960 | 0.890 | 10.48 | 1.01 |" in block
    assert "**yes**: centred energy share 2e-08 < 0.05" in block
    assert (
        "| clip_digits | cnn_s | cosine | 3 | 4.00 ± 1.00 | 0.900 ± 0.000 | 0.500 ± 0.100 |"
        in block
    )
    assert "| `infonce_gain` | infonce_gain quantity | 2.35 [1.57, 3.13] | inconclusive |" in block
    assert "sensitivity" not in block  # primary rows only


def test_replication_says_which_verdicts_held(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "a", {"infonce_gain": "inconclusive", "cosine_flat": "holds"})
    other = fake_run(tmp_path / "b", {"infonce_gain": "holds", "cosine_flat": "holds"})
    block = demo_block.results_doc(run, replicate=other)
    assert (
        "| `cosine_flat` | cosine_flat quantity | 2.35 [1.57, 3.13] | holds | holds | yes |"
        in block
    )
    assert "| inconclusive | holds | **no** |" in block
    assert "1 of 2 primary verdicts are the same on both seed sets." in block
    assert "Wall time not measured" in block


def test_the_readme_block_is_short_and_counts_the_verdicts(tmp_path: Path) -> None:
    verdicts = {"infonce_gain": "inconclusive", "cosine_flat": "holds", "cosine_er_level": "fails"}
    run = fake_run(tmp_path / "a", verdicts)
    other = fake_run(tmp_path / "b", verdicts | {"infonce_gain": "underpowered"})
    block = demo_block.readme_block(run, wall_s=583, replicate=other)
    assert "commit `abc1234567`" in block and "Wall time **9 min 43 s**" in block
    assert "| `clip_tiny` | digits | 0.961 |" in block  # the teachers, in full
    assert (
        "3 primary claim verdicts: 1 holds, 1 fails, 1 inconclusive, 0 underpowered, "
        "0 not tested. 2 of 3 are the same on the other seed set." in block
    )
    assert "[docs/demo-results.md](docs/demo-results.md)" in block
    assert "| train_student |" not in block and "cnn_s" not in block  # those are in the doc


def test_main_writes_the_doc_and_rewrites_only_between_the_markers(tmp_path: Path) -> None:
    run = fake_run(tmp_path, {"cosine_flat": "holds"})
    readme, doc = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text(
        f"# Title\n\nbefore\n{demo_block.BEGIN}\nold numbers\n{demo_block.END}\nafter\n"
    )
    args = [str(run), "--readme", str(readme), "--doc", str(doc), "--wall-s", "60"]
    assert demo_block.main(args) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n<!-- demo:begin -->\n*Generated by")
    assert text.endswith("<!-- demo:end -->\nafter\n") and "old numbers" not in text
    assert doc.read_text().startswith("# The demo's results\n") and "| cnn_s |" in doc.read_text()
    assert demo_block.main(args) == 0  # idempotent markers
    assert readme.read_text().count(demo_block.BEGIN) == 1


def test_refuses_another_hosts_run_and_a_readme_without_markers(tmp_path: Path) -> None:
    run = fake_run(tmp_path, {"cosine_flat": "holds"}, host="elsewhere")
    with pytest.raises(demo_block.BlockError, match="elsewhere"):
        demo_block.readme_block(run)
    with pytest.raises(demo_block.BlockError, match="expected one"):
        demo_block.replace_block("no markers", "x")
    doc = tmp_path / "untouched.md"
    assert demo_block.main([str(tmp_path / "nothing"), "--doc", str(doc)]) == 2
    assert not doc.exists()
