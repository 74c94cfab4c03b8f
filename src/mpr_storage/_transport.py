"""The transport: list/get/put/head/delete for one store, behind one interface, two ways.

:class:`Transport` is what every single-object call, listing and bulk transfer goes through.
It is opened once per :class:`~mpr_storage.Storage` and owns credentials, TLS, proxies,
regions, retries (one loop, :mod:`._retry`) and response parsing. Two implementations:

- :class:`~._fast.FastTransport` (``S3_FAST_PATH=1``, the default) signs requests in botocore's
  SigV4 form and sends them on one aiohttp session;
- :class:`~._botocore.BotocoreTransport` (``S3_FAST_PATH=0``) sends them through an aiobotocore
  client whose own retries are off, so that both paths retry, fail and read alike.
"""

from __future__ import annotations

import abc
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, Literal, TypeVar

import anyio

from ._body import Body, Range, range_header
from ._checksums import CHECKSUM_HEADERS, digests
from ._config import Checksum, StorageSettings
from ._errors import ObjectExistsError, StorageError
from ._models import ObjectInfo
from ._payload import CopySource, Part, Payload
from ._retry import RetryPolicy, retrying
from ._sizes import SMALL_BODY
from ._xml import ListPage

__all__ = [
    "Body",
    "Range",
    "Throttle",
    "Transport",
    "aws_endpoint",
]

T = TypeVar("T")

Throttle = Callable[[], object]
"""``on_throttle()``: the server asked to slow down."""


def aws_endpoint(region: str) -> str:
    """AWS S3's regional endpoint (the global one for us-east-1), as botocore resolves it."""
    return (
        "https://s3.amazonaws.com"
        if region == "us-east-1"
        else f"https://s3.{region}.amazonaws.com"
    )


