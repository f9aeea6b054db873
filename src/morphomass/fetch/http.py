"""Robust downloads: retries with exponential backoff, timeouts, resume, a per-server rate limit.

Local copies.

:class:`HttpClient` writes every download to ``<name>.part`` and renames it onto ``<name>`` only once the
transfer is complete (the byte count matches ``Content-Length``), the content passed its check and, when one
is given, its SHA-256 matches. A ``.part`` file therefore never counts as done; the next attempt resumes it
with an HTTP ``Range`` request (a server that ignores ranges sends the whole file again). Bytes are stored
exactly as sent: a server that adds ``Content-Encoding: gzip`` (the GSWLC server does) is not decoded here, so
that gzip detection by magic bytes and resuming both work on the bytes on the wire.

A URL may also be a ``file://`` URL or a plain local path (a local copy of an archive): it is copied, not
fetched.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3

from morphomass import __version__
from morphomass.errors import FetchError, InputDataError
from morphomass.workdir import file_sha256

__all__ = [
    "PART_SUFFIX",
    "DownloadStats",
    "HttpClient",
    "check_not_html",
    "full_url",
    "local_path",
]

logger = logging.getLogger(__name__)

PART_SUFFIX = ".part"
#: Answers worth another try (the server is busy or failed for a moment).
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
CHUNK_BYTES = 1 << 16
USER_AGENT = f"morphomass/{__version__} (python-requests)"
_TRANSIENT = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    ConnectionError,
    TimeoutError,
)


class _Retry(Exception):
    """A transient failure of one attempt; ``wait_s`` is the server's Retry-After, if any."""

    def __init__(self, message: str, wait_s: float | None = None) -> None:
        super().__init__(message)
        self.wait_s = wait_s


@dataclass
class DownloadStats:
    """Counters of one client: files completed, bytes received over the network, retried attempts."""

    files: int = 0
    bytes: int = 0
    retries: int = 0


def full_url(url: str, params: Mapping[str, str] | None = None) -> str:
    """Return the URL with its query string, as it is sent (the cache key of a query)."""
    if not params:
        return url
    return requests.Request("GET", url, params=dict(params)).prepare().url or url


