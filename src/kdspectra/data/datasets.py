"""Dataset archives → the prepared uint8 arrays every later stage reads.

The CIFAR *binary* archives are read record by record straight from the ``tar.gz`` members
(never extracted, never unpickled): an archive is untrusted input, so only the members we
expect are read, and an expected member that is a link, a device or has an absolute or
``..`` path is refused. Everything is validated in memory before the five output files are
renamed into place together, so a failed preparation leaves no half-made dataset that
Snakemake would mistake for a finished one.

The ``sklearn-digits`` format needs no archive: scikit-learn ships the 8×8 digits, which we
upsample to the 32×32 RGB layout so the offline demo runs the same code as the paper.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from kdspectra.data.archives import check_member as _check_member
from kdspectra.errors import ConfigError, DataError
from kdspectra.io import atomic_path
from kdspectra.registry import DATASET_FORMATS, IMAGE_SIDE

log = logging.getLogger(__name__)

FORMATS = DATASET_FORMATS  # the layouts this module reads, as the registry names them
SIDE = IMAGE_SIDE
PIXELS = 3 * SIDE * SIDE  # R plane, G plane, B plane, each 32×32 row-major
OUTPUTS = (
    "train_images.npy",
    "train_labels.npy",
    "test_images.npy",
    "test_labels.npy",
    "classes.txt",
)


@dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR binary archive keeps its records and how one record is laid out."""

    train: tuple[str, ...]  # member basenames, concatenated in this order
    test: tuple[str, ...]
    names: str  # label-name file, one class per line
    label_bytes: int  # bytes before the pixels
    label_index: int  # which of those bytes is the label we keep
    num_classes: int
    top: str  # top-level folder of the official archive (used when writing one)

    @property
    def record(self) -> int:
        return self.label_bytes + PIXELS

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.train, *self.test, self.names)


LAYOUTS = {
    "cifar10-binary": CifarLayout(
        train=tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        test=("test_batch.bin",),
        names="batches.meta.txt",
        label_bytes=1,
        label_index=0,
        num_classes=10,
        top="cifar-10-batches-bin",
    ),
    "cifar100-binary": CifarLayout(
        train=("train.bin",),
        test=("test.bin",),
        names="fine_label_names.txt",
        label_bytes=2,
        label_index=1,  # coarse byte, then fine byte: we keep the fine label
        num_classes=100,
        top="cifar-100-binary",
    ),
}


@dataclass
class Prepared:
    """A validated dataset held in memory, ready to be written."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: list[str]


def prepare_dataset(fmt: str, archive: Path | None, outdir: Path) -> dict[str, Any]:
    """Read ``archive`` in format ``fmt`` and write the prepared arrays under ``outdir``.

    Writes ``{train,test}_images.npy`` (uint8 N×32×32×3 RGB), ``{train,test}_labels.npy``
    (int64 N) and ``classes.txt``. ``archive`` is ignored for ``sklearn-digits``. Returns
    ``{"format", "train", "test", "num_classes", "classes"}`` for logs and provenance.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"dataset format: expected one of {list(FORMATS)}, found {fmt!r}")
    if fmt == "sklearn-digits":
        data = _load_digits()
    else:
        if archive is None:
            raise ConfigError(f"dataset format {fmt!r} needs an archive path, found None")
        data = read_cifar_archive(Path(archive), fmt)
    _validate(data, fmt)
    _write(data, Path(outdir))
    info = {
        "format": fmt,
        "train": len(data.train_labels),
        "test": len(data.test_labels),
        "num_classes": len(data.classes),
        "classes": data.classes,
    }
    log.info("prepared %s into %s: %d train, %d test", fmt, outdir, info["train"], info["test"])
    return info


# --------------------------------------------------------------------------- CIFAR binary


def read_cifar_archive(archive: Path, fmt: str) -> Prepared:
    """Parse a CIFAR-10/100 binary ``tar.gz`` in memory (one streaming pass, no extraction)."""
    layout = LAYOUTS[fmt]
    if not archive.is_file():
        raise DataError(f"{archive}: archive not found")
    blobs = _read_members(archive, layout.members)
    train_x, train_y = _parse_records(blobs, layout.train, layout, archive)
    test_x, test_y = _parse_records(blobs, layout.test, layout, archive)
    classes = _parse_names(blobs[layout.names], layout, archive)
    return Prepared(train_x, train_y, test_x, test_y, classes)


def _read_members(archive: Path, wanted: tuple[str, ...]) -> dict[str, bytes]:
    """Return the bytes of each wanted member, matched on its basename under any top folder.

    Unexpected members (``../escape.bin``, ``readme.html``, macOS ``._*`` files) are never
    read. An expected one that is not a safe regular file, or that appears twice, is an error.
    """
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = PurePosixPath(member.name).name
                if base not in wanted:
                    continue
                _check_member(member, archive)
                if base in blobs:
                    raise DataError(f"{archive}: member {base!r} appears more than once")
                blobs[base] = _member_bytes(tar, member, archive)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{archive}: not a readable tar.gz archive: {exc}") from exc
    missing = [name for name in wanted if name not in blobs]
    if missing:
        raise DataError(f"{archive}: expected member(s) {missing} not found in the archive")
    return blobs


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> bytes:
    """Read one regular member fully, checking that the archive holds all its bytes."""
    handle = tar.extractfile(member)
    if handle is None:  # pragma: no cover - isreg() members always have data
        raise DataError(f"{archive}: member {member.name!r} has no data")
    with handle:
        data = handle.read()
    if len(data) != member.size:
        raise DataError(
            f"{archive}: member {member.name!r} is truncated: "
            f"expected {member.size} bytes, found {len(data)}"
        )
    return data


