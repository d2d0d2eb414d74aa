"""Verified downloads of dataset archives.

A dataset archive is only useful if it is exactly the one the config names: a truncated or
substituted file would silently change every number downstream. So every download streams
into a temporary sibling of ``dest`` while hashing, and is renamed into place only when its
md5 equals the configured one; a mismatch deletes the partial file. Transient network
failures are retried with exponential backoff; a checksum mismatch is not (fetching the same
wrong bytes again will not help). ``file://`` URLs go through the same code path, which is
how tests, mirrors and air-gapped clusters serve archives.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from kdspectra.errors import ChecksumError, ConfigError, DataError
from kdspectra.io import atomic_path
from kdspectra.runtime.progress import Progress

log = logging.getLogger(__name__)

SCHEMES = ("https", "http", "file")
CHUNK = 1 << 20
TIMEOUT_S = 60.0
# Seconds before the first retry; doubled for every further one (``download(backoff_s=)``).
BACKOFF_S = 2.0
_MD5_RE = re.compile(r"[0-9a-f]{32}")  # fullmatch: exactly 32 hex digits
# HTTP statuses worth retrying: timeouts, rate limits and server-side hiccups.
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class _TransientError(Exception):
    """A failure that another attempt may not hit (connection reset, short read, 503)."""


def md5sum(path: str | os.PathLike[str]) -> str:
    """Return the hex md5 of a file, read in chunks so multi-GB archives fit in memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def validate_source(url: str, md5: str) -> str:
    """Check ``url``'s scheme and ``md5``'s format; return the md5 in lower case.

    Called before any network or disk access so that a typo in ``config.yaml`` fails in
    milliseconds with the offending value, not after a multi-minute download.
    """
    scheme = urllib.parse.urlparse(str(url)).scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"dataset url {url!r}: expected a scheme in {list(SCHEMES)}, found {scheme or 'none'!r}"
        )
    if not isinstance(md5, str) or not _MD5_RE.fullmatch(md5.lower()):
        raise ConfigError(f"dataset md5 for {url}: expected 32 hex digits, found {md5!r}")
    return md5.lower()


def download(
    url: str,
    md5: str,
    dest: str | os.PathLike[str],
    *,
    retries: int = 3,
    backoff_s: float | None = None,
    progress: bool = True,
) -> Path:
    """Fetch ``url`` to ``dest`` and verify its md5; return ``dest`` as a :class:`Path`.

    Skips the transfer when ``dest`` already holds the right bytes (re-running the workflow
    after a later stage failed must not re-download 160 MB). ``retries`` is the number of
    further attempts after a transient failure (connection error, timeout, HTTP
    408/425/429/5xx, a body shorter than its Content-Length), waiting ``backoff_s * 2**k``
    seconds before retry k+1 (default :data:`BACKOFF_S`). Other HTTP errors (404, 403) and
    checksum mismatches are final: the same request would fail the same way.
    Raises :class:`ChecksumError` (naming the URL, expected and actual md5) on a mismatch,
    :class:`DataError` when the source cannot be read or retries are spent,
    :class:`ConfigError` on a bad URL or md5.
    """
    expected = validate_source(url, md5)
    if retries < 0:
        raise ConfigError(f"download retries: expected an integer >= 0, found {retries!r}")
    dest = Path(dest)
    if dest.is_file():
        if md5sum(dest) == expected:
            log.info("%s: already present with md5 %s, skipping download", dest, expected)
            return dest
        log.warning("%s: exists with a different md5; downloading it again from %s", dest, url)
    for attempt in range(retries + 1):
        try:
            _fetch_verified(url, expected, dest, progress=progress)
            return dest
        except _TransientError as exc:
            if attempt == retries:
                raise DataError(
                    f"{url}: download failed after {retries + 1} attempt(s): {exc}"
                ) from exc
            delay = (BACKOFF_S if backoff_s is None else backoff_s) * 2**attempt
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.1fs", url, attempt + 1, exc, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _fetch_verified(url: str, expected: str, dest: Path, *, progress: bool) -> None:
    """One attempt: stream into a temp file next to ``dest``, hash, rename only on a match."""
    start = time.perf_counter()
    with atomic_path(dest) as tmp:
        response = _open(url)
        with response, open(tmp, "wb") as out:
            total = _content_length(response)
            actual, size = _stream(response, out, total, desc=dest.name, progress=progress)
        if total is not None and size != total:
            raise _TransientError(f"short read: got {size} of {total} bytes")
        if actual != expected:
            raise ChecksumError(
                f"{url}: md5 mismatch: expected {expected}, found {actual} "
                f"({size} bytes); the partial file was removed"
            )
    elapsed = max(time.perf_counter() - start, 1e-9)
    log.info("%s: %d bytes in %.1fs (%.1f MB/s), md5 ok", dest, size, elapsed, size / elapsed / 1e6)


def _open(url: str) -> BinaryIO:
    """Open ``url``, sorting failures into retryable (network) and final (missing, 404)."""
    request = urllib.request.Request(url, headers={"User-Agent": "kdspectra"})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code in _RETRY_STATUS:
            raise _TransientError(f"HTTP {exc.code} {exc.reason}") from exc
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise DataError(f"{url}: cannot read the source: {exc.reason}") from exc
        raise _TransientError(str(exc.reason)) from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _TransientError(repr(exc)) from exc


def _content_length(response: BinaryIO) -> int | None:
    """Declared size of the body (used for the progress bar and to detect short reads)."""
    value = getattr(response, "headers", {}).get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _stream(
    response: BinaryIO, out: BinaryIO, total: int | None, *, desc: str, progress: bool
) -> tuple[str, int]:
    """Copy ``response`` to ``out`` chunk by chunk, hashing on the fly; return (md5, bytes)."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    bar = Progress(
        total, desc=desc, unit="MB", divisor=1_000_000, logger=log, bar=None if progress else False
    )
    with bar:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                raise _TransientError(f"read failed after {size} bytes: {exc!r}") from exc
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
            bar.update(len(chunk))
    return digest.hexdigest(), size
