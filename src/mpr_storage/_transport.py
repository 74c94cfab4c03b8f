"""The transport: list/get/put/head/delete for one store, behind one interface, two ways.

:class:`Transport` is what every single-object call, listing and bulk transfer goes through.
It is opened once per :class:`~mpr_storage.Storage` and owns credentials, TLS, proxies,
regions, retries (one loop, :mod:`._retry`) and response parsing. Two implementations:

- :class:`~._http.FastTransport` (``S3_FAST_PATH=1``, the default) signs requests in botocore's
  SigV4 form and sends them on one aiohttp session;
- :class:`~._botocore.BotocoreTransport` (``S3_FAST_PATH=0``) sends them through an aiobotocore
  client whose own retries are off, so that both paths retry, fail and read alike.
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import anyio

from ._config import Checksum, StorageSettings
from ._errors import StorageConnectionError, StorageError
from ._files import CHECKSUM_HEADERS, LocalIO, atomic_writer, digests, hash_fd, read_fd
from ._models import BytesCallback, ObjectInfo
from ._retry import RetryPolicy, retrying
from ._xml import ListPage

__all__ = [
    "BULK_READ_AHEAD",
    "SMALL_BODY",
    "Body",
    "ByteProgress",
    "Fetched",
    "Throttle",
    "Transport",
    "Upload",
    "aws_endpoint",
    "CopySource",
    "Part",
    "check_length",
    "write_body",
]

T = TypeVar("T")

SMALL_BODY = 1024 * 1024  # bodies up to this are read whole and written in one call

BULK_READ_AHEAD = 64 * 1024
"""The ``read_ahead`` of bulk transfers. aiohttp stops reading a response's socket once it
holds more than twice this, so it holds at most ~384 KiB (with one socket read of 256 KiB)
of a body whose previous block waits for a slow disk: with that block, under 1 MiB per
transfer. Its default (256 KiB, so up to 768 KiB) broke the bound of ``concurrency x 1 MiB``
when writes go to worker threads; one stream alone reads ~10% faster with it, which is why
single downloads keep it. The fast path only: aiobotocore's sessions keep aiohttp's default."""

WRITE_BLOCK = 1024 * 1024
"""The largest write of a streamed download: one call per MiB, on the event loop while the
disk keeps up (~5% faster for one stream than 256 KiB writes). Bulk transfers write
:data:`~._files.STREAM_CHUNK` blocks, which keeps their memory bound."""

Throttle = Callable[[], object]
"""``on_throttle()``: the server asked to slow down."""


_BYTES_INTERVAL = 0.1  # seconds between two progress calls ...
_BYTES_STEP = 1024 * 1024  # ... unless this many bytes moved since the last one


class ByteProgress:
    """Calls ``on_progress(done_bytes, total_bytes)`` as bytes move (at most every 0.1 s or
    every MiB, whichever comes first) and once more at the end; a retry starts from 0."""

    def __init__(self, callback: BytesCallback | None) -> None:
        self._callback = callback
        self.done = 0
        self.total: int | None = None
        self._last_time = 0.0
        self._last_done = 0
        self._reported: tuple[int, int | None] | None = None

    def start(self, total: int | None) -> None:
        """An attempt begins (again): ``total`` bytes are to move."""
        self.done = self._last_done = 0
        self.total = total

    async def add(self, nbytes: int) -> None:
        self.done += nbytes
        if self._callback is None:
            return
        now = time.monotonic()
        if now - self._last_time >= _BYTES_INTERVAL or self.done - self._last_done >= _BYTES_STEP:
            self._last_time, self._last_done = now, self.done
            await self._call()

    async def finish(self) -> None:
        if self._callback is not None:
            await self._call()

    async def _call(self) -> None:
        assert self._callback is not None
        if (self.done, self.total) == self._reported:
            return  # the end, already said
        self._reported = (self.done, self.total)
        result = self._callback(self.done, self.total)
        if inspect.isawaitable(result):
            await result


@dataclass(frozen=True, slots=True)
class Body:
    """An answer to a GET, as :func:`write_body` reads it."""

    length: int | None
    etag: str
    read: Callable[[], Awaitable[bytes]]
    chunks: Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class Upload:
    """A file to PUT: its descriptor and size, its bytes when small, its digests."""

    fd: int
    size: int
    data: bytes | None
    checksum: tuple[str, str]  # the header (Content-MD5 or x-amz-checksum-crc32) and its value
    sha256: str | None  # None: the transport does not sign the payload's hash
    content_type: str


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a GET wrote: its size, the object's ETag, and the file's mtime after the write."""

    size: int
    etag: str
    mtime_ns: int


