"""CIFAR binary archives written byte by byte in tmp_path, served through file:// URLs."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdspectra.data.datasets import FORMATS, OUTPUTS, prepare_dataset, write_cifar_archive
from kdspectra.data.download import download
from kdspectra.errors import ConfigError, DataError
from kdspectra.io import load_npy
from kdspectra.registry import TRAIN_IMAGES

CIFAR10 = {
    "top": "cifar-10-batches-bin",
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
    "names": "batches.meta.txt",
    "label_bytes": 1,
    "classes": 10,
}
CIFAR100 = {
    "top": "cifar-100-binary",
    "train": ["train.bin"],
    "test": ["test.bin"],
    "names": "fine_label_names.txt",
    "label_bytes": 2,
    "classes": 100,
}
SPECS = {"cifar10-binary": CIFAR10, "cifar100-binary": CIFAR100}
PER_MEMBER = {"cifar10-binary": 4, "cifar100-binary": 12}


def make_records(rng: np.random.Generator, n: int, spec: dict) -> tuple[bytes, np.ndarray]:
    """n raw records (label byte(s), then R, G, B planes) and the uint8 N×3072 pixel bytes."""
    labels = rng.integers(0, spec["classes"], size=n, dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    head = (
        [labels[:, None]] if spec["label_bytes"] == 1 else [labels[:, None] // 5, labels[:, None]]
    )
    return np.concatenate([*head, pixels], axis=1).tobytes(), labels


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def build_archive(
    path: Path,
    fmt: str,
    *,
    seed: int = 0,
    override: dict[str, bytes | None] | None = None,
    extra: list[tarfile.TarInfo] | None = None,
    top: str | None = None,
) -> dict[str, tuple[bytes, np.ndarray]]:
    """Write an archive in the official layout; ``override`` replaces (bytes) or drops (None)
    expected members, ``extra`` appends hostile members. Returns each member's records."""
    spec, rng = SPECS[fmt], np.random.default_rng(seed)
    members: dict[str, bytes] = {}
    truth = {}
    for name in spec["train"] + spec["test"]:
        members[name], labels = make_records(rng, PER_MEMBER[fmt], spec)
        truth[name] = (members[name], labels)
    members[spec["names"]] = "".join(f"class_{i}\n" for i in range(spec["classes"])).encode()
    members[spec["names"]] += b"\n\n"  # the official files end with blank lines
    members.update(override or {})
    top = spec["top"] if top is None else top
    with tarfile.open(path, "w:gz") as tar:
        add_bytes(tar, f"{top}/readme.html", b"<html></html>")
        for name, data in members.items():
            if data is not None:
                add_bytes(tar, f"{top}/{name}", data)
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return truth


def served(tmp_path: Path, fmt: str, **kwargs: object) -> tuple[Path, dict]:
    """Build an archive, then fetch it through a file:// URL with its md5 (the real path)."""
    src = tmp_path / "mirror" / f"{fmt}.tar.gz"
    src.parent.mkdir(exist_ok=True)
    truth = build_archive(src, fmt, **kwargs)
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    archive = download(src.as_uri(), md5, tmp_path / "downloads" / src.name, progress=False)
    return archive, truth


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def expect_failure(archive: Path, fmt: str, outdir: Path, *needles: str) -> None:
    with pytest.raises(DataError) as info:
        prepare_dataset(fmt, archive, outdir)
    for needle in needles:
        assert needle in str(info.value)
    assert listing(outdir) == []