def _parse_records(
    blobs: dict[str, bytes], members: tuple[str, ...], layout: CifarLayout, archive: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Decode fixed-size records into (uint8 N×32×32×3, int64 N), member by member."""
    images, labels = [], []
    for name in members:
        data = blobs[name]
        if len(data) == 0 or len(data) % layout.record:
            raise DataError(
                f"{archive}: member {name!r} holds {len(data)} bytes, expected a positive "
                f"multiple of the {layout.record}-byte record"
            )
        records = np.frombuffer(data, dtype=np.uint8).reshape(-1, layout.record)
        label = records[:, layout.label_index].astype(np.int64)
        if label.max() >= layout.num_classes:
            raise DataError(
                f"{archive}: member {name!r} has label {int(label.max())}, "
                f"expected 0..{layout.num_classes - 1}"
            )
        planes = records[:, layout.label_bytes :].reshape(-1, 3, SIDE, SIDE)
        images.append(planes.transpose(0, 2, 3, 1))
        labels.append(label)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _parse_names(data: bytes, layout: CifarLayout, archive: Path) -> list[str]:
    """One class name per non-empty line (the official files end with blank lines)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{archive}: member {layout.names!r} is not UTF-8 text: {exc}") from exc
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != layout.num_classes:
        raise DataError(
            f"{archive}: member {layout.names!r} lists {len(names)} class names, "
            f"expected {layout.num_classes}"
        )
    return names


def write_cifar_archive(
    path: Path,
    fmt: str,
    *,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    classes: list[str],
    top: str | None = None,
) -> Path:
    """Write a format-exact CIFAR binary ``tar.gz`` (the inverse of :func:`prepare_dataset`).

    Tests, the tiny workflow and air-gapped mirrors need archives in the official layout
    without network access; serving this file through ``file://`` exercises the real
    download → verify → prepare path. Training images are split evenly over the batch
    members. CIFAR-100 coarse labels are written as ``fine // 5``.
    """
    layout = LAYOUTS[fmt]
    top = layout.top if top is None else top
    members = {layout.names: ("\n".join(classes) + "\n").encode()}
    chunks = np.array_split(np.arange(len(train_labels)), len(layout.train))
    for name, idx in zip(layout.train, chunks, strict=True):
        members[name] = _encode_records(train_images[idx], train_labels[idx], layout)
    members[layout.test[0]] = _encode_records(test_images, test_labels, layout)
    with atomic_path(path) as tmp, tarfile.open(tmp, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return Path(path)


def _encode_records(images: np.ndarray, labels: np.ndarray, layout: CifarLayout) -> bytes:
    """uint8 N×32×32×3 + labels → the binary record stream of one member."""
    n = len(labels)
    head = np.zeros((n, layout.label_bytes), dtype=np.uint8)
    head[:, layout.label_index] = labels
    if layout.label_bytes == 2:
        head[:, 0] = np.asarray(labels) // 5
    planes = np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2).reshape(n, PIXELS)
    return np.concatenate([head, planes], axis=1).tobytes()


# --------------------------------------------------------------------------- digits


def _load_digits() -> Prepared:
    """scikit-learn's 1797 real 8×8 digits as 32×32 RGB, with a fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = upsample_digits(digits.images)
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    classes = [str(d) for d in range(10)]
    return Prepared(
        images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], classes
    )


def upsample_digits(images: np.ndarray) -> np.ndarray:
    """8×8 values in 0..16 → uint8 N×32×32×3 (bilinear upsampling, grey in all channels)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(images, dtype=np.float32) * (255.0 / 16.0))[:, None]
    up = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    grey = up[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))


# --------------------------------------------------------------------------- output


def _validate(data: Prepared, fmt: str) -> None:
    """Check the contract of the prepared arrays before anything touches the disk."""
    for split in ("train", "test"):
        x = getattr(data, f"{split}_images")
        y = getattr(data, f"{split}_labels")
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (SIDE, SIDE, 3):
            raise DataError(
                f"{fmt} {split} images: expected uint8 N×{SIDE}×{SIDE}×3, found {x.dtype} {x.shape}"
            )
        if y.dtype != np.int64 or y.shape != (len(x),):
            raise DataError(
                f"{fmt} {split} labels: expected int64 of length {len(x)}, "
                f"found {y.dtype} {y.shape}"
            )
        if len(y) and (y.min() < 0 or y.max() >= len(data.classes)):
            raise DataError(
                f"{fmt} {split} labels: expected 0..{len(data.classes) - 1}, "
                f"found {int(y.min())}..{int(y.max())}"
            )


def _write(data: Prepared, outdir: Path) -> None:
    """Write all outputs to temporaries, then rename them together (none if any write fails)."""
    arrays = {
        "train_images.npy": data.train_images,
        "train_labels.npy": data.train_labels,
        "test_images.npy": data.test_images,
        "test_labels.npy": data.test_labels,
    }
    with contextlib.ExitStack() as stack:
        for name, array in arrays.items():
            tmp = stack.enter_context(atomic_path(outdir / name))
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        tmp = stack.enter_context(atomic_path(outdir / "classes.txt"))
        tmp.write_text("\n".join(data.classes) + "\n")
