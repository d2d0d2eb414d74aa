"""Fault injection (issue 8): bad config, bad files, interruptions and unsafe input.

A researcher leaves the pipeline running overnight and must be able to trust whatever it
produced, or the error it stopped with. Every test here injects one fault and checks that
the failure surfaces where it happens, that the message names the key or file, and that
nothing downstream is built from the bad input. Each test carries
``@pytest.mark.scenario``; ``tests/conftest.py`` prints one summary line per scenario
(``make faults``). The table in ``docs/reliability.md`` is the
prose version of these scenarios.

Library-level tests call :mod:`kdspectra.stages` (exactly what each rule's script runs) on
small synthetic artifacts and take milliseconds. Workflow-level tests (``workflow`` and
``slow`` markers) run the real Snakefile in a subprocess on ``tests/faults/mini_config.yaml``:
one student, timm's 0.3M-parameter ``test_vit`` teacher at random init, 320 synthetic
training images in a CIFAR-10 binary archive served through ``file://``. They target single
files, never ``all``, so the whole module stays within a few minutes on two cores.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from conftest import run_snakemake, snakemake_command
from kdspectra import stages
from kdspectra.config import data_key, fill_defaults, load_schema
from kdspectra.data.datasets import OUTPUTS, write_cifar_archive
from kdspectra.data.download import md5sum
from kdspectra.data.embeddings import load_embeddings
from kdspectra.errors import ArtifactError
from kdspectra.io import array_digest, save_json, save_npy
from kdspectra.models.students import build_student
from kdspectra.training.config import TrainConfig
from kdspectra.training.loop import Preempted, train_student

REPO = Path(__file__).resolve().parents[1]
MINI = REPO / "tests" / "faults" / "mini_config.yaml"
SCHEMA = load_schema(REPO / "src" / "kdspectra" / "config.schema.yaml")

# Paths inside a workdir run on MINI (name: faults, dataset synth, teacher vit).
RUN = "results/faults"
TEACHER = f"{RUN}/embeddings/synth/vit"
STUDENT = f"{RUN}/students/mini/cnn_s/cosine/seed0"
WEIGHTS = f"{STUDENT}/model.safetensors"
CHECKPOINT = f"{RUN}/checkpoints/mini/cnn_s/cosine/seed0.pt"
N_TRAIN, N_TEST = 320, 80


SCENARIOS = {
    # id: what is injected -> what must happen (one `make faults` summary line each)
    "1.1": "malformed config overlay -> `snakemake -n` stops at parse naming key and value",
    "2.0": "control: intact artifacts pass every reader and produce its outputs",
    "2.1": "bad .npy (truncated/garbage/empty/NaN/inf/dtype/pickle) -> named, nothing written",
    "2.2": "row count differs from the labels -> reader names the file, writes nothing",
    "2.3": "bad checkpoint/weights (other arch, truncated, pickle, garbage) -> named, kept",
    "2.4": "truncated teacher test.npy via snakemake -> spectrum job names it, no spectrum",
    "2.5": "checkpoint of another architecture via snakemake -> train job names it, no weights",
    "3.1": "kill -9 of snakemake mid-training -> --unlock, --rerun-incomplete: same weights",
    "3.2": "SIGTERM to snakemake mid-extraction -> no partial .npy, no temp file, lock released",
    "3.3": "SIGTERM while an artifact is being written -> temp file removed, exit 143, logged",
    "3.4": "second snakemake on the same directory -> LockException; the first completes unharmed",
    "4.1": "static scan of src/ workflow/ benchmarks/: nothing unpickles or runs a shell string",
    "4.2": "pickle payload in a teacher weights file -> refused before it runs, key named",
    "4.3": "archive members outside the expected set (traversal, absolute, link) -> never written",
    "4.4": "no shell: command built from config values without {...:q}",
    "4.5": "static scan of src/ workflow/ benchmarks/: every artifact writer uses atomic_path",
}


def scenario(sid: str) -> pytest.MarkDecorator:
    """Group a test under its scenario's summary line of ``make faults``."""
    return pytest.mark.scenario(f"{sid} {SCENARIOS[sid]}")


class PicklePayload:
    """Unpickling this object creates the directory ``marker``: proof that a loader ran
    pickled code. Every loader must refuse it before that happens."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.marker,))


# =========================================================================== helpers


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def mini_config(archive: Path | None) -> dict[str, Any]:
    """MINI with the synthetic archive's URL and md5 filled in (dummies for parse-only runs)."""
    cfg = yaml.safe_load(MINI.read_text())
    synth = cfg["datasets"]["synth"]
    if archive is not None:
        synth.update(url=archive.as_uri(), md5=md5sum(archive))
    return cfg


