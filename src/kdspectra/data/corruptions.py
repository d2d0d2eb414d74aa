"""CIFAR-10-C / CIFAR-100-C: read the corruption archives safely and score a model on them.

The paper's robustness claim rests on one corruption (Gaussian pixel noise). The benchmark
the field uses for such a claim is Hendrycks & Dietterich (ICLR 2019): 19 corruptions at
5 severities, shipped as an **uncompressed** tar holding ``<DIR>/<corruption>.npy``
(uint8, (5·N, 32, 32, 3); severity k+1 in rows [k·N, (k+1)·N)) and ``<DIR>/labels.npy``
((5·N,) integers: the test labels once per severity). ``DIR`` is ``CIFAR-10-C`` or
``CIFAR-100-C`` (``SYNTHETIC-C`` for fixtures; :data:`ARCHIVE_DIRS`); which one it is does
not decide anything: the labels check below is what ties an archive to a dataset.

Reading. The real archives are 2.9 GB, so the tar is never held in memory whole nor
extracted: one pass over the headers (an uncompressed tar is seekable, so this skips the
data) checks every member and every requested ``.npy`` header, so a bad archive fails in
seconds, before hours of embedding; then :func:`iter_corruption_sets` loads one
corruption member at a time (≤ 150 MB) and yields its severities. Only the expected
members are read, with ``np.load(allow_pickle=False)``; any member that is a link, a
device, or has an absolute or ``..`` path makes the whole archive refused
(:mod:`kdspectra.data.archives`), whether we would read it or not: such an archive is not the
published one. N is derived from ``labels.npy``, never assumed to be 10,000, so tests and
demos use small archives written by :func:`write_corruption_archive`.

Labels. ``labels.npy`` must equal ``np.tile(test_labels, 5)``: a CIFAR-100-C archive
under a CIFAR-10 run (or a test split prepared in another order) must fail with the
archive's name, not score 1 %.

Scoring. :func:`score_corruptions` is model-agnostic: the caller passes an ``embed``
callable (teacher or student, fp32) and the probe fitted on clean train embeddings, the
same one the Gaussian-noise stage uses, so the accuracies are directly comparable with
the noise curve. Cost: 19 corruptions × 5 severities × N images is 19× the test split
(950,000 images for CIFAR).
"""

from __future__ import annotations

import io
import logging
import tarfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from kdspectra.data.archives import check_member, check_member_path
from kdspectra.errors import ConfigError, DataError
from kdspectra.io import atomic_path
from kdspectra.registry import CORRUPTION_SOURCES
from kdspectra.runtime.progress import Progress

log = logging.getLogger(__name__)

# All 19 corruptions of the published archives, sorted by name (the archive's file names).
CORRUPTIONS = (
    "brightness",
    "contrast",
    "defocus_blur",
    "elastic_transform",
    "fog",
    "frost",
    "gaussian_blur",
    "gaussian_noise",
    "glass_blur",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "pixelate",
    "saturate",
    "shot_noise",
    "snow",
    "spatter",
    "speckle_noise",
    "zoom_blur",
)
# The four that Hendrycks & Dietterich released as extra (validation) corruptions: the
# ICLR paper's benchmark mean (mCE) is over the other 15.
EXTRA = ("gaussian_blur", "saturate", "spatter", "speckle_noise")
BENCHMARK_15 = tuple(name for name in CORRUPTIONS if name not in EXTRA)
# Hendrycks & Dietterich's four families (their Figure 1 for the 15), with each extra
# corruption put in the family of its kind: speckle is a noise, Gaussian blur a blur,
# spatter a weather occlusion, saturate a digital colour change.
FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur"),
    "weather": ("snow", "frost", "fog", "brightness", "spatter"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate"),
}
SEVERITIES = (1, 2, 3, 4, 5)
# gaussian_noise at severity s adds N(0, σ²) on [0, 1] pixels with σ = SEVERITY_SIGMA[s-1]
# (Hendrycks & Dietterich's CIFAR code), i.e. our noise stage's corruption, up to uint8
# rounding: the bridge between the paper's noise curve and the benchmark.
SEVERITY_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)