class Transport(abc.ABC):
    """Requests to one store. Each method is one logical request: retried as botocore's
    standard mode would (see :func:`._retry.retrying`), its errors translated to
    :class:`~mpr_storage.StorageError` subclasses naming operation, bucket and key."""

    signs_payload: bool
    """Whether the signature of a PUT or UploadPart covers the SHA-256 of its body, so a
    :class:`Payload` must carry it. Each also carries a checksum the server checks
    (:attr:`upload_checksum`, :attr:`part_checksum`)."""

    part_checksum: Checksum = "md5"
    """The checksum of an UploadPart: Content-MD5 on every provider (a CRC-32 of each part
    would have to be announced when the upload is created)."""

    def __init__(self, settings: StorageSettings, endpoint_url: str, credentials: Any) -> None:
        self.settings = settings
        self.endpoint_url = endpoint_url
        self.upload_checksum: Checksum = settings.profile.upload_checksum
        self.policy = RetryPolicy(settings.max_attempts, settings.retry_budget)
        self._credentials = credentials  # botocore's (refreshable) credentials, or None
        self._refresh_lock = anyio.Lock()
        self._refreshed_at = 0.0

    async def retry(
        self,
        call: Callable[[], Awaitable[T]],
        on_throttle: Throttle | None,
        *,
        failed: StorageError | None = None,
    ) -> T:
        """``call()`` under the retry policy, with one credential refresh on stale-token
        answers; ``failed``: the error of a first attempt already made."""
        return await retrying(
            call, self.policy, refresh=self.refresh, on_throttle=on_throttle, failed=failed
        )

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

    def get(
        self,
        bucket: str,
        key: str,
        *,
        operation: str,
        range: Range | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        read_ahead: int | None = None,
        on_throttle: Throttle | None = None,
    ) -> AbstractAsyncContextManager[Body | None]:
        """``async with transport.get(...) as body``: one GET, its :class:`Body` open (or
        ``None`` for a 304: ``if_none_match``, an unquoted ETag, still matches).

        ``range``: a :data:`Range` (a 206 answer; a server without ranges answers 200 with the
        whole object: check ``body.status``); ``if_match``: an unquoted ETag the object must
        still have, else :class:`~mpr_storage.PreconditionFailedError`. A range outside the
        object raises :class:`~mpr_storage.InvalidRangeError` (``.size``). Opening the
        answer (until its headers) is retried (``on_throttle()`` told of throttling); reading
        the body is not. ``read_ahead``: what the HTTP client may buffer of the body (see
        :data:`~._sizes.BULK_READ_AHEAD`; the fast path only)."""
        headers = {"Range": range_header(range)} if range is not None else {}
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        if if_none_match:
            headers["If-None-Match"] = f'"{if_none_match}"'
        return _RetriedGet(self, (operation, bucket, key), headers, read_ahead, on_throttle)

    async def put(
        self,
        bucket: str,
        key: str,
        body: bytes | Payload,
        *,
        content_type: str,
        operation: str,
        if_none_match: Literal["*"] | None = None,
        on_throttle: Throttle | None = None,
    ) -> str:
        """PutObject: ``body`` as bytes (its checksum, :attr:`upload_checksum`, computed here)
        or as a :class:`Payload`; returns the ETag. ``if_none_match="*"`` writes only where
        no object is: an existing key raises :class:`~mpr_storage.ObjectExistsError` and is
        left untouched."""
        payload = await self._payload(body, self.upload_checksum)

        async def attempt() -> str:
            try:
                return await self._put(
                    bucket,
                    key,
                    payload,
                    content_type=content_type,
                    operation=operation,
                    if_none_match=if_none_match,
                )
            except StorageError as exc:
                if if_none_match is None or exc.status != 412:
                    raise
                raise ObjectExistsError(
                    "the key exists already (If-None-Match: *): left untouched",
                    operation=operation,
                    bucket=bucket,
                    key=key,
                    code=exc.code,
                    status=exc.status,
                ) from exc

        return await self.retry(partial(self._sending, payload, attempt), on_throttle)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: bytes | Payload,
        *,
        operation: str,
        on_throttle: Throttle | None = None,
    ) -> str:
        """UploadPart: part ``number`` of ``upload_id``, as bytes (its checksum,
        :attr:`part_checksum`, computed here) or as a :class:`Payload`; returns the part's
        ETag, quoted as the completion wants it."""
        payload = await self._payload(body, self.part_checksum)
        attempt = partial(
            self._upload_part, bucket, key, upload_id, number, payload, operation=operation
        )
        return await self.retry(partial(self._sending, payload, attempt), on_throttle)

    @staticmethod
    async def _sending(payload: Payload, attempt: Callable[[], Awaitable[T]]) -> T:
        """One attempt to send ``payload``. If it fails because the body's source did
        (:attr:`Payload.failed`), that error ends the retries instead."""
        try:
            return await attempt()
        except Exception as exc:
            if payload.failed is not None and (source := await payload.failed()) is not None:
                raise source from exc
            raise

    async def _payload(self, body: bytes | Payload, kind: Checksum) -> Payload:
        """``body`` as a :class:`Payload`: the digests of bytes computed (in a worker thread
        when they are large)."""
        if isinstance(body, Payload):
            return body
        hashed = partial(digests, body, checksum=kind, sha256=self.signs_payload)
        if len(body) > SMALL_BODY:
            value, sha256 = await anyio.to_thread.run_sync(hashed)
        else:
            value, sha256 = hashed()
        return Payload(len(body), (CHECKSUM_HEADERS[kind], value), sha256, body)

    @abc.abstractmethod
    def _get(
        self, where: tuple[str, str, str], headers: dict[str, str], read_ahead: int | None
    ) -> AbstractAsyncContextManager[Body | None]:
        """One GET with these request ``headers`` (Range, If-Match, If-None-Match), not
        retried: the open body, or ``None`` for a 304; a 412 or 416 raises
        :func:`~._body.refused_get`'s error."""

    @abc.abstractmethod
    async def _put(
        self,
        bucket: str,
        key: str,
        body: Payload,
        *,
        content_type: str,
        operation: str,
        if_none_match: str | None,
    ) -> str:
        """One PutObject attempt (a streamed body is read from its start); its ETag back."""

    @abc.abstractmethod
    async def create_multipart(
        self, bucket: str, key: str, *, content_type: str, operation: str
    ) -> str:
        """Start a multipart upload; returns its upload id."""

    @abc.abstractmethod
    async def _upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, body: Payload, *, operation: str
    ) -> str:
        """One UploadPart attempt; the part's ETag back (quoted)."""

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


class _RetriedGet:
    """``async with`` a GET whose opening is retried: each attempt enters a fresh request until
    one answers; its exit closes that one. The first attempt runs outside the retry loop and
    nothing is bound per call: a bulk download holds one of these per object in flight, and
    each object it holds across the wait is one more for the garbage collector to walk."""

    __slots__ = ("_transport", "_where", "_headers", "_read_ahead", "_on_throttle", "_entered")

    def __init__(
        self,
        transport: Transport,
        where: tuple[str, str, str],
        headers: dict[str, str],
        read_ahead: int | None,
        on_throttle: Throttle | None,
    ) -> None:
        self._transport = transport
        self._where = where
        self._headers = headers
        self._read_ahead = read_ahead
        self._on_throttle = on_throttle
        self._entered: AbstractAsyncContextManager[Body | None] | None = None

    async def __aenter__(self) -> Body | None:
        try:
            return await self._attempt()
        except StorageError as exc:
            failed = exc
        return await self._transport.retry(self._attempt, self._on_throttle, failed=failed)

    async def _attempt(self) -> Body | None:
        request = self._transport._get(self._where, self._headers, self._read_ahead)
        body = await request.__aenter__()
        self._entered = request
        return body

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._entered is not None:
            await self._entered.__aexit__(exc_type, exc, tb)