def local_path(url: str) -> Path | None:
    """Return the local file a ``file://`` URL or a plain path names, or None for a network URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if not parsed.scheme or (len(parsed.scheme) == 1 and os.name == "nt"):  # a path (or a Windows drive)
        return Path(url)
    return None


def check_not_html(path: Path, *, source: str, expected: str) -> None:
    """Raise if the file is an HTML page (a server's error page served in place of data).

    Parameters
    ----------
    path : Path
        The downloaded file.
    source : str
        Its URL, for the message.
    expected : str
        What should have come (``"a gzip file"``, ``"a '|'-separated table"``), for the message.

    Raises
    ------
    InputDataError
        If the first bytes look like HTML (``<!DOCTYPE html``, ``<html``, ``<head``, ``<body``, ``<title``).
    """
    with open(path, "rb") as fh:
        head = fh.read(4096)
    original = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    text = original.lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<title")) or (
        text.startswith(b"<") and b"<html" in text
    ):
        title = ""
        start = text.find(b"<title>")
        if start >= 0:
            end = text.find(b"</title>", start)
            words = original[start + 7 : end if end > 0 else start + 100].decode("utf-8", "replace").split()
            title = f" (title: {' '.join(words)!r})"
        msg = f"{source} answered with an HTML page{title} instead of {expected}"
        raise InputDataError(msg)


class HttpClient:
    """Downloads with retries, backoff, timeouts, resume and a per-server rate limit (thread-safe).

    Parameters
    ----------
    timeout_s : float
        Connect and read timeout of one attempt, seconds.
    retries : int
        Further attempts after the first one fails for a transient reason (connection dropped or refused,
        timeout, HTTP 408/425/429/5xx). HTTP 4xx answers fail at once.
    backoff_s, max_backoff_s : float
        Delay before retry ``k`` (0-based): ``min(max_backoff_s, backoff_s * 2**k)``, or the server's
        ``Retry-After`` when it sends one (capped the same way).
    requests_per_second : float
        At most this many requests per second to one server (host and port).
    sleep : callable
        ``time.sleep``; replaceable in tests.
    clock : callable
        ``time.monotonic`` (seconds), for the rate limit; replaceable in tests.
    """

    def __init__(
        self,
        *,
        timeout_s: float = 60.0,
        retries: int = 5,
        backoff_s: float = 2.0,
        max_backoff_s: float = 120.0,
        requests_per_second: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.min_interval_s = 1.0 / requests_per_second
        self.stats = DownloadStats()
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._next_slot: dict[str, float] = {}
        self._file_locks: dict[Path, threading.Lock] = {}
        self._local = threading.local()

    def file_lock(self, path: Path) -> threading.Lock:
        """Return the lock that guards one destination file.

        It is held while the file is downloaded; take it to read or delete the file.
        """
        key = Path(path).absolute()
        with self._lock:
            return self._file_locks.setdefault(key, threading.Lock())

    def download(
        self,
        url: str,
        dest: Path,
        *,
        params: Mapping[str, str] | None = None,
        validate: Callable[[Path], None] | None = None,
        sha256: str | None = None,
    ) -> Path:
        """Fetch ``url`` into ``dest`` unless ``dest`` already exists; return ``dest``.

        Parameters
        ----------
        url : str
            Network URL, ``file://`` URL or local path.
        dest : Path
            Final file name; the transfer goes to ``dest.part`` first.
        params : mapping, optional
            Query parameters (network URLs only).
        validate : callable, optional
            Called with the complete ``.part`` file; raises (usually :class:`InputDataError`) if the content
            is not what was asked for. The ``.part`` file is then removed and ``dest`` is not written.
        sha256 : str, optional
            Expected SHA-256 (hex) of the bytes.

        Raises
        ------
        FetchError
            The server refused the request, or every attempt failed.
        InputDataError
            The content failed ``validate`` or the checksum.
        """
        dest = Path(dest)
        with self.file_lock(dest):
            if dest.exists():
                return dest
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + PART_SUFFIX)
            local = local_path(url)
            source = url if local is not None else full_url(url, params)
            if local is not None:
                self._copy_local(local, part, params)
            else:
                self._transfer_with_retries(source, part)
            try:
                if validate is not None:
                    validate(part)
                if sha256 is not None:
                    got = file_sha256(part)
                    if got.lower() != sha256.lower():
                        msg = (
                            f"{source}: SHA-256 {got} does not match the expected {sha256} (fetch.checksums)"
                        )
                        raise InputDataError(msg)
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            os.replace(part, dest)
            with self._lock:
                self.stats.files += 1
            return dest

    # ---------------------------------------------------------------------------------------------- internals

    def _copy_local(self, local: Path, part: Path, params: Mapping[str, str] | None) -> None:
        if params:
            msg = f"{local}: a local copy cannot answer a query ({dict(params)}); give a server URL"
            raise FetchError(msg)
        if not local.is_file():
            msg = f"local archive file {local} does not exist"
            raise FetchError(msg)
        shutil.copyfile(local, part)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            self._local.session = session
        return session

    def _throttle(self, url: str) -> None:
        server = urllib.parse.urlparse(url).netloc
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot.get(server, now))
            self._next_slot[server] = slot + self.min_interval_s
        if slot > now:
            self._sleep(slot - now)

    def _transfer_with_retries(self, url: str, part: Path) -> None:
        for attempt in range(self.retries + 1):
            try:
                self._transfer(url, part)
                return
            except (_Retry, *_TRANSIENT) as err:
                reason = str(err) or type(err).__name__
                if attempt == self.retries:
                    have = part.stat().st_size if part.exists() else 0
                    kept = f"; {have} bytes kept in {part} for the next run to resume" if have else ""
                    msg = f"{url}: failed after {attempt + 1} attempts: {reason}{kept}"
                    raise FetchError(msg) from err
                wait = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                if isinstance(err, _Retry) and err.wait_s is not None:
                    wait = min(self.max_backoff_s, err.wait_s)
                logger.info("%s: %s; retry %d/%d in %.1f s", url, reason, attempt + 1, self.retries, wait)
                with self._lock:
                    self.stats.retries += 1
                self._sleep(wait)

    def _transfer(self, url: str, part: Path) -> None:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        self._throttle(url)
        response = self._session().get(url, headers=headers, stream=True, timeout=self.timeout_s)
        with response:
            status = response.status_code
            if status == 416 and offset:  # the kept part is no prefix of the file any more: start afresh
                part.unlink()
                raise _Retry(f"server refused to resume at byte {offset}")
            if status in RETRY_STATUS:
                wait_s = _retry_after(response.headers.get("Retry-After"))
                raise _Retry(f"HTTP {status} {response.reason}", wait_s)
            if status >= 400:
                msg = f"{url}: HTTP {status} {response.reason}"
                raise FetchError(msg)
            start = _range_start(response.headers.get("Content-Range"))
            resumed = offset > 0 and status == 206 and start == offset
            if not resumed:
                offset = 0
            length = response.headers.get("Content-Length", "")
            expected = offset + int(length) if length.isdigit() else None
            received = 0
            try:
                with open(part, "ab" if resumed else "wb") as fh:
                    for chunk in response.raw.stream(CHUNK_BYTES, decode_content=False):
                        fh.write(chunk)
                        received += len(chunk)
            finally:
                with self._lock:
                    self.stats.bytes += received
        size = part.stat().st_size
        if expected is not None and size != expected:
            raise _Retry(f"connection closed after {size} of {expected} bytes")


def _range_start(content_range: str | None) -> int | None:
    """First byte of a ``Content-Range: bytes START-END/TOTAL`` header."""
    if not content_range or not content_range.startswith("bytes "):
        return None
    start = content_range[6:].split("-", 1)[0].strip()
    return int(start) if start.isdigit() else None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