def aws_endpoint(region: str) -> str:
    """AWS S3's regional endpoint (the global one for us-east-1), as botocore resolves it."""
    return (
        "https://s3.amazonaws.com"
        if region == "us-east-1"
        else f"https://s3.{region}.amazonaws.com"
    )


def check_length(received: int, expected: int, operation: str, bucket: str, key: str) -> None:
    """Never rename a truncated body into place: a short read is a (retryable) broken
    connection."""
    if received != expected:
        raise StorageConnectionError(
            f"body truncated at {received} of {expected} bytes",
            operation=operation,
            bucket=bucket,
            key=key,
        )


async def write_body(
    path: Path,
    length: int | None,
    read_all: Callable[[], Awaitable[bytes]],
    chunks: Callable[[], AsyncIterator[bytes]],
    *,
    io: LocalIO,
    where: tuple[str, str, str],
    prepare: Callable[[], object] | None,
    progress: ByteProgress | None,
    block: int,
) -> tuple[int, int]:
    """Write a response body to ``path`` atomically: ``(bytes, mtime_ns)``. Bodies up to
    :data:`SMALL_BODY` are read whole, larger ones written as they arrive, in writes of at
    most ``block`` bytes; a body shorter than ``length`` is never renamed into place.
    ``prepare()`` (making the directory) runs first."""
    operation, bucket, key = where
    if prepare is not None:  # the object is there: its directory may be made now
        await io.run(prepare, 0)
    if progress is not None:
        progress.start(length)
    if length is not None and length <= SMALL_BODY:
        data = await read_all()
        check_length(len(data), length, operation, bucket, key)
        mtime_ns = await io.write_file(path, data)
        if progress is not None:
            await progress.add(len(data))
        return len(data), mtime_ns

    async def counted() -> AsyncIterator[bytes]:
        async for chunk in chunks():
            yield chunk
            if progress is not None:
                await progress.add(len(chunk))

    async with atomic_writer(path, io, block=block) as f:
        # The pieces as they arrive, written a block at a time with one writev: no copy and
        # no block-sized allocation per write, whatever the disk's speed.
        received = await f.write_all(counted() if progress is not None else chunks())
        if length is not None:
            check_length(received, length, operation, bucket, key)  # before the rename
    return received, (await anyio.Path(path).stat()).st_mtime_ns


