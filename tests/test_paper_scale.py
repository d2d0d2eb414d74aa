"""benchmarks/paper_scale.py: the smoke mode runs every stage; the short mode extrapolates.

The GPU numbers come from a machine this suite never sees, so what is tested here is that
the script runs the paper's whole workload through the library on a CPU (every stage,
every distillation of the config), counts FLOPs, computes MFU when given a peak, and writes
its JSON and Markdown report.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["data", "extract", "extract_noisy", "train", "embed", "spectrum", "probe"]


@pytest.fixture(scope="module")
def paper_scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("paper_scale", ROOT / "benchmarks/paper_scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_scale"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny workloads run faster on one thread (no pool wake-ups); restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_smoke_runs_every_stage_of_the_paper(paper_scale, one_thread, tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    one_seed = tmp_path / "one_seed.yaml"
    one_seed.write_text("seeds: [0]\n")  # the paper's 3 seeds would triple the test
    args = ["--smoke", "--device", "cpu", "--configfile", str(one_seed), "--out", str(out)]
    report = paper_scale.main(args)
    assert json.loads(out.read_text())["stages"] == report["stages"]
    stages = {r["stage"]: r for r in report["stages"]}
    assert list(stages) == STAGES
    # Both experiments of config.yaml: 5 students + 3 students, two objectives, one seed.
    assert stages["train"]["jobs"] == 16 and stages["embed"]["jobs"] == 16
    assert stages["extract"]["jobs"] == 2 and stages["spectrum"]["jobs"] == 18
    assert stages["probe"]["jobs"] == 4  # --smoke probes two models per experiment
    for stage in ("extract", "train", "embed"):
        assert stages[stage]["gflops_per_image"] > 0 and stages[stage]["images_per_s"] > 0
        assert stages[stage]["mfu"] is None  # no peak for a CPU
    train_jobs = [j for j in report["jobs"] if j["stage"] == "train"]
    assert all(j["extra"]["loop_images_per_s"] > 0 for j in train_jobs)
    assert report["machine"]["device"] == "cpu"
    goals = {t["target"]: t for t in report["targets"]}
    assert goals["cnn_m cosine_infonce training"]["measured"] > 0
    # --smoke probes only some models, so the whole-paper time is scaled up from them.
    assert goals["whole paper (estimate)"]["measured"] == report["full_paper_estimate_s"]["total"]
    md = out.with_suffix(".md").read_text()
    assert "| train | 16 |" in md and "clip_cifar10/tiny_vit/cosine_infonce/seed0" in md


def test_short_mode_reports_mfu_and_full_paper_estimate(
    paper_scale, one_thread, tmp_path: Path
) -> None:
    overlay = tmp_path / "fewer.yaml"
    overlay.write_text(
        "seeds: [0]\n"
        "experiments:\n"
        "  clip_cifar10: {students: [cnn_s]}\n"
        "  dinov2_cifar100: {enabled: false}\n"
        "report: {figures: clip_cifar10, table_students: [cnn_s], ablation_students: [cnn_s]}\n"
    )
    out = tmp_path / "short.json"
    args = ["--smoke", "--configfile", str(overlay), "--max-steps", "3", "--max-probes", "1"]
    report = paper_scale.main([*args, "--peak-tflops", "1.0", "--out", str(out)])
    stages = {r["stage"]: r for r in report["stages"]}
    assert stages["train"]["jobs"] == 2 and stages["probe"]["jobs"] == 1
    assert stages["train"]["mfu"] > 0 and stages["extract"]["mfu"] > 0
    train = [j for j in report["jobs"] if j["stage"] == "train"]
    assert all(j["extra"]["steps"] == 3 and j["extra"]["full_run_estimate_s"] > 0 for j in train)
    est = report["full_paper_estimate_s"]
    assert est["total"] == pytest.approx(sum(v for k, v in est.items() if k != "total"), abs=0.5)
    # Three probes planned (teacher + 2 students), one run: the estimate scales it up.
    probe = next(j for j in report["jobs"] if j["stage"] == "probe")
    assert est["probe"] == pytest.approx(3 * probe["seconds"], rel=0.05, abs=0.2)
    assert report["targets"][-1]["target"] == "whole paper (estimate)"
    assert report["targets"][-1]["measured"] == est["total"]
    assert "Estimated whole-paper time" in out.with_suffix(".md").read_text()


def test_peak_table_and_override(paper_scale, monkeypatch) -> None:
    cuda = torch.device("cuda")
    assert paper_scale.peak_tflops(torch.device("cpu"), None)[0] is None
    assert paper_scale.peak_tflops(torch.device("cpu"), 123.0) == (123.0, "--peak-tflops")
    for name, peak in [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA GeForce GTX 1080", None),
    ]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_, n=name: n)
        assert paper_scale.peak_tflops(cuda, None)[0] == peak, name


def test_flop_counter_counts_a_matmul(paper_scale) -> None:
    layer = torch.nn.Linear(16, 8, bias=False)
    x = torch.zeros(4, 16)
    assert paper_scale.count_flops(lambda: layer(x)) == 2 * 4 * 16 * 8


def test_synthetic_data_is_seeded_and_cifar_shaped(paper_scale) -> None:
    class Plan:
        train_size, test_size = 20, 10

    a = paper_scale.make_dataset("cifar100", Plan, torch.device("cpu"), seed=3)
    b = paper_scale.make_dataset("cifar100", Plan, torch.device("cpu"), seed=3)
    images, labels = a["train"]
    assert images.shape == (20, 32, 32, 3) and images.dtype.name == "uint8"
    assert labels.dtype.name == "int64" and labels.min() >= 0 and labels.max() < 100
    assert a["test"][0].shape == (10, 32, 32, 3)
    assert (images == b["train"][0]).all() and (labels == b["train"][1]).all()


def test_overlays_merge_like_snakemake_configfile(paper_scale, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("seeds: [7]\ntraining: {epochs: 3}\n")
    base = paper_scale.load_paper_config([ROOT / "config.yaml"])
    cfg = paper_scale.load_paper_config([ROOT / "config.yaml", overlay])
    assert cfg["seeds"] == [7]  # a list replaces
    assert cfg["training"]["epochs"] == 3  # a nested key replaces, its siblings stay
    assert cfg["training"]["batch_size"] == base["training"]["batch_size"]
    assert cfg["experiments"] == base["experiments"]


def test_one_peak_table_knows_every_h100_variant(paper_scale, monkeypatch) -> None:
    cuda = torch.device("cuda")
    for name, peak in [("NVIDIA H100 NVL", 835.0), ("NVIDIA L40S", 362.0)]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_, n=name: n)
        assert paper_scale.peak_tflops(cuda)[0] == peak, name