def snakemake(
    workdir: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the repository's Snakefile in ``workdir`` and wait for it."""
    return run_snakemake(workdir, *args, env=env, timeout=600)


def start_snakemake(workdir: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start Snakemake in its own process group (so the whole run can be signalled, as a
    cluster scheduler does); its console output goes to ``<workdir>.console``."""
    with open(f"{workdir}.console", "wb") as out:  # the child keeps its own copy of the fd
        return subprocess.Popen(
            snakemake_command(workdir, *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=workdir,
        )


def console(workdir: Path) -> str:
    return Path(f"{workdir}.console").read_text(errors="replace")


def text(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def wait_until(
    condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, workdir: Path
) -> None:
    """Poll ``condition`` every 20 ms; fail (and stop the run) if Snakemake exits first."""
    deadline = time.monotonic() + 600
    while not condition():
        if proc.poll() is not None:
            pytest.fail(
                f"snakemake exited ({proc.returncode}) before {what}:\n{console(workdir)[-3000:]}"
            )
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def locks(workdir: Path) -> list[str]:
    folder = workdir / ".snakemake" / "locks"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def prepared(work: Path) -> Path:
    """The prepared data of MINI's ``synth`` in ``work``, named by its archive's md5."""
    config = yaml.safe_load((work / "config.yaml").read_text())
    return work / "results" / "data" / data_key(config, "synth")


def files_under(folder: Path) -> list[str]:
    """Every file below ``folder`` (relative names; hidden temporaries included)."""
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


def max_abs_diff(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


def resolved_training(workdir_config: Path | None = None) -> dict[str, Any]:
    """The ``training`` section as the workflow resolves it (schema defaults filled in)."""
    cfg = yaml.safe_load((workdir_config or MINI).read_text())
    return fill_defaults(cfg, SCHEMA, SCHEMA)["training"]


def foreign_checkpoint(
    path: Path, images: np.ndarray, teacher: np.ndarray, training: Mapping[str, Any]
) -> None:
    """A genuine checkpoint of ``hybrid`` (not ``cnn_s``) with every other setting equal:
    train one step, then SIGUSR1 (SLURM's ``--signal``) makes the loop checkpoint and stop."""
    scratch = path.parent / "foreign-run"
    scratch.mkdir(parents=True, exist_ok=True)
    with pytest.raises(Preempted):
        train_student(
            "hybrid",
            images,
            teacher,
            TrainConfig.from_config(training, "cosine", 0),
            device=torch.device("cpu"),
            weights_out=scratch / "w.safetensors",
            metrics_out=scratch / "m.csv",
            meta_out=scratch / "m.json",
            checkpoint=path,
            callback=lambda _epoch, _step: signal.raise_signal(signal.SIGUSR1),
            progress_bar=False,
        )
    shutil.rmtree(scratch)
    assert path.is_file()


# =========================================================================== 1. config

CONFIG_FAULTS: dict[str, tuple[dict[str, Any], dict[str, str], list[str]]] = {
    # case: (overlay, extra environment, fragments the message must contain)
    "epochs is a string": (
        {"training": {"epochs": "ten"}},
        {},
        ["training.epochs", "'ten'", "integer"],
    ),
    "unknown student": (
        {"experiments": {"mini": {"students": ["cnn_xl"]}}},
        {},
        ["experiments.mini.students.0", "cnn_xl", "cnn_s"],
    ),
    "unknown teacher": (
        {"experiments": {"mini": {"teacher": "clip"}}},
        {},
        ["experiments.mini.teacher", "'clip'", "['vit']"],
    ),
    "ftp url": (
        {"datasets": {"synth": {"url": "ftp://mirror.example/synth.tar.gz"}}},
        {},
        ["datasets.synth.url", "ftp://mirror.example/synth.tar.gz", "https?|file"],
    ),
    # issue 24: a value only a job would refuse made Snakemake delete that job's good
    # outputs first (a NaN sigma deleted test_noisy.npy); the parse refuses it now.
    "NaN noise sigma": (
        {"evaluation": {"noise_sigmas": [0.0, float("nan")]}},
        {},
        ["evaluation.noise_sigmas.1", "finite", "nan"],
    ),
    "float seed": ({"seeds": [1.0]}, {}, ["seeds.0", "integer", "1.0"]),
    "run name with a newline": ({"name": "atk\n"}, {}, ["config key 'name'", "'atk\\n'"]),
    "missing weights file": (
        {"teachers": {"vit": {"pretrained": "/nonexistent/vit.safetensors"}}},
        {},
        ["teachers.vit.pretrained", "/nonexistent/vit.safetensors", "does not exist"],
    ),
    # `device: cuda` without CUDA is not a parse-time fault any more: the login node that
    # parses the Snakefile has no GPU; each job checks its own (tests/test_device.py).
}


@pytest.mark.workflow
@scenario("1.1")
@pytest.mark.parametrize("case", list(CONFIG_FAULTS))
def test_snakemake_refuses_malformed_config(case: str, tmp_path: Path) -> None:
    """Through Snakemake itself, not just ``validate_config`` (tests/test_config.py holds
    25+ more cases): the overlay is merged the way users merge it, the error reaches the
    console, and it comes before the DAG is built, so no job and no ``results/``."""
    overlay, env, fragments = CONFIG_FAULTS[case]
    write_yaml(tmp_path / "config.yaml", mini_config(None))
    write_yaml(tmp_path / "bad.yaml", overlay)
    proc = snakemake(
        tmp_path, "-n", "--cores", "1", "--configfile", "bad.yaml", env={**os.environ, **env}
    )
    out = text(proc)
    assert proc.returncode != 0, out
    assert "invalid config" in out, out
    for fragment in fragments:
        assert fragment in out, f"{fragment!r} not in:\n{out}"
    assert "Building DAG of jobs" not in out
    assert not (tmp_path / "results").exists()


# =========================================================================== 2. bad files

N_TR, N_TE, DIM = 48, 16, 8
SIGMAS = [0.0, 0.5]
PROBE = {"seed": 0, "Cs": [1.0], "max_iter": 20}


@dataclass
class Artifacts:
    """A prepared split, teacher/student embeddings and an empty output folder."""

    data: Path
    files: dict[str, Path]
    training: dict[str, Any]
    out: Path


@pytest.fixture
def art(tmp_path: Path) -> Artifacts:
    """Valid inputs for every reader; each test then breaks exactly one file."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for split, n in (("train", N_TR), ("test", N_TE)):
        save_npy(data / f"{split}_images.npy", rng.integers(0, 256, (n, 32, 32, 3), np.uint8))
        save_npy(data / f"{split}_labels.npy", (np.arange(n) % 4).astype(np.int64))
    shapes = {
        "teacher_train": (N_TR, DIM),
        "teacher_test": (N_TE, DIM),
        "student_train": (N_TR, DIM),
        "student_test": (N_TE, DIM),
        "noisy": (len(SIGMAS), N_TE, DIM),
    }
    files = {}
    for name, shape in shapes.items():
        files[name] = tmp_path / "emb" / f"{name}.npy"
        save_npy(files[name], rng.normal(size=shape).astype(np.float32))
    training = {**resolved_training(), "epochs": 1, "batch_size": 16}
    out = tmp_path / "out"
    out.mkdir()
    return Artifacts(data, files, training, out)


def _spectrum_student(a: Artifacts) -> None:
    meta = a.out.parent / "student_meta.json"  # the rank ceiling needs the feature width
    save_json(meta, {"feature_width": 10})
    stages.measure_model(
        {
            "test": a.files["student_test"],
            "teacher": a.files["teacher_test"],
            "labels": a.data / "test_labels.npy",
            "meta": meta,
        },
        {"values": a.out / "values.parquet", "stats": a.out / "stats.json"},
        {},
    )


def _spectrum_teacher(a: Artifacts) -> None:
    stages.measure_model(
        {"test": a.files["teacher_test"], "labels": a.data / "test_labels.npy"},
        {"values": a.out / "values.parquet", "stats": a.out / "stats.json"},
        {},
    )


def _noise(a: Artifacts) -> None:
    stages.measure_model(
        {
            "train": a.files["student_train"],
            "train_labels": a.data / "train_labels.npy",
            "noisy": a.files["noisy"],
            "test_labels": a.data / "test_labels.npy",
        },
        {"accuracy": a.out / "noise.parquet"},
        {"sigmas": SIGMAS, "probe": PROBE},
    )


def _train(a: Artifacts, checkpoint: Path | None = None) -> None:
    outputs = {name: a.out / name for name in ("model.safetensors", "metrics.csv", "meta.json")}
    stages.train_student(
        {"teacher": a.files["teacher_train"]},
        {
            "weights": outputs["model.safetensors"],
            "metrics": outputs["metrics.csv"],
            "meta": outputs["meta.json"],
        },
        {
            "student": "cnn_s",
            "objective": "cosine",
            "seed": 0,
            "training": a.training,
            "device": "cpu",
            "data_dir": a.data,
            "checkpoint": checkpoint or a.out / "checkpoint.pt",
        },
    )


# reader: (file it reads that gets corrupted, call, outputs it writes when all is well)
READERS: dict[str, tuple[str, Callable[[Artifacts], None], tuple[str, ...]]] = {
    "spectrum/student test.npy": (
        "student_test",
        _spectrum_student,
        ("values.parquet", "stats.json"),
    ),
    "spectrum/teacher test.npy as reference": (
        "teacher_test",
        _spectrum_student,
        ("values.parquet", "stats.json"),
    ),
    "spectrum/teacher test.npy as model": (
        "teacher_test",
        _spectrum_teacher,
        ("values.parquet", "stats.json"),
    ),
    "noise/train.npy": ("student_train", _noise, ("noise.parquet",)),
    "noise/test_noisy.npy": ("noisy", _noise, ("noise.parquet",)),
    "train/teacher train.npy": (
        "teacher_train",
        _train,
        ("model.safetensors", "metrics.csv", "meta.json"),
    ),
}


def _truncate(path: Path) -> None:
    """Header intact, data cut: what a crash during a non-atomic copy leaves."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _nan(path: Path) -> None:
    arr = np.load(path)
    arr.flat[3] = np.nan
    np.save(path, arr)


def _inf(path: Path) -> None:
    arr = np.load(path)
    arr.flat[5] = -np.inf
    np.save(path, arr)


def _float64(path: Path) -> None:
    np.save(path, np.load(path).astype(np.float64))


def _pickle_payload(path: Path) -> None:
    np.save(path, np.array([PicklePayload(path.parent / "PWNED")], dtype=object), allow_pickle=True)


def _drop_a_row(path: Path) -> None:
    """One row fewer than the labels (for S×N×D noisy stacks: one test image fewer)."""
    arr = np.load(path)
    np.save(path, arr[:, :-1] if arr.ndim == 3 else arr[:-1])


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated": _truncate,
    "garbage": _garbage,
    "empty": _empty,
    "NaN": _nan,
    "inf": _inf,
    "float64": _float64,
    "pickle payload": _pickle_payload,
}


def _assert_refused(a: Artifacts, reader: str, bad: Path) -> None:
    _, call, _ = READERS[reader]
    with pytest.raises(ArtifactError) as err:
        call(a)
    assert str(bad) in str(err.value), f"{reader}: message does not name {bad}: {err.value}"
    assert files_under(a.out) == [], f"{reader}: wrote {files_under(a.out)} from a bad input"
    assert not (bad.parent / "PWNED").exists(), "a pickle payload was executed"


@scenario("2.0")
@pytest.mark.parametrize("reader", list(READERS))
def test_intact_artifacts_pass_every_reader(reader: str, art: Artifacts) -> None:
    """Shows the fault cases below fail because of the fault, not the harness."""
    _, call, outputs = READERS[reader]
    call(art)
    assert set(outputs) <= set(files_under(art.out))


@scenario("2.1")
@pytest.mark.parametrize("kind", list(CORRUPTIONS))
@pytest.mark.parametrize("reader", list(READERS))
def test_bad_npy_is_named_where_read(reader: str, kind: str, art: Artifacts) -> None:
    bad = art.files[READERS[reader][0]]
    CORRUPTIONS[kind](bad)
    _assert_refused(art, reader, bad)


@scenario("2.2")
@pytest.mark.parametrize("reader", list(READERS))
def test_row_count_mismatch_is_named_where_read(reader: str, art: Artifacts) -> None:
    bad = art.files[READERS[reader][0]]
    _drop_a_row(bad)
    _assert_refused(art, reader, bad)


def _checkpoint_other_architecture(a: Artifacts, path: Path) -> str:
    images, _ = stages.load_split(a.data, "train")
    foreign_checkpoint(path, images, load_embeddings(a.files["teacher_train"]), a.training)
    return "hybrid"


def _checkpoint_truncated(a: Artifacts, path: Path) -> str:
    _checkpoint_other_architecture(a, path)
    _truncate(path)
    return "not a readable training checkpoint"


def _checkpoint_pickle_payload(a: Artifacts, path: Path) -> str:
    torch.save({"format": 1, "model": PicklePayload(path.parent / "PWNED")}, path)
    return "not a readable training checkpoint"


CHECKPOINT_FAULTS: dict[str, Callable[[Artifacts, Path], str]] = {
    "other architecture": _checkpoint_other_architecture,
    "truncated": _checkpoint_truncated,
    "pickle payload": _checkpoint_pickle_payload,
}


@scenario("2.3")
@pytest.mark.parametrize("case", list(CHECKPOINT_FAULTS))
def test_bad_checkpoint_is_named_and_kept(case: str, art: Artifacts, tmp_path: Path) -> None:
    """The training job refuses a checkpoint it cannot resume from exactly and leaves it in
    place (the message says to delete it): silently starting over would hide the fault,
    silently deleting it would destroy what a user may want to inspect."""
    ckpt = tmp_path / "ckpt" / "seed0.pt"
    ckpt.parent.mkdir()
    expected = CHECKPOINT_FAULTS[case](art, ckpt)
    before = ckpt.read_bytes()
    with pytest.raises(ArtifactError) as err:
        _train(art, ckpt)
    assert str(ckpt) in str(err.value) and expected in str(err.value), str(err.value)
    assert files_under(art.out) == []
    assert ckpt.read_bytes() == before
    assert not (ckpt.parent / "PWNED").exists()


def _weights_garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(2).bytes(4096))


def _weights_other_architecture(path: Path) -> None:
    save_file(build_student("hybrid", DIM, width_mult=0.125).state_dict(), str(path))


def _weights_truncated(path: Path) -> None:
    save_file(build_student("cnn_s", DIM, width_mult=0.125).state_dict(), str(path))
    _truncate(path)


@scenario("2.3")
@pytest.mark.parametrize(
    "make",
    [_weights_garbage, _weights_other_architecture, _weights_truncated],
    ids=["garbage", "other architecture", "truncated"],
)
def test_bad_student_weights_are_named(make: Callable[[Path], None], art: Artifacts) -> None:
    weights, meta = art.out.parent / "model.safetensors", art.out.parent / "meta.json"
    make(weights)
    save_json(meta, {"student": "cnn_s", "embed_dim": DIM, "width_mult": 0.125})
    names = ("train", "test", "train_parquet", "test_parquet", "test_noisy")
    with pytest.raises(ArtifactError) as err:
        stages.embed_student(
            weights,
            meta,
            "cpu",
            art.data,
            {n: art.out / n for n in names},
            batch_size=64,
            sigmas=SIGMAS,
            noise_seed=0,
        )
    assert str(weights) in str(err.value)
    assert files_under(art.out) == []


# ---------------------------------------------------------------- through Snakemake


def write_hostile_archive(path: Path, root: Path) -> tuple[Path, list[Path]]:
    """A format-exact CIFAR-10 archive plus members no extractor may write: a traversal,
    an absolute path, a nested traversal and a symlink. Returns it and the paths those
    members would create if they were ever extracted."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True)
    write_cifar_archive(
        path,
        "cifar10-binary",
        train_images=rng.integers(0, 256, (N_TRAIN, 32, 32, 3), np.uint8),
        train_labels=np.arange(N_TRAIN) % 10,
        test_images=rng.integers(0, 256, (N_TEST, 32, 32, 3), np.uint8),
        test_labels=np.arange(N_TEST) % 10,
        classes=[f"class{i}" for i in range(10)],
    )
    with tarfile.open(path, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    absolute = root / "absolute-escape.txt"
    hostile = ["../escape.txt", str(absolute), "cifar-10-batches-bin/../../nested-escape.txt"]
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data))
        for name in hostile:
            info = tarfile.TarInfo(name)
            info.size = 7
            tar.addfile(info, io.BytesIO(b"escaped"))
        link = tarfile.TarInfo("cifar-10-batches-bin/passwd-link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return path, [absolute, root / "escape.txt", root / "nested-escape.txt"]


@dataclass
class Base:
    """A workdir with prepared data and teacher embeddings, built once per module."""

    root: Path
    work: Path
    forbidden: list[Path]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("faults")
    archive, forbidden = write_hostile_archive(root / "mirror" / "synth.tar.gz", root)
    work = root / "base"
    work.mkdir()
    write_yaml(work / "config.yaml", mini_config(archive))
    proc = snakemake(work, "--cores", "2", f"{TEACHER}/sanity.json")
    assert proc.returncode == 0, text(proc)[-6000:]
    return Base(root, work, forbidden)


def clone(base: Base, dest: Path) -> Path:
    """Copy the base workdir (mtimes and Snakemake metadata kept, locks dropped)."""
    shutil.copytree(base.work, dest, symlinks=True, ignore=shutil.ignore_patterns("locks"))
    return dest


@pytest.mark.workflow
@pytest.mark.slow
@scenario("2.4")
def test_workflow_corrupt_embeddings_stop_the_spectrum(base: Base, tmp_path: Path) -> None:
    work = clone(base, tmp_path / "w")
    bad = work / TEACHER / "test.npy"
    _truncate(bad)  # also newer than everything else, as a re-copied file would be
    proc = snakemake(work, "--cores", "2", f"{RUN}/spectra/mini/teacher.json")
    out = text(proc)
    assert proc.returncode != 0
    assert f"ArtifactError: {TEACHER}/test.npy" in out, out[-4000:]
    assert files_under(work / RUN / "spectra") == []


@pytest.mark.workflow
@pytest.mark.slow
@scenario("2.5")
def test_workflow_refuses_foreign_checkpoint(base: Base, tmp_path: Path) -> None:
    work = clone(base, tmp_path / "w")
    ckpt = work / CHECKPOINT
    images, _ = stages.load_split(prepared(work), "train")
    teacher = load_embeddings(work / TEACHER / "train.npy")
    foreign_checkpoint(ckpt, images, teacher, resolved_training(work / "config.yaml"))
    before = ckpt.read_bytes()
    proc = snakemake(work, "--cores", "2", WEIGHTS)
    out = text(proc)
    assert proc.returncode != 0
    assert f"ArtifactError: {CHECKPOINT}: checkpoint belongs to another run" in out, out[-4000:]
    assert "student: checkpoint has 'hybrid', this run 'cnn_s'" in out
    assert files_under(work / STUDENT) == []
    assert ckpt.read_bytes() == before


# =========================================================================== 3. interruptions


@dataclass
class Reference:
    """An uninterrupted training run, and the second run attempted while it was paused."""

    work: Path
    returncode: int
    console: str
    second: subprocess.CompletedProcess[str]
    weights: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def reference(base: Base, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """Train through Snakemake; once its job runs, freeze the run (SIGSTOP to its group,
    so "while the first runs" does not depend on timing), start a second Snakemake on the
    same directory, then let the first continue (SIGCONT) and finish."""
    work = clone(base, tmp_path_factory.mktemp("reference") / "w")
    first = start_snakemake(work, "--cores", "2", WEIGHTS)
    log = work / f"{RUN}/logs/train/mini/cnn_s/cosine/seed0.log"
    wait_until(lambda: bool(locks(work)) and log.exists(), first, "the training job started", work)
    os.killpg(first.pid, signal.SIGSTOP)
    try:
        second = snakemake(work, "--cores", "2", WEIGHTS)
    finally:
        os.killpg(first.pid, signal.SIGCONT)
    returncode = first.wait(timeout=600)
    weights = load_file(str(work / WEIGHTS)) if returncode == 0 else {}
    return Reference(work, returncode, console(work), second, weights)


@pytest.mark.workflow
@pytest.mark.slow
@scenario("3.4")
def test_second_run_on_same_directory_is_locked_out(reference: Reference) -> None:
    out = text(reference.second)
    assert reference.second.returncode != 0
    assert "LockException" in out and "Directory cannot be locked" in out, out[-3000:]
    assert reference.returncode == 0, reference.console[-4000:]
    meta = (reference.work / STUDENT / "meta.json").read_text()
    assert '"student": "cnn_s"' in meta and '"resumed_from": null' in meta
    assert not (reference.work / CHECKPOINT).exists()
    assert locks(reference.work) == []


@pytest.mark.workflow
@pytest.mark.slow
@scenario("3.1")
def test_kill9_then_rerun_incomplete_matches_uninterrupted_run(
    base: Base, reference: Reference, tmp_path: Path, record_property: Callable[[str, Any], None]
) -> None:
    """The checkpoint written after epoch 1 survives ``kill -9`` (it is not a rule output,
    so Snakemake does not delete it); the rerun resumes from it and, on the CPU with the
    same seeds, ends with the weights of the uninterrupted run. Snakemake's lock also
    survives a ``kill -9`` (it cannot tell a dead run from a live one on a shared
    filesystem), so the documented recovery is ``--unlock`` first."""
    assert reference.returncode == 0, reference.console[-4000:]
    work = clone(base, tmp_path / "w")
    run = start_snakemake(work, "--cores", "2", WEIGHTS)
    wait_until((work / CHECKPOINT).exists, run, "the first epoch's checkpoint", work)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=60)
    assert not (work / WEIGHTS).exists() and (work / CHECKPOINT).exists()

    stale = snakemake(work, "--cores", "2", "--rerun-incomplete", WEIGHTS)
    assert stale.returncode != 0 and "--unlock" in text(stale), text(stale)[-3000:]
    assert snakemake(work, "--unlock").returncode == 0
    rerun = snakemake(work, "--cores", "2", "--rerun-incomplete", WEIGHTS)
    assert rerun.returncode == 0, text(rerun)[-4000:]

    meta = yaml.safe_load((work / STUDENT / "meta.json").read_text())
    assert meta["resumed_from"]["epoch"] >= 1, meta["resumed_from"]
    resumed = load_file(str(work / WEIGHTS))
    diff = max_abs_diff(resumed, reference.weights)
    assert diff <= 1e-6, f"resumed weights differ from the uninterrupted run by {diff}"
    assert not (work / CHECKPOINT).exists()
    bitwise = all(torch.equal(resumed[k], reference.weights[k]) for k in resumed)
    record_property(
        "detail",
        f"resumed after epoch {meta['resumed_from']['epoch']}, "
        f"max |diff| {diff:.1e}{', bitwise equal' if bitwise else ''}",
    )


@pytest.mark.workflow
@pytest.mark.slow
@scenario("3.2")
def test_sigterm_during_extraction_leaves_no_partial_npy(base: Base, tmp_path: Path) -> None:
    """SLURM preemption sends SIGTERM to every process of the job. Snakemake removes the
    outputs of the interrupted job (train.npy is already complete when we strike); the job
    itself exits through its cleanup (:func:`kdspectra.runtime.logs.exit_on_sigterm`), so no temp
    file is left either, and its log says why it stopped."""
    work = clone(base, tmp_path / "w")
    shutil.rmtree(work / TEACHER)
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    # A slow probe keeps the job busy after train.npy is written: a wide window to strike.
    cfg["evaluation"].update(probe_cs=[1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0], probe_max_iter=5000)
    write_yaml(work / "config.yaml", cfg)
    run = start_snakemake(work, "--cores", "2", f"{TEACHER}/sanity.json")
    wait_until((work / TEACHER / "train.npy").exists, run, "train.npy was written", work)
    os.killpg(run.pid, signal.SIGTERM)
    assert run.wait(timeout=300) != 0
    assert files_under(work / TEACHER) == [], console(work)[-3000:]
    assert locks(work) == []
    job_log = (work / f"{RUN}/logs/extract_teacher/synth/vit.log").read_text()
    assert "SystemExit: 143" in job_log, job_log[-2000:]
    assert files_under(prepared(work)) == files_under(prepared(base.work))


WRITER = """
import sys, time
import numpy as np
from kdspectra.io import save_npy
from kdspectra.runtime.logs import job

real_save = np.save


def slow_save(fh, arr, **kw):  # half-way through a write when the signal comes
    real_save(fh, arr, **kw)
    fh.flush()
    time.sleep(120)


np.save = slow_save
with job(sys.argv[1] + "/job.log"):
    save_npy(sys.argv[1] + "/out.npy", np.zeros((4, 4), np.float32))
"""


@scenario("3.3")
def test_sigterm_mid_write_removes_the_temporary(tmp_path: Path) -> None:
    """Deterministic version of 3.2's worst moment: the signal lands between the temp file
    and the rename. Python's default SIGTERM action would leave ``.out.npy.*.tmp`` behind."""
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    out = tmp_path / "out"
    out.mkdir()
    # The kdspectra this test process imports (the checkout's src/ unless overridden).
    env = {**os.environ, "PYTHONPATH": str(Path(stages.__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out)], env=env, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not any(p.suffix == ".tmp" and p.stat().st_size for p in out.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, "writer never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == ["job.log"]
    assert "SystemExit: 143" in (out / "job.log").read_text()


# =========================================================================== 4. security

UNPICKLERS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "pandas.read_pickle",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "torch.jit.load",
}
SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}


def _qualified(node: ast.expr, aliases: Mapping[str, str]) -> str:
    """``np.load`` -> ``numpy.load`` after ``import numpy as np`` (best effort)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(
        kw.arg == name and isinstance(kw.value, ast.Constant) and kw.value.value is value
        for kw in call.keywords
    )


def unsafe_calls(source: str, filename: str = "<source>") -> list[str]:
    """Calls that unpickle, load torch files without ``weights_only=True``, load ``.npy``
    without ``allow_pickle=False``, or hand a string to a shell."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _qualified(node.func, aliases)
        where = f"{filename}:{node.lineno}"
        if name in UNPICKLERS:
            problems.append(f"{where}: {name}() can execute pickled code")
        if name == "torch.load" and not _keyword_is(node, "weights_only", True):
            problems.append(f"{where}: torch.load without weights_only=True")
        if name == "numpy.load" and not _keyword_is(node, "allow_pickle", False):
            problems.append(f"{where}: numpy.load without allow_pickle=False (use io.load_npy)")
        if _keyword_is(node, "allow_pickle", True):
            problems.append(f"{where}: allow_pickle=True")
        if name in SHELL_CALLS or _keyword_is(node, "shell", True):
            problems.append(f"{where}: {name or 'call'}() runs a shell string")
    return problems


def python_sources() -> Iterator[Path]:
    for folder in ("src", "workflow", "benchmarks"):
        yield from sorted((REPO / folder).rglob("*.py"))


def snakemake_sources() -> list[Path]:
    return [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]


@scenario("4.1")
def test_no_code_path_unpickles(record_property: Callable[[str, Any], None]) -> None:
    """Downloaded archives, embeddings, checkpoints and weights are untrusted input; a
    single ``np.load(allow_pickle=True)`` or bare ``torch.load`` would let a file run code."""
    sources = list(python_sources())
    problems = [
        p for path in sources for p in unsafe_calls(path.read_text(), str(path.relative_to(REPO)))
    ]
    for path in snakemake_sources():
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"pickle|np\.load|numpy\.load|torch\.load", line):
                problems.append(
                    f"{path.relative_to(REPO)}:{lineno}: rules load nothing: {line.strip()}"
                )
    assert problems == []
    record_property("detail", f"{len(sources)} Python files, {len(snakemake_sources())} rule files")


