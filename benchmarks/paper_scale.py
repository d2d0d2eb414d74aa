"""The paper's full compute on synthetic data: images/s and MFU of every stage, no download.

The real run needs the CIFAR archives and pretrained weights, which the GPU machines used
for benchmarks cannot fetch. The *cost* of the paper does not depend on either: it is set
by the image counts and shapes, the teacher architectures at 224 px, the students at full
width and the epochs. So this script rebuilds exactly that workload from the resolved
``config.yaml`` (every experiment, student, objective, seed and noise level) and runs it in
one process, stage by stage, through the same library calls the workflow's rules make:

* ``data`` — per dataset, 50,000 train + 10,000 test CIFAR-shaped uint8 images generated on
  the device (class templates + noise, so the probe has something to find), copied once
  to the host in the prepared-data layout (uint8 N×32×32×3), as ``prepare_dataset`` would.
* ``extract`` — per (dataset, teacher): :func:`kdspectra.models.teachers.build_teacher` at random
  init and 224 px, ``embed`` of train and test, then the noisy test copies
  (:func:`kdspectra.data.noise.embed_noisy`, the rules' own loop) — rules
  ``extract_teacher(_noisy)``.
* ``train`` — per (experiment, student, objective, seed):
  :func:`kdspectra.training.loop.train_student` for the config's epochs (rule ``train_student``);
  with ``--max-steps`` the same :func:`kdspectra.training.loop.train_step` for that many steps
  instead, and the full-length time is extrapolated from the measured rate.
* ``embed`` — :func:`kdspectra.models.inference.embed_images` on train, test and every noisy copy.
* ``spectrum`` — singular values and effective rank of every model's test embeddings.
* ``probe`` — :func:`kdspectra.metrics.probe.fit_probe` on clean train embeddings and
  :func:`kdspectra.metrics.probe.noise_accuracy` on the noisy test embeddings (rule ``noise``).

For each stage it reports wall seconds, images/s and, on a GPU, the model FLOP utilisation
(MFU): images/s × FLOPs per image ÷ the card's dense bf16 peak (``--peak-tflops``, else
``common.PEAK_BF16_TFLOPS``, the table every benchmark shares). FLOPs per image are counted
by ``torch.utils.flop_counter`` on one small batch: the teacher forward, one training step
(forward + backward of all views), the student forward. Spectrum and probe run on the host
CPU (NumPy/scikit-learn), as in the workflow, and get wall time only.

    # CPU smoke test (seconds): tiny sizes, same code path
    PYTHONPATH=src python benchmarks/paper_scale.py --smoke
    # short GPU version (minutes): 100 steps per training run, 2 probes per experiment
    PYTHONPATH=src python benchmarks/paper_scale.py --device cuda --max-steps 100 --max-probes 2
    # the whole paper's compute
    PYTHONPATH=src python benchmarks/paper_scale.py --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime as dt
import functools
import logging
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from snakemake.utils import update_config

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "src", ROOT / "benchmarks"):  # runnable without PYTHONPATH=src
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from common import count_flops, machine, peak_tflops, sync, train_batches  # noqa: E402
from kdspectra.config import (  # noqa: E402
    enabled_experiments,
    experiment_students,
    load_schema,
    probe_options,
    validate_config,
)
from kdspectra.data.noise import embed_noisy  # noqa: E402
from kdspectra.io import save_json, save_text  # noqa: E402
from kdspectra.metrics.probe import fit_probe, noise_accuracy  # noqa: E402
from kdspectra.metrics.spectrum import effective_rank_from_singular_values, singular_values  # noqa: E402
from kdspectra.models.inference import embed_images, load_student  # noqa: E402
from kdspectra.models.teachers import Teacher, build_teacher  # noqa: E402
from kdspectra.runtime.device import limit_threads, resolve_device  # noqa: E402
from kdspectra.training.config import TrainConfig  # noqa: E402
from kdspectra.training.loop import build_run, train_step, train_student  # noqa: E402

log = logging.getLogger("paper_scale")

CLASSES = {"cifar10": 10, "cifar100": 100}  # synthetic class count per dataset name
# --smoke: the same code path in seconds on a CPU. The teachers become the small members of
# the same two libraries (as in tests/data/tiny_config.yaml), at 32 px.
SMOKE: dict[str, Any] = {
    "train_size": 128,
    "test_size": 32,
    "teachers": {
        "open_clip": {"model": "ViT-S-32", "image_size": 32},
        "timm": {"model": "vit_tiny_patch16_224", "image_size": 32},
    },
    "training": {"epochs": 1, "batch_size": 32, "width_mult": 0.125, "embed_batch_size": 256},
    "noise_sigmas": [0.0, 0.2],
    "probe_max_iter": 50,
    "max_probes": 2,
}
WARMUP_STEPS = 3  # untimed steps before a --max-steps timing (autotuning, allocator)
# The targets for one H100: (label, stage, job substring, images/s at least).
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("CLIP ViT-B/32 extraction", "extract", "clip_vit_b32", 30_000),
    ("DINOv2 ViT-B/14 extraction", "extract", "dinov2_vitb14", 6_000),
    ("cnn_m cosine_infonce training", "train", "/cnn_m/cosine_infonce/", 50_000),
)
WHOLE_PAPER_TARGET_S = 600.0


# --------------------------------------------------------------------------- config


def load_paper_config(configfiles: Sequence[Path]) -> dict[str, Any]:
    """``config.yaml`` plus overlays, merged by Snakemake's own ``update_config`` (what
    ``--configfile`` does), then validated and filled with defaults as the Snakefile does."""
    cfg: dict[str, Any] = {}
    for path in configfiles:
        update_config(cfg, yaml.safe_load(Path(path).read_text()) or {})
    return validate_config(cfg, load_schema(ROOT / "src/kdspectra/config.schema.yaml"))


@dataclasses.dataclass
class Plan:
    """What to run: the resolved config plus this script's size and length overrides."""

    cfg: dict[str, Any]
    train_size: int
    test_size: int
    teacher_overrides: dict[str, dict[str, Any]]  # by library: keys to replace in the spec
    teacher_batch_size: int | None
    max_steps: int | None
    max_probes: int | None
    sigmas: list[float]
    probe: dict[str, Any]

    @property
    def experiments(self) -> list[str]:
        return enabled_experiments(self.cfg)

    def teacher_spec(self, name: str) -> dict[str, Any]:
        """The config's teacher at random init (the paper's: 224 px; --smoke: a small one)."""
        spec = dict(self.cfg["teachers"][name])
        spec.update(self.teacher_overrides.get(spec["library"], {}))
        batch = self.teacher_batch_size or int(spec.get("batch_size", 256))
        return {**spec, "name": name, "pretrained": None, "batch_size": batch}

    def models(self, experiment: str) -> list[tuple[str, str, int]]:
        """(student, objective, seed) of every distillation in ``experiment``."""
        exp = self.cfg["experiments"][experiment]
        return [
            (s, o, k)
            for s in experiment_students(self.cfg, experiment)
            for o in exp["objectives"]
            for k in self.cfg["seeds"]
        ]