@pytest.mark.parametrize("fmt", ["cifar10-binary", "cifar100-binary"])
def test_cifar_round_trip(fmt: str, tmp_path: Path) -> None:
    archive, truth = served(tmp_path, fmt)
    out = tmp_path / "data"
    info = prepare_dataset(fmt, archive, out)
    spec = SPECS[fmt]
    n_train = PER_MEMBER[fmt] * len(spec["train"])
    assert info["train"] == n_train and info["test"] == PER_MEMBER[fmt]
    assert listing(out) == sorted(OUTPUTS)
    x = load_npy(out / "train_images.npy", dtype=np.uint8, ndim=4)
    y = load_npy(out / "train_labels.npy", dtype=np.int64, rows=n_train)
    assert x.shape == (n_train, 32, 32, 3)
    expected_labels = np.concatenate([truth[m][1] for m in spec["train"]])
    np.testing.assert_array_equal(y, expected_labels)  # CIFAR-100: the fine byte
    # Image 5 is record 1 of the second train member (CIFAR-10) or record 5 of train.bin.
    member, rec = (spec["train"][1], 1) if fmt == "cifar10-binary" else ("train.bin", 5)
    raw = truth[member][0]
    start = rec * (spec["label_bytes"] + 3072) + spec["label_bytes"]
    for channel, row, col in [(0, 0, 0), (1, 3, 17), (2, 31, 30), (0, 12, 31)]:
        byte = raw[start + channel * 1024 + row * 32 + col]
        assert x[5, row, col, channel] == byte, (channel, row, col)
    test_x = load_npy(out / "test_images.npy", dtype=np.uint8, ndim=4)
    raw_test = np.frombuffer(truth[spec["test"][0]][0], np.uint8).reshape(PER_MEMBER[fmt], -1)
    planes = raw_test[:, spec["label_bytes"] :].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(test_x, planes)
    classes = (out / "classes.txt").read_text().splitlines()
    assert classes == [f"class_{i}" for i in range(spec["classes"])] == info["classes"]