@scenario("4.1")
def test_scanner_catches_each_unsafe_pattern() -> None:
    """The scan above is only worth something if it sees through aliases and keywords."""
    bad = """
        import pickle, subprocess, os
        import numpy as np
        import torch as th
        from pandas import read_pickle
        pickle.loads(b"")
        np.load("x.npy")
        np.load("x.npy", allow_pickle=True)
        th.load("ckpt.pt")
        th.load("ckpt.pt", weights_only=False)
        read_pickle("f")
        subprocess.run("ls " + path, shell=True)
        os.system("rm -rf " + path)
    """
    assert len(unsafe_calls(textwrap.dedent(bad))) == 9
    good = """
        import numpy as np, torch, yaml
        np.load("x.npy", allow_pickle=False)
        torch.load("c.pt", map_location="cpu", weights_only=True)
        yaml.safe_load("a: 1")
        np.save("x.npy", np.zeros(3), allow_pickle=False)
    """
    assert unsafe_calls(textwrap.dedent(good)) == []


# Calls that create or replace a file at their path argument. Outside `atomic_path` a
# crash leaves half a file that Snakemake takes for a finished output.
WRITERS = {
    "numpy.save",
    "numpy.savez",
    "numpy.savez_compressed",
    "numpy.savetxt",
    "torch.save",
    "safetensors.torch.save_file",
}
WRITER_METHODS = {"to_csv", "to_parquet", "to_json", "write_text", "write_bytes", "savefig"}