def make_plan(args: argparse.Namespace) -> Plan:
    """Resolve the config and apply ``--smoke``/``--epochs``/size overrides."""
    cfg = load_paper_config([args.config, *args.configfile])
    training = cfg["training"]
    overrides: dict[str, dict[str, Any]] = {}
    max_probes = args.max_probes
    sigmas = [float(s) for s in cfg["evaluation"]["noise_sigmas"]]
    probe = probe_options(cfg["evaluation"])
    train_size, test_size = args.train_size, args.test_size
    if args.smoke:
        training.update(SMOKE["training"])
        training["per_student"] = {}  # one tiny schedule for every student
        overrides = copy.deepcopy(SMOKE["teachers"])
        max_probes = SMOKE["max_probes"] if max_probes is None else max_probes
        sigmas = list(SMOKE["noise_sigmas"])
        probe["max_iter"] = SMOKE["probe_max_iter"]
        train_size, test_size = SMOKE["train_size"], SMOKE["test_size"]
    if args.epochs is not None:
        training["epochs"] = args.epochs
        for override in training.get("per_student", {}).values():
            override.pop("epochs", None)
    if args.compile:
        training["compile"] = True
    return Plan(
        cfg=cfg,
        train_size=train_size,
        test_size=test_size,
        teacher_overrides=overrides,
        teacher_batch_size=args.teacher_batch_size,
        max_steps=args.max_steps,
        max_probes=max_probes,
        sigmas=sigmas,
        probe=probe,
    )