class Transport(abc.ABC):
    """Requests to one store. Each method is one logical request: retried as botocore's
    standard mode would (see :func:`._retry.retrying`), its errors translated to
    :class:`~mpr_storage.StorageError` subclasses naming operation, bucket and key."""

    signs_payload: bool
    """Whether a PUT's signature covers the SHA-256 of its body, so :meth:`put_file` computes
    it. Each PUT also carries a checksum the server checks (:attr:`upload_checksum`)."""

    def __init__(self, settings: StorageSettings, endpoint_url: str, credentials: Any) -> None:
        self.settings = settings
        self.endpoint_url = endpoint_url
        self.upload_checksum: Checksum = settings.profile.upload_checksum
        self.policy = RetryPolicy(settings.max_attempts, settings.retry_budget)
        self._credentials = credentials  # botocore's (refreshable) credentials, or None
        self._refresh_lock = anyio.Lock()
        self._refreshed_at = 0.0

    async def retry(self, call: Callable[[], Awaitable[T]], on_throttle: Throttle | None) -> T:
        """``call()`` under the retry policy, with one credential refresh on stale-token
        answers."""
        return await retrying(call, self.policy, refresh=self.refresh, on_throttle=on_throttle)

    async def refresh(self, error: StorageError) -> bool:
        """Refresh the credentials now, after an ``ExpiredToken``-class answer, and say to try
        the request once more. botocore refreshes ahead of the expiry it was told; a server
        that disagrees (a revoked token, a skewed clock) gets fresh credentials at once."""
        force = getattr(self._credentials, "_protected_refresh", None)
        if force is None:
            return True  # static credentials: nothing to re-read, one more try all the same
        async with self._refresh_lock:
            now = time.monotonic()
            if now - self._refreshed_at > 1.0:  # many requests fail at once: refresh once
                with contextlib.suppress(Exception):  # botocore logs it; the retry tells
                    await force(is_mandatory=True)
                self._refreshed_at = time.monotonic()
        return True

    @abc.abstractmethod
    async def list_page(
        self,
        bucket: str,
        prefix: str,
        token: str | None,
        *,
        max_keys: int | None = None,
        operation: str = "list_objects",
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> ListPage:
        """One ``ListObjectsV2`` page (retried on its own: a listing resumes where it was);
        ``start_after``: only keys after this one; ``delimiter``: keys past it are rolled up
        into the page's common prefixes."""

    @abc.abstractmethod
    async def head(self, bucket: str, key: str, *, operation: str) -> ObjectInfo:
        """HEAD: size, ETag, last modified, content type and user metadata."""

    async def get_to_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        io: LocalIO,
        operation: str,
        prepare: Callable[[], object] | None = None,
        if_none_match: str | None = None,
        progress: ByteProgress | None = None,
        on_throttle: Throttle | None = None,
        read_ahead: int | None = None,
        block: int = WRITE_BLOCK,
    ) -> Fetched | None:
        """GET ``key`` into ``path`` atomically (temp file + rename); ``None`` when
        ``if_none_match`` (an ETag) still matches (304, no body). ``prepare()`` (blocking:
        creating the parent directories) runs once the object is found, before the write. A
        body cut short is fetched again, never renamed into place.

        ``read_ahead``: what the HTTP client may buffer of a streamed body while a block of it
        is being written, by default its own choice (see :data:`BULK_READ_AHEAD`); ``block``:
        the largest write of a streamed body (see :data:`WRITE_BLOCK`)."""

        async def attempt() -> Fetched | None:
            async with self._get(bucket, key, operation, if_none_match, read_ahead) as body:
                if body is None:
                    return None
                size, mtime_ns = await write_body(
                    path,
                    body.length,
                    body.read,
                    body.chunks,
                    io=io,
                    where=(operation, bucket, key),
                    prepare=prepare,
                    progress=progress,
                    block=block,
                )
                return Fetched(size, body.etag, mtime_ns)

        return await self.retry(attempt, on_throttle)

    async def put_file(
        self,
        bucket: str,
        key: str,
        fd: int,
        size: int,
        *,
        data: bytes | None = None,
        content_type: str,
        io: LocalIO,
        operation: str,
        progress: ByteProgress | None = None,
        on_throttle: Throttle | None = None,
    ) -> str:
        """PUT the first ``size`` bytes of the open file ``fd``: read whole up to
        :data:`SMALL_BODY` (``data``: read already), else hashed in one streaming pass and
        streamed from the file (its :attr:`upload_checksum` checked by the server). Returns
        the ETag."""
        kind, sign = self.upload_checksum, self.signs_payload
        if size <= SMALL_BODY:
            if data is None:
                data = await io.run(partial(read_fd, fd, size), size)
            value, sha256 = digests(data, checksum=kind, sha256=sign)
        else:
            data = None
            hashed = partial(hash_fd, fd, size, checksum=kind, sha256=sign)
            value, sha256 = await io.run(hashed, size)
        checksum = (CHECKSUM_HEADERS[kind], value)
        body = Upload(fd, size, data, checksum, sha256, content_type)

        async def attempt() -> str:
            if progress is not None:
                progress.start(size)
            etag = await self._put(bucket, key, body, io=io, operation=operation, progress=progress)
            if data is not None and progress is not None:
                await progress.add(size)
            return etag

        return await self.retry(attempt, on_throttle)

    @abc.abstractmethod
    def _get(
        self,
        bucket: str,
        key: str,
        operation: str,
        if_none_match: str | None,
        read_ahead: int | None,
    ) -> AbstractAsyncContextManager[Body | None]:
        """One GET: the open body, or ``None`` for a 304 answer."""

    @abc.abstractmethod
    async def _put(
        self,
        bucket: str,
        key: str,
        body: Upload,
        *,
        io: LocalIO,
        operation: str,
        progress: ByteProgress | None,
    ) -> str:
        """One PUT of ``body`` (its ETag back); a streamed body reports its bytes to
        ``progress`` as they go."""

    @abc.abstractmethod
    async def create_multipart(
        self, bucket: str, key: str, *, content_type: str, operation: str
    ) -> str:
        """Start a multipart upload; returns its upload id."""

    @abc.abstractmethod
    async def upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes, *, operation: str
    ) -> str:
        """Upload one part; returns its ETag (quoted, as the completion wants it)."""

    @abc.abstractmethod
    async def complete_multipart(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
        *,
        operation: str,
    ) -> str:
        """Complete a multipart upload from ``(number, etag)`` parts; returns the ETag."""

    @abc.abstractmethod
    async def abort_multipart(
        self, bucket: str, key: str, upload_id: str, *, operation: str
    ) -> None:
        """Abort a multipart upload (its parts are freed)."""

    @abc.abstractmethod
    async def delete_batch(
        self, bucket: str, keys: list[str], *, operation: str
    ) -> list[tuple[str, str, str]]:
        """``DeleteObjects`` (quiet) of up to 1000 keys: ``(key, code, message)`` of failures."""

    @abc.abstractmethod
    async def delete_one(self, bucket: str, key: str, *, operation: str) -> None:
        """DELETE one key (a missing key is not an error)."""

    @abc.abstractmethod
    async def list_buckets(self, *, operation: str = "list_buckets") -> list[str]:
        """The names of the buckets the credentials can see."""

    @abc.abstractmethod
    async def copy(
        self, source: CopySource, bucket: str, key: str, *, operation: str
    ) -> tuple[str, datetime | None]:
        """``CopyObject`` of ``source`` to ``key``, on the server (its metadata and content
        type kept): the copy's ETag and last-modified time. A 200 answer reporting an error
        raises it."""

    @abc.abstractmethod
    async def create_multipart_copy(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None,
        metadata: Mapping[str, str],
        operation: str,
    ) -> str:
        """Start the multipart upload of a copy, with the source's content type and user
        metadata (a multipart copy does not carry them); returns its upload id."""

    @abc.abstractmethod
    async def upload_part_copy(
        self,
        source: CopySource,
        bucket: str,
        key: str,
        upload_id: str,
        part: Part,
        *,
        operation: str,
    ) -> str:
        """``UploadPartCopy`` of the source's bytes ``first..last`` (inclusive) as part
        ``number`` (``part``); returns its ETag (quoted, as the completion wants it)."""


Part = tuple[int, int, int]
"""A part of a multipart copy: ``(number, first, last)``, its byte range inclusive."""


@dataclass(frozen=True, slots=True)
class CopySource:
    """The object a copy reads: ``bucket``, ``key`` and the ``etag`` it must still have (a
    copy condition: a source replaced meanwhile is refused with 412), if any."""

    bucket: str
    key: str
    etag: str | None = None

    def headers(self) -> dict[str, str]:
        """``x-amz-copy-source`` as botocore writes it (``bucket/key`` percent-encoded, ``/``
        kept) and ``x-amz-copy-source-if-match``."""
        found = {"x-amz-copy-source": quote(f"{self.bucket}/{self.key}", safe="-._~/")}
        if self.etag:
            found["x-amz-copy-source-if-match"] = f'"{self.etag}"'
        return found