def _calls_atomic_path(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and (getattr(n.func, "id", None) or getattr(n.func, "attr", None)) == "atomic_path"
        for n in ast.walk(node)
    )


def _temporaries(scope: ast.AST) -> set[str]:
    """Names bound to an ``atomic_path`` temporary in ``scope`` (``with ... as tmp``,
    ``tmp = stack.enter_context(atomic_path(...))``) or to a file opened on one."""
    names: set[str] = set()
    for _ in range(2):  # a second pass catches `open(tmp)` after `tmp` is known
        for node in ast.walk(scope):
            bindings: list[tuple[ast.AST, ast.expr]] = []
            if isinstance(node, ast.With):
                bindings = [
                    (i.context_expr, i.optional_vars) for i in node.items if i.optional_vars
                ]
            elif isinstance(node, ast.Assign):
                bindings = [(node.value, t) for t in node.targets]
            for value, target in bindings:
                opened = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)} & names
                if isinstance(target, ast.Name) and (_calls_atomic_path(value) or opened):
                    names.add(target.id)
    return names


def _import_aliases(tree: ast.AST) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def non_atomic_writes(source: str, filename: str = "<source>") -> list[str]:
    """Artifact writers (:data:`WRITERS`, :data:`WRITER_METHODS`) whose target is not an
    ``atomic_path`` temporary: not inside ``with atomic_path(...)`` and given no name
    bound to one in the enclosing function."""
    tree = ast.parse(source, filename)
    aliases = _import_aliases(tree)
    scope_of: dict[int, ast.AST] = {}  # call -> innermost enclosing function (or module)
    inside_atomic: set[int] = set()

    def visit(node: ast.AST, scope: ast.AST, atomic: bool) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = node
        if isinstance(node, ast.With):
            atomic = atomic or any(_calls_atomic_path(i.context_expr) for i in node.items)
        if isinstance(node, ast.Call):
            scope_of[id(node)] = scope
            if atomic:
                inside_atomic.add(id(node))
        for child in ast.iter_child_nodes(node):
            visit(child, scope, atomic)

    visit(tree, tree, False)
    temporaries = {id(s): _temporaries(s) for s in {id(s): s for s in scope_of.values()}.values()}
    problems = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in inside_atomic:
            continue
        name = _qualified(node.func, aliases)
        method = isinstance(node.func, ast.Attribute) and node.func.attr in WRITER_METHODS
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if (name in WRITERS or method) and not used & temporaries[id(scope_of[id(node)])]:
            what = name or getattr(node.func, "attr", "call")
            problems.append(f"{filename}:{node.lineno}: {what}() outside atomic_path")
    return problems


