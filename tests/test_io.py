"""Atomic writes and validated loads: nothing half-written, every bad file named."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdspectra.data.embeddings import load_embeddings, save_embeddings
from kdspectra.errors import ArtifactError
from kdspectra.io import (
    atomic_path,
    load_json,
    load_npy,
    parse_yaml,
    save_json,
    save_npy,
    sweep_stale_temps,
)


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


# ---------------------------------------------------------------- durability and stale temps

WRITER = """
import sys, time
from kdspectra.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half")
    print(tmp, flush=True)
    time.sleep(600)
"""


def start_writer(target: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process that stops inside ``atomic_path(target)``; returns it and its temporary."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_file_is_fsynced_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str, dst: str) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "x.npy"
    save_npy(target, np.arange(3))
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert Path(events[0][1]).name.startswith(".x.npy.")  # the temporary, with its bytes
    assert events[1][1] == str(target)
    assert events[2][1] == str(tmp_path)  # the directory entry of the rename


def test_kill9_temporary_is_swept_by_the_next_write(tmp_path: Path) -> None:
    proc, tmp = start_writer(tmp_path / "a.npy")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists()  # what kill -9 leaves: no cleanup ran
    age(tmp, 120)
    save_npy(tmp_path / "b.npy", np.zeros(2))  # any write in that folder sweeps it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npy"]


def test_a_live_writers_temporary_is_kept(tmp_path: Path) -> None:
    proc, tmp = start_writer(tmp_path / "a.npy")
    try:
        age(tmp, 7200)  # old, but its process still runs on this host
        save_npy(tmp_path / "a.npy", np.zeros(2))
        assert tmp.exists()
    finally:
        proc.kill()
        proc.wait()


def test_dead_writer_within_the_grace_period_is_kept(tmp_path: Path) -> None:
    proc, tmp = start_writer(tmp_path / "a.npy")
    proc.kill()
    proc.wait()
    assert sweep_stale_temps(tmp_path) == []  # just died: a container's pid may hide it
    assert sweep_stale_temps(tmp_path, now=time.time() + 120) == [tmp]


def test_other_hosts_temporaries_are_swept_only_when_abandoned(tmp_path: Path) -> None:
    fresh = tmp_path / ".a.npy.kdtmp.elsewhere-9f3.4242.abc123_x.tmp"
    old = tmp_path / ".b.npy.kdtmp.elsewhere-9f3.4243.def456_y.tmp"
    foreign = [tmp_path / ".c.npy.abc.tmp", tmp_path / "c.npy.kdtmp.elsewhere-9f3.1.a.tmp"]
    for path in (fresh, old, *foreign):
        path.write_bytes(b"x")
        age(path, 7200 if path != fresh else 10)
    assert sweep_stale_temps(tmp_path) == [old]
    assert sorted(tmp_path.iterdir()) == sorted([fresh, *foreign])


# ----------------------------------------------------------------- disk full (issue 24)


def _enospc(*_args: object, **_kwargs: object) -> None:
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_is_named_with_the_path_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "emb.npy"
    save_npy(target, np.ones(3, dtype=np.float32))
    monkeypatch.setattr(np, "save", _enospc)
    with pytest.raises(ArtifactError) as err:
        save_npy(target, np.zeros(1000, dtype=np.float32))
    assert "no space left on device" in str(err.value) and str(target) in str(err.value)
    monkeypatch.undo()
    assert load_npy(target).tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["emb.npy"]


def test_disk_full_reported_only_as_text_is_named_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow's OSError carries no errno, only the words."""
    import pandas as pd

    from kdspectra.io import save_parquet

    def full(*_a: object, **_k: object) -> None:
        raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    target = tmp_path / "rows.parquet"
    with pytest.raises(ArtifactError, match="no space left on device") as err:
        save_parquet(target, pd.DataFrame({"a": [1]}))
    assert str(target) in str(err.value)


def test_other_write_errors_are_not_called_disk_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def denied(*_a: object, **_k: object) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(np, "save", denied)
    with pytest.raises(PermissionError):
        save_npy(tmp_path / "x.npy", np.zeros(2))


def test_job_log_is_on_disk_before_the_first_write_and_names_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The log says which job ran before anything large is written (on a disk the job then
    fills, it still exists), and the console's one line says "no space left on device"
    with the file that did not fit."""
    from kdspectra.runtime.logs import job

    log, target = tmp_path / "logs" / "job.log", tmp_path / "out" / "big.npy"
    monkeypatch.setattr(np, "save", _enospc)
    with pytest.raises(ArtifactError), job(log):
        assert "job started" in log.read_text()  # flushed before any write of the job
        save_npy(target, np.zeros(10, dtype=np.float32))
    console = capsys.readouterr().err
    assert "no space left on device" in console and str(target) in console
    assert "no space left on device" in log.read_text()


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                     'message: "No space left on device" })'),  # safetensors (no errno)
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"),
    ],
    ids=["safetensors", "torch zip writer"],
)  # fmt: skip
def test_library_errors_of_a_full_disk_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """Libraries that drop the errno: their words, or torch's "unexpected pos" on a
    filesystem with almost nothing free, are reported as a full disk."""
    import collections
    import shutil

    from kdspectra.io import atomic_path

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 40_000, 40_000))
    target = tmp_path / "weights.safetensors"
    full = pytest.raises(ArtifactError, match="no space left on device")
    with full as err, atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise error
    assert str(target) in str(err.value) and list(tmp_path.iterdir()) == []


def test_torch_write_error_with_space_left_is_not_called_disk_full(tmp_path: Path) -> None:
    from kdspectra.io import atomic_path

    with pytest.raises(RuntimeError, match="unexpected pos"), atomic_path(tmp_path / "x.pt"):
        raise RuntimeError("unexpected pos 64 vs 0")


def test_parse_yaml_is_the_safe_subset() -> None:
    assert parse_yaml("a: [1, 2.5, null]\nb: {c: yes}\n") == {"a": [1, 2.5, None], "b": {"c": True}}
    with pytest.raises(yaml.constructor.ConstructorError):
        parse_yaml("!!python/object/apply:os.system ['true']")