@pytest.mark.parametrize("fmt", ["cifar10-binary", "cifar100-binary"])
def test_library_writer_round_trips(fmt: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n_classes = SPECS[fmt]["classes"]
    arrays = {
        "train_images": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
        "train_labels": rng.integers(0, n_classes, 10).astype(np.int64),
        "test_images": rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
        "test_labels": rng.integers(0, n_classes, 3).astype(np.int64),
    }
    classes = [f"c{i}" for i in range(n_classes)]
    archive = write_cifar_archive(tmp_path / "a.tar.gz", fmt, classes=classes, **arrays)
    prepare_dataset(fmt, archive, tmp_path / "out")
    for name, array in arrays.items():
        np.testing.assert_array_equal(np.load(tmp_path / "out" / f"{name}.npy"), array)


def test_top_folder_name_is_free_but_basenames_must_match(tmp_path: Path) -> None:
    build_archive(tmp_path / "a.tar.gz", "cifar100-binary", top="./mirror/renamed")
    info = prepare_dataset("cifar100-binary", tmp_path / "a.tar.gz", tmp_path / "out")
    assert info["train"] == PER_MEMBER["cifar100-binary"]


def test_truncated_member_names_the_member(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    records, _ = make_records(rng, 3, CIFAR10)
    archive, _ = served(tmp_path, "cifar10-binary", override={"data_batch_3.bin": records[:-100]})
    expect_failure(archive, "cifar10-binary", tmp_path / "out", "data_batch_3.bin", "3073")


def test_missing_member_names_member_and_archive(tmp_path: Path) -> None:
    archive, _ = served(tmp_path, "cifar100-binary", override={"test.bin": None})
    expect_failure(archive, "cifar100-binary", tmp_path / "out", "test.bin", str(archive))


def test_traversal_member_is_ignored_and_nothing_escapes(tmp_path: Path) -> None:
    escape = tarfile.TarInfo("../escape.bin")
    escape.size = 3073
    absolute = tarfile.TarInfo(str(tmp_path / "abs.bin"))
    absolute.size = 10
    work = tmp_path / "work"
    work.mkdir()
    archive, _ = served(work, "cifar10-binary", extra=[escape, absolute])
    out = work / "data" / "cifar10"
    prepare_dataset("cifar10-binary", archive, out)
    assert listing(out) == sorted(OUTPUTS)
    assert listing(tmp_path) == ["work"]
    assert listing(work) == ["data", "downloads", "mirror"]


@pytest.mark.parametrize("name", ["cifar-100-binary/../test.bin", "/cifar-100-binary/test.bin"])
def test_unsafe_path_for_an_expected_member_is_rejected(name: str, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    build_archive(archive, "cifar100-binary", override={"test.bin": None})
    with tarfile.open(archive, "r:gz") as tar:
        kept = [(m, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in kept:
            tar.addfile(member, io.BytesIO(data))
        add_bytes(tar, name, bytes(3074))
    expect_failure(archive, "cifar100-binary", tmp_path / "out", name, "unsafe path")


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_link_or_device_in_place_of_a_member_is_rejected(kind: bytes, tmp_path: Path) -> None:
    link = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
    link.type = kind
    link.linkname = "/etc/passwd" if kind != tarfile.CHRTYPE else ""
    archive, _ = served(tmp_path, "cifar10-binary", override={"test_batch.bin": None}, extra=[link])
    expect_failure(archive, "cifar10-binary", tmp_path / "out", "test_batch.bin")


def test_duplicate_member_is_rejected(tmp_path: Path) -> None:
    dup = tarfile.TarInfo("other/test.bin")
    dup.size = 3074
    archive, _ = served(tmp_path, "cifar100-binary", extra=[dup])
    expect_failure(archive, "cifar100-binary", tmp_path / "out", "test.bin", "more than once")


def test_label_out_of_range_is_rejected(tmp_path: Path) -> None:
    bad = bytearray(3073 * 2)
    bad[3073] = 10  # second record's label byte
    archive, _ = served(tmp_path, "cifar10-binary", override={"test_batch.bin": bytes(bad)})
    expect_failure(archive, "cifar10-binary", tmp_path / "out", "test_batch.bin", "label 10")


def test_wrong_number_of_class_names_is_rejected(tmp_path: Path) -> None:
    archive, _ = served(tmp_path, "cifar10-binary", override={"batches.meta.txt": b"a\nb\n"})
    expect_failure(archive, "cifar10-binary", tmp_path / "out", "batches.meta.txt", "expected 10")


def test_not_an_archive_is_a_data_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"\x1f\x8b not really gzip")
    expect_failure(bogus, "cifar10-binary", tmp_path / "out", str(bogus))
    expect_failure(tmp_path / "absent.tar.gz", "cifar10-binary", tmp_path / "out", "absent")


def test_unknown_format_and_missing_archive_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cifar10-python"):
        prepare_dataset("cifar10-python", None, tmp_path / "out")
    with pytest.raises(ConfigError, match="archive"):
        prepare_dataset("cifar10-binary", None, tmp_path / "out")
    assert listing(tmp_path) == []


def test_failed_prepare_keeps_no_partial_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    archive, _ = served(tmp_path, "cifar10-binary")
    out = tmp_path / "out"
    real_save = np.save
    calls = []

    def save_then_fail(fh: object, arr: np.ndarray, **kw: object) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        real_save(fh, arr, **kw)

    monkeypatch.setattr(np, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset("cifar10-binary", archive, out)
    assert listing(out) == []


def test_digits_prepared_format(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    info = prepare_dataset("sklearn-digits", None, out)
    assert (info["train"], info["test"]) == (1437, 360)
    assert info["train"] == TRAIN_IMAGES["sklearn-digits"]  # what the config check bounds
    x_tr = load_npy(out / "train_images.npy", dtype=np.uint8, ndim=4)
    x_te = load_npy(out / "test_images.npy", dtype=np.uint8, ndim=4)
    y_tr = load_npy(out / "train_labels.npy", dtype=np.int64, rows=1437)
    y_te = load_npy(out / "test_labels.npy", dtype=np.int64, rows=360)
    assert x_tr.shape == (1437, 32, 32, 3) and x_te.shape == (360, 32, 32, 3)
    assert (x_tr[..., 0] == x_tr[..., 1]).all() and (x_tr[..., 1] == x_tr[..., 2]).all()
    assert x_tr.max() > 200 and x_tr.min() == 0
    assert (out / "classes.txt").read_text().split() == [str(d) for d in range(10)]
    # Stratified: every class's share in test is its share overall (±1 image).
    counts_tr, counts_te = np.bincount(y_tr, minlength=10), np.bincount(y_te, minlength=10)
    np.testing.assert_allclose(counts_te, (counts_tr + counts_te) * 0.2, atol=1)
    # Deterministic: a second preparation is byte-identical.
    prepare_dataset("sklearn-digits", None, tmp_path / "again")
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_digits_are_the_sklearn_digits_upsampled() -> None:
    from sklearn.datasets import load_digits

    from kdspectra.data.datasets import upsample_digits

    digits = load_digits()
    up = upsample_digits(digits.images[:20]).astype(np.float32)
    # Average-pooling the 32×32 back to 8×8 recovers the source up to interpolation blur.
    pooled = up[..., 0].reshape(20, 8, 4, 8, 4).mean(axis=(2, 4))
    corr = np.corrcoef(pooled.ravel(), digits.images[:20].ravel())[0, 1]
    assert corr > 0.95


def test_formats_constant() -> None:
    assert FORMATS == ("cifar10-binary", "cifar100-binary", "sklearn-digits")


# ---------------------------------------------------------------- data keyed by content

REPO = Path(__file__).resolve().parents[1]


def prepare_only(work: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the workflow's data stage alone (download + prepare) for ``config`` in ``work``."""
    from conftest import run_snakemake

    args = ("--configfile", str(config), "--cores", "1", "--until", "prepare_dataset", *args)
    return run_snakemake(work, *args, timeout=300)


def synth_config(
    tmp_path: Path, run: str, seed: int, archive: Path | None = None
) -> tuple[Path, str]:
    """The fault tests' mini config under run name ``run``, its dataset ``synth`` being an
    archive of its own (``seed``) or ``archive``; returns the config file and the md5."""
    if archive is None:
        archive = tmp_path / "mirror" / f"synth-{seed}.tar.gz"
        archive.parent.mkdir(exist_ok=True)
        build_archive(archive, "cifar10-binary", seed=seed)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    cfg = yaml.safe_load((REPO / "tests" / "faults" / "mini_config.yaml").read_text())
    cfg["name"] = run
    cfg["datasets"]["synth"].update(url=archive.as_uri(), md5=md5)
    path = tmp_path / f"{run}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, md5


@pytest.mark.workflow
@pytest.mark.slow
def test_two_archives_under_one_name_coexist(tmp_path: Path) -> None:
    """Two configs call different archives `synth` in one directory: each gets its own
    prepared data and download, and neither makes the other redo its work. A third that
    fetches the first archive from another mirror (same md5) reuses its data."""
    work = tmp_path / "work"
    work.mkdir()
    (a, md5_a), (b, md5_b) = synth_config(tmp_path, "a", 0), synth_config(tmp_path, "b", 1)
    for config in (a, b):
        proc = prepare_only(work, config)
        assert proc.returncode == 0, proc.stderr[-4000:]
    dirs = {f"synth-{md5_a}", f"synth-{md5_b}"}
    assert listing(work / "results" / "data") == sorted(dirs)
    assert listing(work / "results" / "downloads") == sorted(f"{d}.tar.gz" for d in dirs)
    for md5 in (md5_a, md5_b):
        source = json.loads((work / f"results/data/synth-{md5}/source.json").read_text())
        assert source["md5"] == md5
    first = load_npy(work / f"results/data/synth-{md5_a}/train_images.npy")
    second = load_npy(work / f"results/data/synth-{md5_b}/train_images.npy")
    assert not np.array_equal(first, second)
    mirror = tmp_path / "mirror2" / "synth.tar.gz"
    mirror.parent.mkdir()
    shutil.copyfile(a_archive := tmp_path / "mirror" / "synth-0.tar.gz", mirror)
    c, md5_c = synth_config(tmp_path, "c", 0, archive=mirror)
    assert md5_c == md5_a and a_archive.as_uri() not in c.read_text()
    for config in (a, b, c):
        proc = prepare_only(work, config, "-n")
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert re.search(r"^total\s+0$", proc.stdout, re.M), proc.stdout[-3000:]


@pytest.mark.workflow
def test_checksum_mismatch_is_not_retried_by_snakemake(tmp_path: Path) -> None:
    """`--retries 2` (the SLURM profile's setting) must not repeat a deterministic failure:
    the same bytes would fail their md5 again."""
    work = tmp_path / "work"
    work.mkdir()
    config, _ = synth_config(tmp_path, "a", 0)
    cfg = yaml.safe_load(config.read_text())
    # A wrong md5 that looks like a real one: "0" * 32 would trip Snakemake's periodic-
    # wildcard guard (20+ repeats) on the data key before the download ever ran.
    cfg["datasets"]["synth"]["md5"] = hashlib.md5(b"not this archive").hexdigest()
    config.write_text(yaml.safe_dump(cfg))
    proc = prepare_only(work, config, "--retries", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "md5 mismatch" in out, out[-4000:]
    assert out.count("Error in rule download:") == 1, out[-4000:]  # one attempt
    assert listing(work / "results" / "downloads") == []