# --------------------------------------------------------------------------- timing


class Stopwatch:
    """Wall time that waits for the device, so GPU work is counted where it happens."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    @contextlib.contextmanager
    def __call__(self) -> Iterator[dict[str, float]]:
        sync(self.device)
        out = {"s": 0.0}
        start = time.perf_counter()
        yield out
        sync(self.device)
        out["s"] = time.perf_counter() - start


# --------------------------------------------------------------------------- data


def synthetic_split(
    n: int, classes: int, templates: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 N×32×32×3 images on the templates' device: a class template plus noise.

    Low-frequency class templates make the split learnable (the probe and the spectra see
    structure, as on CIFAR) at the cost of a few tensor ops, all on the device.
    """
    device = templates.device
    labels = torch.randint(classes, (n,), generator=gen, device=device)
    noise = torch.rand((n, 3, 32, 32), generator=gen, device=device)
    x = 0.6 * templates[labels] + 0.4 * noise
    images = (x * 255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return images, labels


def make_dataset(
    name: str, plan: Plan, device: torch.device, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Train and test splits generated on ``device``, handed over as the prepared arrays."""
    classes = CLASSES.get(name, 10)
    gen = torch.Generator(device=device).manual_seed(seed)
    coarse = torch.rand((classes, 3, 4, 4), generator=gen, device=device)
    templates = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")
    splits = {}
    for split, n in (("train", plan.train_size), ("test", plan.test_size)):
        images, labels = synthetic_split(n, classes, templates, gen)
        splits[split] = (images.cpu().numpy(), labels.cpu().numpy().astype(np.int64))
    return splits


# --------------------------------------------------------------------------- stages


@dataclasses.dataclass
class Result:
    """One timed job (a teacher extraction, a training run, ...) of one stage."""

    stage: str
    job: str
    seconds: float
    images: int
    gflops_per_image: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def teacher_gflops(teacher: Teacher) -> float:
    """Forward GFLOPs per image of the teacher at its input size (a batch of 2)."""
    x = torch.zeros(2, 3, teacher.image_size, teacher.image_size, device=teacher.device)
    with torch.inference_mode():
        return count_flops(lambda: teacher.encode_preprocessed(x)) / 2 / 1e9


def run_extract(
    dataset: str,
    teacher_name: str,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    plan: Plan,
    device: torch.device,
    watch: Stopwatch,
) -> tuple[list[Result], dict[str, np.ndarray]]:
    """Rules extract_teacher + extract_teacher_noisy: clean train/test, then every σ."""
    spec = plan.teacher_spec(teacher_name)
    with watch() as built:
        teacher = build_teacher(spec, device=device)
    gflops = teacher_gflops(teacher)
    batch = int(spec["batch_size"])
    teacher.embed(data["test"][0][:batch], batch_size=batch, progress=False)  # warm-up
    emb: dict[str, np.ndarray] = {}
    with watch() as clean:
        for split in ("train", "test"):
            emb[split] = teacher.embed(data[split][0], batch_size=batch, progress=False)
    with watch() as noisy:
        emb["test_noisy"] = embed_noisy(
            functools.partial(teacher.embed, batch_size=batch, progress=False),
            data["test"][0],
            plan.sigmas,
            plan.cfg["evaluation"]["noise_seed"],
        )
    n_clean = len(data["train"][0]) + len(data["test"][0])
    job = f"{dataset}/{teacher_name} ({spec['model']} @ {teacher.image_size} px)"
    info = {"build_s": round(built["s"], 2), "batch_size": batch, "dim": teacher.dim}
    results = [
        Result("extract", job, clean["s"], n_clean, gflops, info),
        Result("extract_noisy", job, noisy["s"], len(plan.sigmas) * len(data["test"][0]), gflops),
    ]
    del teacher
    _free(device)
    return results, emb


def _train_flops(student: str, embed_dim: int, tcfg: Any, device: torch.device) -> float:
    """GFLOPs per training image: forward + backward of one step (all views), batch of 8."""
    rng = np.random.default_rng(0)
    batch = 8
    cfg = dataclasses.replace(tcfg, batch_size=batch, compile=False)
    images = rng.integers(0, 256, (batch, 32, 32, 3), dtype=np.uint8)
    teacher = rng.standard_normal((batch, embed_dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        run = build_run(student, images, teacher, cfg, device, Path(tmp) / "unused.pt")
    run.model.train()
    idx, x = next(iter(run.loader.batches(0)))
    gen = run.loader.generator(0)
    return count_flops(lambda: train_step(run, idx, x, gen)) / batch / 1e9


def _capped_training(
    student: str,
    images: np.ndarray,
    teacher_emb: np.ndarray,
    tcfg: Any,
    device: torch.device,
    max_steps: int,
    watch: Stopwatch,
    workdir: Path,
) -> tuple[torch.nn.Module, float, int]:
    """``max_steps`` of the training loop's own step; (model, timed seconds, timed images)."""
    run = build_run(student, images, teacher_emb, tcfg, device, workdir / "unused.pt")
    run.model.train()

    stream = train_batches(run)
    warmup = min(WARMUP_STEPS, max_steps - 1)
    for _ in range(warmup):
        train_step(run, *next(stream))
    with watch() as timed:
        for _ in range(max_steps - warmup):
            train_step(run, *next(stream))
    run.model.eval()
    return run.model, timed["s"], (max_steps - warmup) * tcfg.batch_size


def run_train(
    experiment: str,
    model: tuple[str, str, int],
    images: np.ndarray,
    teacher_emb: np.ndarray,
    plan: Plan,
    device: torch.device,
    watch: Stopwatch,
    workdir: Path,
) -> tuple[Result, torch.nn.Module]:
    """Rule train_student (or its first ``--max-steps`` steps) for one distillation."""
    student, objective, seed = model
    tcfg = TrainConfig.from_config(plan.cfg["training"], objective, seed, student)
    gflops = _train_flops(student, teacher_emb.shape[1], tcfg, device)
    out = workdir / experiment / student / objective / f"seed{seed}"
    steps_per_epoch = len(images) // tcfg.batch_size
    full_images = tcfg.epochs * steps_per_epoch * tcfg.batch_size
    job = f"{experiment}/{student}/{objective}/seed{seed}"
    if plan.max_steps is None:
        with watch() as timed:
            meta = train_student(
                student,
                images,
                teacher_emb,
                tcfg,
                device=device,
                weights_out=out / "model.safetensors",
                metrics_out=out / "metrics.csv",
                meta_out=out / "meta.json",
                checkpoint=out / "checkpoint.pt",
                progress_bar=False,
            )
        trained = load_student(
            out / "model.safetensors",
            student,
            teacher_emb.shape[1],
            width_mult=tcfg.width_mult,
            device=device,
        )
        extra = {"loop_images_per_s": round(meta["images_per_s"], 1), "epochs": tcfg.epochs}
        return Result("train", job, timed["s"], full_images, gflops, extra), trained
    out.mkdir(parents=True, exist_ok=True)
    trained, seconds, n = _capped_training(
        student, images, teacher_emb, tcfg, device, plan.max_steps, watch, out
    )
    rate = n / seconds if seconds > 0 else float("nan")
    extra = {
        "steps": plan.max_steps,
        "epochs_configured": tcfg.epochs,
        "full_run_estimate_s": round(full_images / rate, 1),
    }
    return Result("train", job, seconds, n, gflops, extra), trained


def student_gflops(model: torch.nn.Module, device: torch.device) -> float:
    """Forward GFLOPs per image of a student (eval mode, a batch of 2)."""
    x = torch.zeros(2, 3, 32, 32, device=device)
    with torch.inference_mode():
        return count_flops(lambda: model(x)) / 2 / 1e9


def run_embed(
    job: str,
    model: torch.nn.Module,
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    plan: Plan,
    device: torch.device,
    watch: Stopwatch,
) -> tuple[Result, dict[str, np.ndarray]]:
    """The embedding step of rule train_student: train, test and every noisy test copy."""
    bs = int(plan.cfg["training"]["embed_batch_size"])
    gflops = student_gflops(model, device)
    noise_seed = plan.cfg["evaluation"]["noise_seed"]
    emb: dict[str, np.ndarray] = {}
    with watch() as timed:
        for split in ("train", "test"):
            emb[split] = embed_images(model, data[split][0], device=device, batch_size=bs)
        emb["test_noisy"] = embed_noisy(
            lambda x: embed_images(model, x, device=device, batch_size=bs),
            data["test"][0],
            plan.sigmas,
            noise_seed,
        )
    n = len(data["train"][0]) + (1 + len(plan.sigmas)) * len(data["test"][0])
    return Result("embed", job, timed["s"], n, gflops), emb


def run_spectrum(job: str, test_emb: np.ndarray) -> Result:
    """Rule spectrum: singular values (float64) and both effective ranks of test embeddings."""
    start = time.perf_counter()
    sv = singular_values(test_emb)
    er = effective_rank_from_singular_values(sv, "entropy")
    effective_rank_from_singular_values(sv, "roy_vetterli")
    seconds = time.perf_counter() - start
    return Result("spectrum", job, seconds, len(test_emb), extra={"effective_rank": round(er, 2)})


def run_probe(
    job: str,
    emb: dict[str, np.ndarray],
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    plan: Plan,
) -> Result:
    """Rule noise: probe fitted on clean train embeddings, scored at every σ."""
    start = time.perf_counter()
    probe = fit_probe(emb["train"], data["train"][1], **plan.probe)
    curve = noise_accuracy(probe, emb["test_noisy"], data["test"][1], plan.sigmas)
    seconds = time.perf_counter() - start
    clean = float(curve["accuracy"].iloc[0])
    n = len(emb["train"]) + len(plan.sigmas) * len(emb["test"])
    return Result("probe", job, seconds, n, extra={"C": probe.C, "accuracy_sigma0": clean})


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- driver


def run_paper(plan: Plan, device: torch.device, workdir: Path) -> list[Result]:
    """Every stage of every experiment, in the workflow's order; one Result per job."""
    watch = Stopwatch(device)
    results: list[Result] = []
    datasets = sorted({plan.cfg["experiments"][e]["dataset"] for e in plan.experiments})
    data = {}
    for i, name in enumerate(datasets):
        with watch() as timed:
            data[name] = make_dataset(name, plan, device, seed=i)
        n = plan.train_size + plan.test_size
        results.append(Result("data", name, timed["s"], n))
        log.info("data %s: %d images in %.2f s", name, n, timed["s"])
    teachers: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for exp in plan.experiments:
        e = plan.cfg["experiments"][exp]
        key = (e["dataset"], e["teacher"])
        if key not in teachers:
            res, teachers[key] = run_extract(*key, data[key[0]], plan, device, watch)
            results += res
            log.info("extract %s: %.0f img/s", res[0].job, res[0].images_per_s)
    for exp in plan.experiments:
        e = plan.cfg["experiments"][exp]
        ds, t_emb = data[e["dataset"]], teachers[(e["dataset"], e["teacher"])]
        evaluated: list[tuple[str, dict[str, np.ndarray]]] = [(f"{exp}/teacher", t_emb)]
        for model in plan.models(exp):
            res, trained = run_train(
                exp, model, ds["train"][0], t_emb["train"], plan, device, watch, workdir
            )
            results.append(res)
            log.info("train %s: %.0f img/s, %.1f s", res.job, res.images_per_s, res.seconds)
            emb_res, emb = run_embed(res.job, trained, ds, plan, device, watch)
            results.append(emb_res)
            evaluated.append((res.job, emb))
            del trained
            _free(device)
        for i, (job, emb) in enumerate(evaluated):
            results.append(run_spectrum(job, emb["test"]))
            if plan.max_probes is None or i < plan.max_probes:
                results.append(run_probe(job, emb, ds, plan))
                log.info("probe %s: %.1f s", job, results[-1].seconds)
    return results


def summarise(results: list[Result], peak: float | None) -> list[dict[str, Any]]:
    """Per stage: jobs, wall s, images, images/s, GFLOPs per image, MFU; plus the estimate.

    GFLOPs per image of a stage is the image-weighted mean over its jobs, so stage MFU is
    (total FLOPs / seconds) / peak.
    """
    rows = []
    for stage in dict.fromkeys(r.stage for r in results):
        rs = [r for r in results if r.stage == stage]
        seconds = sum(r.seconds for r in rs)
        images = sum(r.images for r in rs)
        flops = [r.gflops_per_image * r.images for r in rs if r.gflops_per_image is not None]
        gflops = sum(flops) / images if flops else None
        rate = images / seconds if seconds > 0 else float("nan")
        mfu = rate * gflops * 1e9 / (peak * 1e12) if gflops is not None and peak else None
        rows.append(
            {
                "stage": stage,
                "jobs": len(rs),
                "seconds": round(seconds, 2),
                "images": images,
                "images_per_s": round(rate, 1),
                "gflops_per_image": None if gflops is None else round(gflops, 3),
                "mfu": None if mfu is None else round(mfu, 4),
            }
        )
    return rows


def estimate_full_seconds(results: list[Result], n_probes_planned: int) -> dict[str, float]:
    """The whole paper's time from a shortened run: training at the measured rates for the
    configured epochs, probes at the measured mean for every model; other stages as run."""
    est: dict[str, float] = {}
    for r in results:
        seconds = r.extra.get("full_run_estimate_s", r.seconds) if r.stage == "train" else r.seconds
        est[r.stage] = est.get(r.stage, 0.0) + float(seconds)
    probes = [r.seconds for r in results if r.stage == "probe"]
    if probes:
        est["probe"] = statistics.mean(probes) * n_probes_planned
    est["total"] = sum(est.values())
    return {k: round(v, 1) for k, v in est.items()}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's H100 targets against this run (the training rate is the loop's own)."""
    rows = []
    for label, stage, key, goal in TARGETS:
        jobs = [j for j in report["jobs"] if j["stage"] == stage and key in j["job"]]
        rates = [j["extra"].get("loop_images_per_s", j["images_per_s"]) for j in jobs]
        value = statistics.median(rates) if rates else None
        rows.append(
            {
                "target": label,
                "goal": f">= {goal:,.0f} images/s",
                "measured": value,
                "met": None if value is None else value >= goal,
            }
        )
    est = report.get("full_paper_estimate_s", {}).get("total")
    total = est if est is not None else report["wall_s"]
    rows.append(
        {
            "target": "whole paper" + (" (estimate)" if est is not None else ""),
            "goal": f"<= {WHOLE_PAPER_TARGET_S:.0f} s",
            "measured": total,
            "met": total <= WHOLE_PAPER_TARGET_S,
        }
    )
    return rows


def to_markdown(report: dict[str, Any]) -> str:
    """Stage table, the per-job rates the targets name, and the targets themselves."""
    m = report["machine"]
    peak = report["peak_tflops"]
    mfu_note = f"MFU against {peak:g} TFLOP/s" if peak else "MFU not reported"
    lines = [
        f"# Paper-scale synthetic run — {m['gpu'] or m['device']} on {m['host']}",
        "",
        f"{report['mode']}; torch {m['torch']}, commit {m['git_commit']}, {m['date']}; "
        f"{mfu_note} ({report['peak_source']}); wall {report['wall_s']:.0f} s.",
        "",
        "| stage | jobs | wall s | images | images/s | GFLOP/image | MFU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["stages"]:
        gf = "" if r["gflops_per_image"] is None else f"{r['gflops_per_image']:.3f}"
        mfu = "" if r["mfu"] is None else f"{100 * r['mfu']:.1f} %"
        lines.append(
            f"| {r['stage']} | {r['jobs']} | {r['seconds']:.1f} | {r['images']} | "
            f"{r['images_per_s']:.0f} | {gf} | {mfu} |"
        )
    lines += ["", "| job | stage | images/s | wall s |", "|---|---|---:|---:|"]
    for r in report["jobs"]:
        if r["stage"] in ("extract", "train"):
            lines.append(
                f"| {r['job']} | {r['stage']} | {r['images_per_s']:.0f} | {r['seconds']:.2f} |"
            )
    lines += ["", "| target (one H100) | goal | measured | met |", "|---|---|---:|---|"]
    for t in report["targets"]:
        value = "" if t["measured"] is None else f"{t['measured']:,.0f}"
        met = {True: "yes", False: "no", None: ""}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {value} | {met} |")
    est = report.get("full_paper_estimate_s")
    if est:
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in est.items() if k != "total")
        lines += [
            "",
            f"Estimated whole-paper time at these rates: {est['total']:.0f} s "
            f"({est['total'] / 60:.1f} min); per stage: {parts}.",
        ]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=ROOT / "config.yaml", help="base config")
    p.add_argument("--configfile", type=Path, action="append", default=[], help="overlay(s)")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on any device (seconds)")
    p.add_argument("--epochs", type=int, help="override training.epochs")
    p.add_argument("--max-steps", type=int, help="train each student for this many steps only")
    p.add_argument("--max-probes", type=int, help="probe only the first N models per experiment")
    p.add_argument("--train-size", type=int, default=50_000, help="train images per dataset")
    p.add_argument("--test-size", type=int, default=10_000, help="test images per dataset")
    p.add_argument("--teacher-batch-size", type=int, help="default: the config's, else 256")
    p.add_argument("--compile", action="store_true", help="training.compile = true")
    p.add_argument(
        "--threads", type=int, help="cap torch/OpenMP/BLAS threads (as a rule's threads: does)"
    )
    p.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, TFLOP/s")
    p.add_argument("--out", type=Path, help="JSON path (a .md goes beside it)")
    p.add_argument("--workdir", type=Path, help="where weights go (default: a temp dir)")
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the plan and write the JSON + Markdown report; returns the report."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.max_steps is not None and args.max_steps < 1:
        raise SystemExit("--max-steps: expected an integer >= 1")
    if args.threads is not None:
        limit_threads(args.threads)
    plan = make_plan(args)
    device = resolve_device(args.device)
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        results = run_paper(plan, device, Path(workdir))
    wall = time.perf_counter() - start
    n_probes = sum(1 + len(plan.models(e)) for e in plan.experiments)
    mode = "smoke" if args.smoke else "full"
    if plan.max_steps is not None:
        mode = f"short (--max-steps {plan.max_steps})"
    report: dict[str, Any] = {
        "mode": f"{mode}: {plan.train_size} train + {plan.test_size} test images per dataset, "
        f"{len(plan.sigmas)} noise levels, epochs {plan.cfg['training']['epochs']}",
        "machine": machine(device),
        "peak_tflops": peak,
        "peak_source": peak_source,
        "wall_s": round(wall, 1),
        "stages": summarise(results, peak),
        "jobs": [
            {**dataclasses.asdict(r), "images_per_s": round(r.images_per_s, 1)} for r in results
        ],
    }
    if plan.max_steps is not None or plan.max_probes is not None:
        report["full_paper_estimate_s"] = estimate_full_seconds(results, n_probes)
    report["targets"] = targets(report)
    out = args.out or ROOT / "results/bench" / (
        f"paper_scale-{socket.gethostname()}-{dt.datetime.now():%Y-%m-%dT%H%M}.json"
    )
    save_json(out, report)
    save_text(out.with_suffix(".md"), to_markdown(report))
    print(to_markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')} ({wall:.1f} s)")
    return report


if __name__ == "__main__":
    main()