@scenario("4.5")
def test_every_artifact_writer_goes_through_atomic_path(
    record_property: Callable[[str, Any], None],
) -> None:
    """A writer that bypasses atomic_path (``np.save(path)``, ``df.to_csv(path)``) would
    leave a half-written file after a kill that the next run takes as done."""
    sources = list(python_sources())
    problems = [
        p
        for path in sources
        for p in non_atomic_writes(path.read_text(), str(path.relative_to(REPO)))
    ]
    assert problems == []
    record_property("detail", f"{len(sources)} Python files")


@scenario("4.5")
def test_atomic_write_scanner_catches_each_writer() -> None:
    bad = """
        import numpy as np, torch as th
        from pathlib import Path
        from safetensors.torch import save_file
        def f(path, frame, fig, tmp):
            np.save(path, frame)
            np.savez(path, a=frame)
            th.save({}, path)
            save_file({}, path)
            frame.to_csv(path)
            Path(path).write_text("x")
            fig.savefig(path)
            with open(path, "wb") as fh:
                np.save(fh, frame)
        def g(out):
            tmp = out  # a name is not a temporary because of what it is called
            tmp.write_bytes(b"")
    """
    assert len(non_atomic_writes(textwrap.dedent(bad))) == 9
    good = """
        import contextlib
        import numpy as np, torch
        from kdspectra.io import atomic_path
        def f(path, frame, arrays):
            with atomic_path(path) as tmp:
                torch.save({}, tmp)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                np.save(fh, frame, allow_pickle=False)
            with contextlib.ExitStack() as stack:
                for name, array in arrays.items():
                    part = stack.enter_context(atomic_path(path / name))
                    with open(part, "wb") as fh:
                        np.save(fh, array)
                    part.write_text("x")
    """
    assert non_atomic_writes(textwrap.dedent(good)) == []


