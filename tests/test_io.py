"""Atomic writes and validated loads: nothing half-written, every bad file named."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from kdspectra.embeddings import load_embeddings, save_embeddings
from kdspectra.errors import ArtifactError
from kdspectra.io import atomic_path, load_json, load_npy, save_json, save_npy


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_old_file_until_rename(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    save_json(target, {"v": 1})
    with atomic_path(target) as tmp:
        tmp.write_text('{"v": 2}')
        assert load_json(target) == {"v": 1}
    assert load_json(target) == {"v": 2}


def test_written_files_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        save_npy(tmp_path / "x.npy", np.zeros(3))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.npy").stat().st_mode) == 0o644


def test_load_npy_checks(tmp_path: Path) -> None:
    path = tmp_path / "e.npy"
    save_npy(path, np.ones((4, 3), dtype=np.float32))
    assert load_npy(path, dtype=np.float32, ndim=2, rows=4, finite=True).shape == (4, 3)
    with pytest.raises(ArtifactError, match="expected 5 rows"):
        load_npy(path, rows=5)
    with pytest.raises(ArtifactError, match="dtype int64"):
        load_npy(path, dtype=np.int64)
    with pytest.raises(ArtifactError, match="3 dimensions"):
        load_npy(path, ndim=3)


def test_truncated_and_garbage_npy_are_named(tmp_path: Path) -> None:
    path = tmp_path / "t.npy"
    save_npy(path, np.ones((100, 8), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ArtifactError, match=str(path)):
        load_npy(path)
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        load_npy(path)
    with pytest.raises(ArtifactError, match="file not found"):
        load_npy(tmp_path / "missing.npy")


def test_pickled_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ArtifactError):
        load_npy(path)


def test_embeddings_round_trip_and_nan_refusal(tmp_path: Path) -> None:
    emb = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    labels = np.arange(6, dtype=np.int64) % 3
    save_embeddings(tmp_path / "e.npy", tmp_path / "e.parquet", emb, labels, "test")
    np.testing.assert_array_equal(load_embeddings(tmp_path / "e.npy", rows=6, dim=4), emb)
    emb[2, 1] = np.nan
    with pytest.raises(ArtifactError, match="NaN/inf"):
        save_embeddings(tmp_path / "f.npy", tmp_path / "f.parquet", emb, labels, "test")
    assert not (tmp_path / "f.npy").exists()
    np.save(tmp_path / "g.npy", emb)
    with pytest.raises(ArtifactError, match=r"g\.npy"):
        load_embeddings(tmp_path / "g.npy")
