"""Verified downloads through file:// URLs (the path tests, mirrors and air-gapped clusters use)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import pytest

from kdspectra.data import download as dl
from kdspectra.errors import ChecksumError, ConfigError, DataError


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl, "BACKOFF_S", 0.0)


@pytest.fixture
def source(tmp_path: Path) -> tuple[str, str, bytes]:
    """A 3 MB file (several read chunks) served through a file:// URL, with its md5."""
    payload = bytes(range(256)) * (3 * 4096 + 7)
    src = tmp_path / "src" / "archive.tar.gz"
    src.parent.mkdir()
    src.write_bytes(payload)
    return src.as_uri(), hashlib.md5(payload).hexdigest(), payload


def listing(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_md5sum_matches_hashlib(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"kdspectra" * 1000)
    assert dl.md5sum(f) == hashlib.md5(b"kdspectra" * 1000).hexdigest()


def test_file_url_downloads_and_verifies(source: tuple[str, str, bytes], tmp_path: Path) -> None:
    url, md5, payload = source
    dest = tmp_path / "out" / "cifar.tar.gz"
    assert dl.download(url, md5.upper(), dest, progress=False) == dest
    assert dest.read_bytes() == payload
    assert listing(dest.parent) == ["cifar.tar.gz"]


def test_existing_file_with_right_md5_is_not_fetched_again(
    source: tuple[str, str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, md5, payload = source
    dest = tmp_path / "cifar.tar.gz"
    dest.write_bytes(payload)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not open the URL when dest is already verified")

    monkeypatch.setattr(dl.urllib.request, "urlopen", fail)
    assert dl.download(url, md5, dest, progress=False) == dest


def test_existing_file_with_wrong_md5_is_replaced(
    source: tuple[str, str, bytes], tmp_path: Path
) -> None:
    url, md5, payload = source
    dest = tmp_path / "cifar.tar.gz"
    dest.write_bytes(b"stale")
    dl.download(url, md5, dest, progress=False)
    assert dest.read_bytes() == payload


def test_checksum_mismatch_names_url_and_both_md5s_and_leaves_nothing(
    source: tuple[str, str, bytes], tmp_path: Path
) -> None:
    url, md5, _ = source
    wrong = "0" * 32
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ChecksumError) as info:
        dl.download(url, wrong, out / "cifar.tar.gz", progress=False)
    message = str(info.value)
    assert url in message and wrong in message and md5 in message
    assert listing(out) == []


def test_checksum_mismatch_is_not_retried(
    source: tuple[str, str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _, _ = source
    calls = []
    real_open = dl._open
    monkeypatch.setattr(dl, "_open", lambda u: calls.append(u) or real_open(u))
    with pytest.raises(ChecksumError):
        dl.download(url, "f" * 32, tmp_path / "x.bin", retries=3, progress=False)
    assert len(calls) == 1


def test_network_errors_are_retried_then_succeed(
    source: tuple[str, str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, md5, payload = source
    real_urlopen = dl.urllib.request.urlopen
    failures = iter([urllib.error.URLError("connection reset"), ConnectionResetError("reset")])

    def flaky(*args: object, **kwargs: object) -> object:
        exc = next(failures, None)
        if exc is not None:
            raise exc
        return real_urlopen(*args, **kwargs)

    monkeypatch.setattr(dl.urllib.request, "urlopen", flaky)
    dest = tmp_path / "out" / "a.bin"
    dl.download(url, md5, dest, retries=2, progress=False)
    assert dest.read_bytes() == payload
    assert listing(dest.parent) == ["a.bin"]


def test_network_errors_exhaust_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def down(*args: object, **kwargs: object) -> object:
        calls.append(1)
        raise urllib.error.URLError("name resolution failed")

    monkeypatch.setattr(dl.urllib.request, "urlopen", down)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"https://example\.org/a\.tar\.gz.*3 attempt"):
        dl.download("https://example.org/a.tar.gz", "a" * 32, out / "a.tar.gz", retries=2)
    assert len(calls) == 3
    assert listing(out) == []


def test_missing_local_source_fails_without_retry(tmp_path: Path) -> None:
    url = (tmp_path / "nope.tar.gz").as_uri()
    with pytest.raises(DataError, match=r"nope\.tar\.gz"):
        dl.download(url, "a" * 32, tmp_path / "out" / "x", progress=False)
    assert listing(tmp_path / "out") == []


@pytest.mark.parametrize("url", ["ftp://host/a.tar.gz", "/abs/path.tar.gz", "s3://b/k"])
def test_bad_scheme_is_a_config_error(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scheme"):
        dl.download(url, "a" * 32, tmp_path / "x")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("md5", ["abc", "g" * 32, "a" * 33, None])
def test_bad_md5_is_a_config_error(md5: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="32 hex"):
        dl.download("https://example.org/a", md5, tmp_path / "x")  # type: ignore[arg-type]
    assert listing(tmp_path) == []


# ---------------------------------------------------------------- over HTTP (local server)


@dataclass
class Reply:
    """One scripted answer of the test server: status, body, and the declared length."""

    status: int
    body: bytes = b""
    length: int | None = None  # Content-Length sent; None = len(body)


class Server:
    """A local ``http.server`` in a thread that answers each GET with the next scripted
    :class:`Reply` (the last one repeats) and counts the requests it saw."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies, self.requests = replies, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = outer.replies[min(outer.requests, len(outer.replies) - 1)]
                outer.requests += 1
                self.send_response(reply.status)
                length = len(reply.body) if reply.length is None else reply.length
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(reply.body)  # then the connection closes (HTTP/1.0)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/cifar.tar.gz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


PAYLOAD = bytes(range(256)) * 4096  # 1 MB: one read chunk
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The backoff delays download() asked for, recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(dl.time, "sleep", delays.append)
    return delays


def test_http_503_is_retried_with_backoff_then_succeeds(
    tmp_path: Path, sleeps: list[float]
) -> None:
    replies = [Reply(503, b"busy"), Reply(503, b"busy"), Reply(200, PAYLOAD)]
    dest = tmp_path / "out" / "cifar.tar.gz"
    with Server(replies) as server:
        dl.download(server.url, PAYLOAD_MD5, dest, retries=3, backoff_s=0.5, progress=False)
    assert server.requests == 3
    assert sleeps == [0.5, 1.0]  # exponential: backoff_s * 2**k before retry k+1
    assert dest.read_bytes() == PAYLOAD
    assert listing(dest.parent) == ["cifar.tar.gz"]


@pytest.mark.parametrize("status", [404, 403])
def test_http_client_errors_are_not_retried(
    status: int, tmp_path: Path, sleeps: list[float]
) -> None:
    out = tmp_path / "out"
    error = pytest.raises(DataError, match=rf"127\.0\.0\.1.*HTTP {status}")
    with Server([Reply(status, b"no such file")]) as server, error:
        dl.download(server.url, PAYLOAD_MD5, out / "a.tar.gz", retries=3, progress=False)
    assert server.requests == 1 and sleeps == []
    assert listing(out) == []


def test_http_short_body_is_an_error_and_leaves_nothing(
    tmp_path: Path, sleeps: list[float]
) -> None:
    """The server declares 1 MB and closes after half: every attempt is a short read."""
    short = Reply(200, PAYLOAD[: len(PAYLOAD) // 2], length=len(PAYLOAD))
    out = tmp_path / "out"
    error = pytest.raises(DataError, match=r"2 attempt.*short read: got 524288 of 1048576")
    with Server([short]) as server, error:
        dl.download(server.url, PAYLOAD_MD5, out / "a.tar.gz", retries=1, progress=False)
    assert server.requests == 2 and len(sleeps) == 1
    assert listing(out) == []


def test_http_short_body_then_full_body_succeeds(tmp_path: Path, sleeps: list[float]) -> None:
    short = Reply(200, PAYLOAD[:1000], length=len(PAYLOAD))
    dest = tmp_path / "out" / "a.tar.gz"
    with Server([short, Reply(200, PAYLOAD)]) as server:
        dl.download(server.url, PAYLOAD_MD5, dest, retries=2, progress=False)
    assert server.requests == 2
    assert dest.read_bytes() == PAYLOAD


# ------------------------------------- a failed job never leaves fewer good artifacts


def _synth_archive(path: Path) -> str:
    """A small CIFAR-10 binary archive at ``path``; returns its md5."""
    import numpy as np

    from kdspectra.data.datasets import write_cifar_archive

    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10

    (xtr, ytr), (xte, yte) = split(50), split(10)
    write_cifar_archive(
        path, "cifar10-binary", train_images=xtr, train_labels=ytr, test_images=xte,
        test_labels=yte, classes=[f"c{i}" for i in range(10)],
    )  # fmt: skip
    return dl.md5sum(path)


def _prepare(work: Path, config: dict) -> tuple[int, str]:
    import yaml

    from conftest import run_snakemake

    (work / "run.yaml").write_text(yaml.safe_dump(config))
    args = ("--configfile", "run.yaml", "--cores", "1", "--until", "prepare_dataset")
    proc = run_snakemake(work, *args, timeout=300, merge_output=True)
    return proc.returncode, proc.stdout


def _snapshot(folder: Path) -> dict[str, str]:
    """md5 of every file under ``folder`` (what a failed job must leave as it was)."""
    return {str(p.relative_to(folder)): dl.md5sum(p) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.workflow
@pytest.mark.slow
def test_md5_typo_in_config_leaves_the_good_archive_and_data(tmp_path: Path) -> None:
    """Config change, then refusal: a good run prepares the data; the md5 is then edited
    with a typo in its last digit (the file served is unchanged). The download refuses
    the archive, and the good archive and prepared arrays are all still there, byte for
    byte. (With a key of md5[:12], Snakemake saw a changed param, deleted the archive,
    then the download failed.)"""
    import yaml

    work = tmp_path / "work"
    work.mkdir()
    archive = tmp_path / "mirror" / "synth.tar.gz"
    archive.parent.mkdir()
    md5 = _synth_archive(archive)
    config = yaml.safe_load((Path(__file__).parent / "faults" / "mini_config.yaml").read_text())
    config["datasets"]["synth"].update(url=archive.as_uri(), md5=md5)
    code, out = _prepare(work, config)
    assert code == 0, out[-4000:]
    before = _snapshot(work / "results" / "downloads") | _snapshot(work / "results" / "data")
    assert any(name.endswith(".tar.gz") for name in before) and len(before) >= 6

    typo = md5[:-1] + ("0" if md5[-1] != "0" else "1")
    config["datasets"]["synth"]["md5"] = typo
    code, out = _prepare(work, config)
    assert code != 0, out[-4000:]
    assert "md5 mismatch" in out and typo in out
    after = _snapshot(work / "results" / "downloads") | _snapshot(work / "results" / "data")
    assert {k: v for k, v in after.items() if k in before} == before
    assert not [k for k in after if k not in before and typo in k and k.endswith(".tar.gz")]