# SYNTHETIC-C: the format-exact fixtures of :mod:`kdspectra.data.corruption_fixture` (built from
# a prepared test split for tests and demos; never CIFAR-C): named apart so no table or
# reader can take one for the published benchmark.
FIXTURE_DIR = "SYNTHETIC-C"
ARCHIVE_DIRS = ("CIFAR-10-C", "CIFAR-100-C", FIXTURE_DIR)
LABELS = "labels.npy"
SIDE = 32

# The published archives live in the registry (the config check reads them too).
SOURCES = CORRUPTION_SOURCES

Embed = Callable[[np.ndarray], np.ndarray]
# (test embeddings N×D, test labels N) -> accuracy in [0, 1]; the caller binds the train
# embeddings, k and temperature (e.g. a partial of ``kdspectra.metrics.probe.knn_accuracy``).
KnnScorer = Callable[[np.ndarray, np.ndarray], float]


# --------------------------------------------------------------------------- names


def check_names(names: Iterable[str], key: str = "evaluation.corruptions") -> tuple[str, ...]:
    """Return ``names`` as a tuple if all are known corruptions; else name ``key`` and list
    the known ones (a typo must fail before a 3 GB download, not after)."""
    if isinstance(names, str):
        raise ConfigError(f"{key}: expected a list of corruption names, found the string {names!r}")
    names = tuple(names)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise ConfigError(f"{key}: unknown corruption(s) {unknown}; known: {list(CORRUPTIONS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{key}: corruption names repeat: {list(names)}")
    return names


def check_severities(
    severities: Iterable[int], key: str = "evaluation.corruption_severities"
) -> tuple[int, ...]:
    """Return ``severities`` as a tuple of distinct ints in 1..5, or name ``key``."""
    values = tuple(severities)
    bad = [s for s in values if isinstance(s, bool) or not isinstance(s, int | np.integer)]
    bad += [s for s in values if s not in bad and s not in SEVERITIES]
    if bad or not values or len(set(values)) != len(values):
        raise ConfigError(
            f"{key}: expected distinct severities from {list(SEVERITIES)}, found {list(values)}"
        )
    return tuple(int(s) for s in values)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Npy:
    """Where one ``.npy`` member's array starts and what its header declares."""

    member: tarfile.TarInfo
    shape: tuple[int, ...]
    dtype: np.dtype


class _MemberStream:
    """A tar member as the plain read/seek/tell object ``np.load`` accepts.

    ``tarfile``'s member handle is an ``io.BufferedReader`` without a file descriptor;
    numpy takes such an object for a real file and fails on ``fileno()``. Exposing only
    read/seek/tell makes numpy read the array in chunks into one buffer: memory is one
    array, never the archive or a second copy.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def read(self, size: int = -1) -> bytes:
        return self._handle.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()


def _scan(tar: tarfile.TarFile, archive: Path, size: int) -> dict[str, tarfile.TarInfo]:
    """Every member checked; the regular files directly under a known DIR, by basename."""
    found: dict[str, tarfile.TarInfo] = {}
    try:
        for member in tar:
            if member.isdir():
                check_member_path(member, archive)
                continue
            check_member(member, archive)
            path = PurePosixPath(member.name)
            if len(path.parts) != 2 or path.parts[0] not in ARCHIVE_DIRS:
                continue  # a README or ._ file: never read
            if path.name in found:
                raise DataError(
                    f"{archive}: holds {path.name!r} twice ({found[path.name].name!r} and "
                    f"{member.name!r}); expected one of {list(ARCHIVE_DIRS)} only"
                )
            found[path.name] = member
    except tarfile.TarError as exc:
        last = tar.members[-1] if tar.members else None
        if last is not None and last.offset_data + last.size > size:
            raise DataError(
                f"{archive}: member {last.name!r} is truncated: its header declares "
                f"{last.size} bytes, the file ends {last.offset_data + last.size - size} "
                "bytes early"
            ) from exc
        raise DataError(f"{archive}: not a readable uncompressed tar: {exc}") from exc
    return found


def _header(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path, size: int) -> _Npy:
    """Read only the ``.npy`` header of ``member`` and check the member holds all its data."""
    where = f"{archive}: member {member.name!r}"
    if member.offset_data + member.size > size:
        raise DataError(
            f"{where} is truncated: its header declares {member.size} bytes, the file ends "
            f"{member.offset_data + member.size - size} bytes early"
        )
    handle = tar.extractfile(member)
    assert handle is not None  # regular members (checked in _scan) always have data
    with handle:
        try:
            version = np.lib.format.read_magic(handle)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0  # 2.0 and 3.0: 4-byte length
            )
            shape, fortran, dtype = read(handle)
        except (ValueError, EOFError, OSError, tarfile.TarError) as exc:
            raise DataError(f"{where} is not a readable .npy file: {exc}") from exc
        offset = handle.tell()
    if dtype.hasobject:
        raise DataError(f"{where} holds a pickled object array; refusing to unpickle it")
    if fortran:
        raise DataError(f"{where}: expected a C-ordered array, found Fortran order")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if member.size != expected:
        raise DataError(
            f"{where} is truncated or padded: its .npy header {dtype} {shape} needs "
            f"{expected} bytes, the member holds {member.size}"
        )
    return _Npy(member, tuple(shape), dtype)


def _load(tar: tarfile.TarFile, npy: _Npy, archive: Path) -> np.ndarray:
    """Load one member's array straight from the tar, never unpickling."""
    handle = tar.extractfile(npy.member)
    assert handle is not None
    try:
        with handle:
            return np.load(_MemberStream(handle), allow_pickle=False)
    except (ValueError, EOFError, OSError, tarfile.TarError) as exc:
        raise DataError(f"{archive}: member {npy.member.name!r} cannot be loaded: {exc}") from exc