@scenario("4.2")
@pytest.mark.parametrize(
    "spec",
    [
        {"library": "timm", "model": "test_vit", "image_size": 32},
        {"library": "open_clip", "model": "ViT-S-32", "image_size": 64},
    ],
    ids=["timm", "open_clip"],
)
def test_teacher_weights_file_is_never_unpickled(spec: dict[str, Any], tmp_path: Path) -> None:
    """``pretrained: <file>`` goes through the libraries' own loaders; both must use
    ``weights_only=True`` (open_clip's and timm's defaults at the pinned versions), and
    the refusal must come back as an error naming the config key and the file."""
    from kdspectra.models.teachers import build_teacher

    marker = tmp_path / "PWNED"
    evil = tmp_path / "teacher.pth"
    torch.save({"state_dict": PicklePayload(marker)}, evil)
    with pytest.raises(ArtifactError) as err:
        build_teacher({**spec, "pretrained": str(evil), "name": "t"}, device=torch.device("cpu"))
    assert "teachers.t.pretrained" in str(err.value) and str(evil) in str(err.value)
    assert not marker.exists()


@scenario("4.2")
def test_torch_load_refuses_pickles_by_default(tmp_path: Path) -> None:
    """Third-party code we do not control (open_clip's OpenAI-JIT fallback) calls
    ``torch.load`` without ``weights_only``; the pinned torch must default to True."""
    import pickle

    marker = tmp_path / "PWNED"
    torch.save([PicklePayload(marker)], tmp_path / "x.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "x.pt")
    assert not marker.exists()


@pytest.mark.workflow
@pytest.mark.slow
@scenario("4.3")
def test_workflow_writes_only_expected_archive_members(base: Base) -> None:
    """The base fixture downloaded (file://, md5 verified) and prepared an archive carrying
    hostile members through the real rules; member-level checks are in test_datasets.py."""
    assert files_under(prepared(base.work)) == sorted([*OUTPUTS, "source.json"])
    assert [p for p in base.forbidden if p.exists() or p.is_symlink()] == []
    links = [p for p in base.root.rglob("*") if p.is_symlink()]
    assert links == []
    assert not list(base.root.rglob("*escape*"))


def unquoted_shell_fields(smk: str) -> list[str]:
    """``{...}`` fields of ``shell:`` directives and ``shell(...)`` calls without ``:q``.

    Snakemake formats config-derived params and paths into the command line; unquoted, a
    value such as ``x; rm -rf ~`` or a path with a space becomes shell syntax. Numeric
    fields (``threads``, ``resources.*``) cannot carry shell syntax and are allowed.
    """
    blocks: list[str] = []
    lines = smk.splitlines()
    for i, line in enumerate(lines):
        directive = re.match(r"^(\s*)shell:\s*(.*)$", line)
        if directive:
            indent, block = len(directive.group(1)), [directive.group(2)]
            for nxt in lines[i + 1 :]:
                if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                    break
                block.append(nxt)
            blocks.append("\n".join(block))
        elif re.search(r"\bshell\(", line):
            blocks.append(smk.split("\n", i)[-1].split(")", 1)[0])
    fields = [f for b in blocks for f in re.findall(r"(?<!\{)\{([^{}]+)\}(?!\})", b)]
    allowed = re.compile(r"^(threads|resources\.\w+)$")
    return [f for f in fields if not f.endswith(":q") and not allowed.match(f)]


@scenario("4.4")
def test_shell_commands_quote_every_field(record_property: Callable[[str, Any], None]) -> None:
    sources = snakemake_sources()
    smk = "\n".join(p.read_text() for p in sources)
    assert unquoted_shell_fields(smk) == []
    directives = len(re.findall(r"^\s*shell:", smk, flags=re.M))
    scripts = len(re.findall(r"^\s*script:", smk, flags=re.M))
    record_property("detail", f"{directives} shell: directives, {scripts} script: rules")


@scenario("4.4")
def test_shell_field_checker_catches_unquoted_fields() -> None:
    rule = """
rule bad:
    output:
        "x",
    shell:
        "tool --url {params.url} {input:q} > {output} 2> {log:q} -t {threads}"


rule good:
    run:
        shell("cp {input:q} {output:q}")
"""
    assert unquoted_shell_fields(rule) == ["params.url", "output"]
    assert (
        unquoted_shell_fields(
            rule.replace("{params.url}", "{params.url:q}").replace("> {output}", "> {output:q}")
        )
        == []
    )


# =========================================================================== issue 24


def _checkpoint_of_this_run(a: Artifacts, path: Path) -> None:
    """A genuine mid-training checkpoint of exactly the run ``_train`` resumes (cnn_s)."""
    images, _ = stages.load_split(a.data, "train")
    teacher = load_embeddings(a.files["teacher_train"])
    with pytest.raises(Preempted):
        train_student(
            "cnn_s", images, teacher, TrainConfig.from_config(a.training, "cosine", 0),
            device=torch.device("cpu"), weights_out=path.parent / "w.safetensors",
            metrics_out=path.parent / "m.csv", meta_out=path.parent / "m.json",
            checkpoint=path, callback=lambda _e, _s: signal.raise_signal(signal.SIGUSR1),
            progress_bar=False,
        )  # fmt: skip


def test_flipped_byte_in_checkpoint_tensor_refuses_resume(art: Artifacts, tmp_path: Path) -> None:
    """One byte of one weight changes after the checkpoint was written; the file is still a
    valid zip that torch.load reads. Resuming would finish from damaged weights, so the
    job refuses, naming the file and ``rm`` as the fix, and leaves the file for inspection."""
    ckpt = tmp_path / "ckpt" / "seed0.pt"
    ckpt.parent.mkdir()
    _checkpoint_of_this_run(art, ckpt)
    state = torch.load(ckpt, weights_only=True)
    name = max(state["model"], key=lambda k: state["model"][k].numel())
    weight = state["model"][name].contiguous()
    raw = weight.view(-1).view(torch.uint8)
    raw[raw.numel() // 2] ^= 0x10
    state["model"][name] = weight
    torch.save(state, ckpt)  # a valid zip again, the stored digest unchanged
    before = ckpt.read_bytes()
    with pytest.raises(ArtifactError) as err:
        _train(art, ckpt)
    message = str(err.value)
    assert str(ckpt) in message and f"rm {ckpt}" in message and "digest" in message
    assert files_under(art.out) == []
    assert ckpt.read_bytes() == before


def test_intact_checkpoint_still_resumes(art: Artifacts, tmp_path: Path) -> None:
    """Control for the digest: an untouched checkpoint resumes and the job finishes."""
    ckpt = tmp_path / "ckpt" / "seed0.pt"
    ckpt.parent.mkdir()
    _checkpoint_of_this_run(art, ckpt)
    _train(art, ckpt)
    assert (art.out / "model.safetensors").is_file()


def test_disk_full_while_checkpointing_names_the_checkpoint(
    art: Artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while the checkpoint is written: the error says so and names the file
    (torch's own writer said "inline_container.cc:672 unexpected pos")."""
    import errno

    from kdspectra.training import checkpoint as module

    class FullDisk(io.BytesIO):
        def write(self, _data: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module, "open", lambda *_a, **_k: FullDisk(), raising=False)
    ckpt = tmp_path / "ckpt" / "seed0.pt"
    with pytest.raises(ArtifactError) as err:
        _train(art, ckpt)
    assert "no space left on device" in str(err.value) and str(ckpt) in str(err.value)
    assert not ckpt.exists() and not list(ckpt.parent.glob(".*kdtmp*"))


def _spectrum_of_trained_student(a: Artifacts) -> dict[str, Any]:
    """The spectrum stage of a student that training really produced (its meta.json holds
    the digest of the teacher it was trained on), compared with that teacher's files."""
    stages.measure_model(
        {
            "test": a.files["student_test"],
            "teacher": a.files["teacher_test"],
            "teacher_train": a.files["teacher_train"],
            "labels": a.data / "test_labels.npy",
            "meta": a.out / "meta.json",
        },
        {"values": a.out / "spectrum" / "values.parquet", "stats": a.out / "spectrum" / "s.json"},
        {},
    )
    return json.loads((a.out / "spectrum" / "s.json").read_text())


def test_teacher_test_rows_edited_in_place_are_refused_at_measurement(tmp_path: Path) -> None:
    """The teacher's *test* embeddings (its own ER, every student's reference) change in
    place with the mtime put back: measuring the teacher compares the file with the digest
    its extraction recorded and refuses, naming the file and the meta.json. Train stays
    unchecked when unchanged (control), and an old extraction without digests passes."""
    from kdspectra.stages.evaluate import check_teacher_files

    rng = np.random.default_rng(0)
    files = {s: tmp_path / f"{s}.npy" for s in ("train", "test")}
    for split, n in (("train", 40), ("test", 30)):
        save_npy(files[split], rng.standard_normal((n, 8)).astype(np.float32))
    meta = tmp_path / "meta.json"
    save_json(meta, {"digests": {s: array_digest(load_embeddings(f)) for s, f in files.items()}})
    check_teacher_files(meta, files)  # untouched: passes
    stat = files["test"].stat()
    emb = np.load(files["test"])
    emb[2, 5] += 0.5
    np.save(files["test"], emb)
    os.utime(files["test"], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ArtifactError) as err:
        check_teacher_files(meta, files)
    assert str(files["test"]) in str(err.value) and str(meta) in str(err.value)
    assert "test digest" in str(err.value)
    save_json(meta, {"model": "an extraction from before the digests"})
    check_teacher_files(meta, files)


def test_teacher_edited_after_training_is_refused_naming_both_files(art: Artifacts) -> None:
    """The teacher's train embeddings change in place after the student was trained (one
    value, the mtime put back, so Snakemake sees nothing): comparing the student with a
    teacher it never saw is refused, naming the teacher file and the student's meta.json.
    The untouched teacher passes (control)."""
    _train(art)
    assert "cos_to_teacher" in _spectrum_of_trained_student(art)
    teacher = art.files["teacher_train"]
    stat = teacher.stat()
    emb = np.load(teacher)
    emb[3, 1] += 1.0
    np.save(teacher, emb)
    os.utime(teacher, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    shutil.rmtree(art.out / "spectrum")
    with pytest.raises(ArtifactError) as err:
        _spectrum_of_trained_student(art)
    assert str(teacher) in str(err.value) and str(art.out / "meta.json") in str(err.value)
    assert not (art.out / "spectrum").exists()
