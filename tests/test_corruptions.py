"""CIFAR-10-C / CIFAR-100-C archives written in the published layout in tmp_path, served
through file:// URLs, read back and scored; hostile and wrong archives refused."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from kdspectra.data import corruptions as C
from kdspectra.data.corruptions import (
    BENCHMARK_15,
    CORRUPTIONS,
    FAMILIES,
    SOURCES,
    check_names,
    check_severities,
    iter_corruption_sets,
    score_corruptions,
    write_corruption_archive,
)
from kdspectra.data.download import download, validate_source
from kdspectra.errors import ConfigError, DataError
from kdspectra.metrics.probe import fit_probe

N, CLASSES = 30, 3
TOP = "CIFAR-10-C"


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """A separable toy dataset: each class is a brightness band, plus pixel jitter."""
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, CLASSES, n)
        base = (40 + 80 * y)[:, None, None, None]
        x = np.clip(base + rng.integers(-60, 60, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    train_x, train_y = split(120)
    test_x, test_y = split(N)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


PROJECTION = np.random.default_rng(1).standard_normal((32 * 32 * 3, 8)).astype(np.float32)


def embed(images: np.ndarray) -> np.ndarray:
    """A tiny deterministic model: flatten, scale to [0, 1], fixed random projection."""
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0) @ PROJECTION


def corrupted_sets(test_x: np.ndarray, seed: int = 2) -> dict[str, np.ndarray]:
    """Two corruptions of the test split, each 5 severities stacked like the real files."""
    rng = np.random.default_rng(seed)
    fog = rng.integers(0, 256, (5 * N, 32, 32, 3), dtype=np.uint8)
    noise = [
        np.clip(test_x + rng.normal(0, 255 * s, test_x.shape), 0, 255).astype(np.uint8)
        for s in C.SEVERITY_SIGMA
    ]
    return {"fog": fog, "gaussian_noise": np.concatenate(noise)}


def served(tmp_path: Path, src: Path) -> Path:
    """Fetch ``src`` through a file:// URL with its md5, as the pipeline does."""
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    return download(src.as_uri(), md5, tmp_path / "downloads" / src.name, progress=False)


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def add_member(
    tar: tarfile.TarFile, name: str, data: bytes | None = None, **info_attrs: object
) -> None:
    info = tarfile.TarInfo(name)
    for key, value in info_attrs.items():
        setattr(info, key, value)
    if data is None:
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def npy_bytes(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


# --------------------------------------------------------------------------- names


def test_names_families_and_benchmark_partition_the_19():
    assert len(CORRUPTIONS) == 19 and list(CORRUPTIONS) == sorted(CORRUPTIONS)
    assert len(BENCHMARK_15) == 15
    assert set(CORRUPTIONS) - set(BENCHMARK_15) == {
        "gaussian_blur",
        "saturate",
        "spatter",
        "speckle_noise",
    }
    members = [name for family in FAMILIES.values() for name in family]
    assert sorted(members) == sorted(CORRUPTIONS)  # every corruption in exactly one family
    assert C.SEVERITY_SIGMA == (0.04, 0.06, 0.08, 0.09, 0.10)


def test_unknown_name_names_the_key_and_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        check_names(["fog", "gausian_noise"], "evaluation.corruptions")
    message = str(err.value)
    assert "evaluation.corruptions" in message and "gausian_noise" in message
    assert all(name in message for name in CORRUPTIONS)
    assert check_names(["zoom_blur", "fog"]) == ("zoom_blur", "fog")


@pytest.mark.parametrize("bad", [[0], [6], [], [1, 1], [True], ["2"]])
def test_bad_severities_are_refused(bad):
    with pytest.raises(ConfigError, match=r"evaluation\.corruption_severities"):
        check_severities(bad)


def test_sources_are_valid_download_sources():
    assert set(SOURCES) == {"cifar10", "cifar100"}
    for source in SOURCES.values():
        validate_source(source["url"], source["md5"])
    assert SOURCES["cifar10"]["url"].endswith("/2535967/files/CIFAR-10-C.tar")


# --------------------------------------------------------------------------- reading


def test_archive_served_through_file_url_reads_back_exactly(tmp_path, data):
    sets = corrupted_sets(data["test_x"])
    src = write_corruption_archive(
        tmp_path / "src" / "CIFAR-10-C.tar", TOP, sets, np.tile(data["test_y"], 5)
    )
    archive = served(tmp_path, src)
    got = list(iter_corruption_sets(archive, ["gaussian_noise", "fog"], [5, 2], data["test_y"]))
    assert [(c, s) for c, s, _ in got] == [
        ("gaussian_noise", 5),
        ("gaussian_noise", 2),
        ("fog", 5),
        ("fog", 2),
    ]
    for name, severity, images in got:
        assert images.dtype == np.uint8 and images.shape == (N, 32, 32, 3)
        np.testing.assert_array_equal(images, sets[name][(severity - 1) * N : severity * N])


def test_cifar100_dir_and_any_integer_label_dtype_are_accepted(tmp_path, data):
    sets = {"snow": np.zeros((5 * N, 32, 32, 3), np.uint8)}
    labels = np.tile(data["test_y"], 5).astype(np.uint8)
    archive = write_corruption_archive(tmp_path / "c.tar", "CIFAR-100-C", sets, labels)
    assert len(list(iter_corruption_sets(archive, ["snow"], [1, 2, 3, 4, 5], data["test_y"]))) == 5


def test_members_are_loaded_one_at_a_time(tmp_path, data, monkeypatch):
    """The iterator yields a corruption's severities before loading the next member."""
    sets = corrupted_sets(data["test_x"])
    archive = write_corruption_archive(tmp_path / "c.tar", TOP, sets, np.tile(data["test_y"], 5))
    loaded: list[tuple[int, ...]] = []
    real_load = np.load

    def recording_load(*args, **kwargs):
        array = real_load(*args, **kwargs)
        loaded.append(array.shape)
        return array

    monkeypatch.setattr(np, "load", recording_load)
    it = iter_corruption_sets(archive, ["fog", "gaussian_noise"], [1, 2, 3, 4, 5], data["test_y"])
    next(it)
    assert loaded == [(5 * N,), (5 * N, 32, 32, 3)]  # labels, then fog only
    for _ in range(4):
        next(it)
    assert len(loaded) == 2  # fog's five severities come from the one load
    next(it)
    assert len(loaded) == 3


# --------------------------------------------------------------------------- scoring


def test_clean_images_score_exactly_the_clean_accuracy(tmp_path, data):
    probe = fit_probe(embed(data["train_x"]), data["train_y"])
    clean = probe.accuracy(embed(data["test_x"]), data["test_y"])
    sets = {"brightness": np.tile(data["test_x"], (5, 1, 1, 1)), **corrupted_sets(data["test_x"])}
    archive = served(
        tmp_path,
        write_corruption_archive(tmp_path / "c.tar", TOP, sets, np.tile(data["test_y"], 5)),
    )
    names = ["brightness", "gaussian_noise", "fog"]
    knn_calls = []

    def knn(emb: np.ndarray, labels: np.ndarray) -> float:
        knn_calls.append((emb.shape, labels is data["test_y"]))
        return 0.25

    frame = score_corruptions(
        embed,
        probe,
        iter_corruption_sets(archive, names, [1, 2, 3, 4, 5], data["test_y"]),
        data["test_y"],
        knn=knn,
    )
    assert list(frame.columns) == ["corruption", "severity", "accuracy", "knn_accuracy"]
    assert len(frame) == 15 and knn_calls == [((N, 8), True)] * 15
    assert (frame.loc[frame.corruption == "brightness", "accuracy"] == clean).all()
    assert clean > 0.9  # the toy task is learnable, so "equal to clean" is not trivially 0
    # random pixels carry no class: the probe falls to about chance, far below clean
    assert frame.loc[frame.corruption == "fog", "accuracy"].mean() < clean - 0.3
    noise = frame[frame.corruption == "gaussian_noise"]
    for severity, acc in zip(noise.severity, noise.accuracy, strict=True):
        rows = sets["gaussian_noise"][(severity - 1) * N : severity * N]
        assert acc == probe.accuracy(embed(rows), data["test_y"])


def test_score_without_knn_has_no_knn_column(tmp_path, data):
    probe = fit_probe(embed(data["train_x"]), data["train_y"])
    sets = [("fog", 3, data["test_x"])]
    frame = score_corruptions(embed, probe, sets, data["test_y"])
    assert list(frame.columns) == ["corruption", "severity", "accuracy"]
    assert frame.severity.dtype == np.int64


# --------------------------------------------------------------------------- bad archives


def _good_members(data: dict[str, np.ndarray]) -> dict[str, bytes]:
    return {
        f"{TOP}/fog.npy": npy_bytes(np.zeros((5 * N, 32, 32, 3), np.uint8)),
        f"{TOP}/labels.npy": npy_bytes(np.tile(data["test_y"], 5)),
    }


def _write(path: Path, members: dict[str, bytes], extra=()) -> Path:
    with tarfile.open(path, "w:") as tar:
        for name, blob in members.items():
            add_member(tar, name, blob)
        for name, attrs in extra:
            add_member(tar, name, **attrs)
    return path


def _wrong_labels(path: Path, data) -> Path:
    members = _good_members(data)
    cifar100 = np.random.default_rng(5).integers(0, 100, N)
    members[f"{TOP}/labels.npy"] = npy_bytes(np.tile(cifar100, 5))
    return _write(path, members)


def _labels_in_another_order(path: Path, data) -> Path:
    members = _good_members(data)
    members[f"{TOP}/labels.npy"] = npy_bytes(np.repeat(data["test_y"], 5))
    return _write(path, members)


def _truncated_file(path: Path, data) -> Path:
    members = _good_members(data)
    _write(path, members)  # labels first, fog.npy last
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # cut inside fog.npy's data
    return path


def _truncated_npy(path: Path, data) -> Path:
    members = _good_members(data)
    members[f"{TOP}/fog.npy"] = members[f"{TOP}/fog.npy"][:-1000]
    return _write(path, members)


def _missing(path: Path, data) -> Path:
    members = _good_members(data)
    del members[f"{TOP}/fog.npy"]
    return _write(path, members)


def _traversal(path: Path, data) -> Path:
    return _write(path, {**_good_members(data), "../x.npy": npy_bytes(np.zeros(3))})


def _symlink(path: Path, data) -> Path:
    members = _good_members(data)
    del members[f"{TOP}/fog.npy"]
    link = {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}
    return _write(path, members, extra=[(f"{TOP}/fog.npy", link)])


def _hardlink(path: Path, data) -> Path:
    link = {"type": tarfile.LNKTYPE, "linkname": f"{TOP}/fog.npy"}
    return _write(path, _good_members(data), extra=[(f"{TOP}/snow.npy", link)])


def _pickled(path: Path, data) -> Path:
    members = _good_members(data)
    members[f"{TOP}/fog.npy"] = npy_bytes(np.array([{"x": 1}, None], dtype=object), True)
    return _write(path, members)


def _wrong_shape(path: Path, data) -> Path:
    members = _good_members(data)
    members[f"{TOP}/fog.npy"] = npy_bytes(np.zeros((4 * N, 32, 32, 3), np.uint8))
    return _write(path, members)


def _wrong_dtype(path: Path, data) -> Path:
    members = _good_members(data)
    members[f"{TOP}/fog.npy"] = npy_bytes(np.zeros((5 * N, 32, 32, 3), np.float32))
    return _write(path, members)


def _gzipped(path: Path, data) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in _good_members(data).items():
            add_member(tar, name, blob)
    return path


BAD = {
    "wrong_labels": (_wrong_labels, r"labels\.npy .* not the prepared test labels"),
    "labels_order": (_labels_in_another_order, r"repeated 5 times in order"),
    "truncated_file": (_truncated_file, r"'CIFAR-10-C/fog\.npy' is truncated"),
    "truncated_npy": (_truncated_npy, r"'CIFAR-10-C/fog\.npy' is truncated"),
    "missing": (_missing, r"missing member\(s\) \['fog\.npy'\].*\['fog'\]"),
    "traversal": (_traversal, r"'\.\./x\.npy' has an unsafe path"),
    "symlink": (_symlink, r"'CIFAR-10-C/fog\.npy' is a link"),
    "hardlink": (_hardlink, r"'CIFAR-10-C/snow\.npy' is a link"),
    "pickled": (_pickled, r"'CIFAR-10-C/fog\.npy' holds a pickled object array"),
    "wrong_shape": (_wrong_shape, r"fog\.npy'.*expected uint8 \(150, 32, 32, 3\)"),
    "wrong_dtype": (_wrong_dtype, r"fog\.npy'.*found float32"),
    "gzipped": (_gzipped, r"not a readable uncompressed tar"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_archive_is_refused_naming_it_and_leaves_no_file(tmp_path, data, case):
    build, pattern = BAD[case]
    (tmp_path / "src").mkdir()
    src = build(tmp_path / "src" / f"{case}.tar", data)
    archive = served(tmp_path, src)
    before = tree(tmp_path)
    with pytest.raises(DataError, match=pattern) as err:
        for _ in iter_corruption_sets(archive, ["fog"], [1, 2, 3, 4, 5], data["test_y"]):
            pytest.fail("a bad archive must fail before its first set")  # pragma: no cover
    assert str(archive) in str(err.value)
    assert tree(tmp_path) == before


def test_writer_refuses_unknown_names_and_writes_nothing(tmp_path, data):
    sets = {"fgo": np.zeros((5 * N, 32, 32, 3), np.uint8)}
    with pytest.raises(ConfigError, match="fgo"):
        write_corruption_archive(tmp_path / "c.tar", TOP, sets, np.tile(data["test_y"], 5))
    assert tree(tmp_path) == set()


def test_missing_archive_is_a_data_error(tmp_path, data):
    with pytest.raises(DataError, match="not found"):
        list(iter_corruption_sets(tmp_path / "nope.tar", ["fog"], [1], data["test_y"]))