def _check_labels(npy: _Npy, labels: np.ndarray, test_labels: np.ndarray, archive: Path) -> int:
    """N from ``labels.npy``; its values must be the prepared test labels, once per severity."""
    where = f"{archive}: member {npy.member.name!r}"
    shape_ok = len(npy.shape) == 1 and npy.shape[0] > 0 and npy.shape[0] % 5 == 0
    if not shape_ok or not np.issubdtype(npy.dtype, np.integer):
        raise DataError(
            f"{where}: expected integer labels of shape (5·N,), found {npy.dtype} {npy.shape}"
        )
    n = npy.shape[0] // 5
    expected = np.tile(np.asarray(test_labels), len(SEVERITIES))
    if n != len(test_labels) or not np.array_equal(labels, expected):
        raise DataError(
            f"{archive}: labels.npy ({n} per severity, classes {int(labels.min())}.."
            f"{int(labels.max())}) is not the prepared test labels ({len(test_labels)}, "
            f"classes {int(np.min(test_labels))}..{int(np.max(test_labels))}) repeated 5 "
            "times in order: is this the corruption archive of another dataset?"
        )
    return n


def _check_images(npy: _Npy, n: int, archive: Path) -> None:
    expected = (len(SEVERITIES) * n, SIDE, SIDE, 3)
    if npy.dtype != np.uint8 or npy.shape != expected:
        raise DataError(
            f"{archive}: member {npy.member.name!r}: expected uint8 {expected} (5 severities × "
            f"N = {n} from labels.npy), found {npy.dtype} {npy.shape}"
        )


def iter_corruption_sets(
    archive: str | Path,
    names: Sequence[str],
    severities: Sequence[int],
    test_labels: np.ndarray,
) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield ``(corruption, severity, uint8 N×32×32×3 images)`` in the order of ``names``
    then ``severities``, one corruption member in memory at a time.

    Before the first yield, every member of the tar and every requested ``.npy`` header is
    checked and ``labels.npy`` is compared with ``test_labels``, so a bad archive raises
    :class:`DataError` (naming the archive and member) before any embedding is spent.
    Image rows keep the order of ``test_labels``.
    """
    archive = Path(archive)
    names = check_names(names, "corruptions")
    severities = check_severities(severities, "corruption severities")
    if not archive.is_file():
        raise DataError(f"{archive}: corruption archive not found")
    size = archive.stat().st_size
    try:
        # Plain tar only (seekable: members are read in place). Closed by the ``with`` below;
        # opened apart so that only the open's errors are reworded here.
        tar = tarfile.open(archive, "r:")  # noqa: SIM115
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"{archive}: not a readable uncompressed tar: {exc}") from exc
    with tar:
        members = _scan(tar, archive, size)
        missing = [n for n in (LABELS, *(f"{c}.npy" for c in names)) if n not in members]
        if missing:
            dirs = " or ".join(f"{d}/" for d in ARCHIVE_DIRS)
            raise DataError(
                f"{archive}: missing member(s) {missing} under {dirs} "
                f"(corruptions requested: {list(names)})"
            )
        headers = {n: _header(tar, members[f"{n}.npy"], archive, size) for n in names}
        labels_npy = _header(tar, members[LABELS], archive, size)
        n = _check_labels(labels_npy, _load(tar, labels_npy, archive), test_labels, archive)
        for npy in headers.values():
            _check_images(npy, n, archive)
        for name in names:
            images = _load(tar, headers[name], archive)
            for severity in severities:
                yield name, severity, images[(severity - 1) * n : severity * n]
            del images


# --------------------------------------------------------------------------- scoring


def score_corruptions(
    embed: Embed,
    probe: Any,
    sets: Iterable[tuple[str, int, np.ndarray]],
    test_labels: np.ndarray,
    *,
    knn: KnnScorer | Mapping[str, KnnScorer] | None = None,
    total: int | None = None,
) -> pd.DataFrame:
    """Accuracy of one clean-fitted probe (and optionally kNN) on every corruption set.

    ``embed`` maps uint8 N×32×32×3 images to float32 N×D embeddings in fp32 (teacher or
    student: the caller decides; :func:`kdspectra.models.inference.embed_images` for students);
    ``probe`` is the :class:`kdspectra.metrics.probe.Probe` fitted on clean train embeddings, the
    same as the noise stage's; ``sets`` is typically :func:`iter_corruption_sets`, consumed
    lazily so only one set's embeddings exist at a time. Returns one row per set with
    columns ``corruption``, ``severity``, ``accuracy`` (fraction in [0, 1]) and, when
    ``knn`` is given, ``knn_accuracy`` (or, for a mapping column → scorer, one column per
    entry: several k on the same embeddings). ``total``: the number of sets, when known,
    for the ETA of the progress lines logged every ~10 s (one model is 95 sets).
    """
    scorers = {"knn_accuracy": knn} if callable(knn) else dict(knn or {})
    rows: list[dict[str, Any]] = []
    progress = Progress(total, desc="corruption sets", unit="set", logger=log)
    for name, severity, images in sets:
        emb = embed(images)
        row = {
            "corruption": name,
            "severity": int(severity),
            "accuracy": probe.accuracy(emb, test_labels),
        }
        for column, score in scorers.items():
            row[column] = float(score(emb, test_labels))
        log.info("%s s=%d: probe accuracy %.4f", name, severity, row["accuracy"])
        rows.append(row)
        progress.update()
    progress.close()
    columns = ["corruption", "severity", "accuracy", *scorers]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"severity": np.int64, "accuracy": np.float64})


# --------------------------------------------------------------------------- writing


def write_corruption_archive(
    path: str | Path,
    dir_name: str,
    sets: Mapping[str, np.ndarray],
    labels: np.ndarray,
) -> Path:
    """Write a format-exact corruption tar: ``<dir_name>/<name>.npy`` per set, then
    ``<dir_name>/labels.npy`` (the inverse of :func:`iter_corruption_sets`).

    Tests, the demo fixture and air-gapped mirrors need archives in the published layout
    without network access; served through ``file://`` they exercise the real download →
    verify → read path. Each set is uint8 (5·N, 32, 32, 3); ``labels`` is (5·N,). Written
    atomically, uncompressed, like the published archives.
    """
    if dir_name not in ARCHIVE_DIRS:
        raise ConfigError(
            f"corruption archive dir: expected one of {ARCHIVE_DIRS}, found {dir_name!r}"
        )
    check_names(sets, "corruption archive sets")
    labels = np.asarray(labels)
    members = {f"{name}.npy": np.asarray(images) for name, images in sets.items()}
    members[LABELS] = labels
    with atomic_path(path) as tmp, tarfile.open(tmp, "w:") as tar:
        for name, array in members.items():
            add_npy(tar, f"{dir_name}/{name}", array)
    return Path(path)


def add_npy(tar: tarfile.TarFile, member: str, array: np.ndarray) -> None:
    """Append ``array`` as a ``.npy`` regular member (no pickling) streamed from memory."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
    info = tarfile.TarInfo(member)
    info.size = buf.tell()
    buf.seek(0)
    tar.addfile(info, buf)
