"""A GET's answer as the transports hand it up: :class:`Body`, and the Range headers and
refusals (412, 416) both transports read alike."""

from __future__ import annotations

import email.utils
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from ._errors import (
    InvalidRangeError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
)
from ._models import ObjectInfo, unquote_etag
from ._sizes import BODY_CHUNK

__all__ = [
    "Body",
    "Range",
    "parse_content_range",
    "range_header",
    "refused_get",
]

_META = "x-amz-meta-"

Range = tuple[int, int | None]
"""``(start, end)``: bytes ``[start, end)``; ``(start, None)``: from ``start`` to the end;
``(-n, None)``: the last ``n`` bytes."""


class Body:
    """An open answer to a GET: ``async for chunk in body`` (pieces as they arrive, at most
    :data:`BODY_CHUNK` each) or ``await body.read()`` (the rest, whole).

    A body cut short (a broken connection, fewer bytes than its ``Content-Length``) raises
    :class:`~mpr_storage.StorageConnectionError`; it is never retried here: the caller resumes
    with a Range request for the rest.

    Attributes:
        status: 200, or 206 for a range.
        size: the whole object's size (``Content-Length`` of a 200, the total of a 206's
            ``Content-Range``), ``None`` if the server did not say.
        length: the bytes of this body (``None``: unknown, e.g. chunked).
        start: the offset of its first byte in the object.
        etag: the object's ETag, unquoted.
        content_type: its ``Content-Type``, if any.
        last_modified: its ``Last-Modified``, if any.
        metadata: user metadata (``x-amz-meta-*``, names without the prefix).
    """

    __slots__ = (
        "status",
        "size",
        "length",
        "start",
        "etag",
        "content_type",
        "_headers",
        "_read",
        "_where",
        "_received",
        "_rest",
    )

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        read: Callable[[int], Awaitable[bytes]],
        where: tuple[str, str, str],
    ) -> None:
        """``headers``: the answer's (looked up by lowercase name: aiohttp's are
        case-insensitive, botocore's lowercase); ``read(n)``: the next piece as it comes
        (``n`` > 0: what the HTTP client holds, however much), ``b""`` at the end, all of the
        rest for ``n=-1``; its client's errors already translated into ours (the transport's
        ``map_errors``)."""
        self.status = status
        self._headers = headers
        self._read = read
        self._where = where
        self._received = 0
        self._rest = b""
        length = headers.get("content-length")
        self.length = int(length) if length is not None else None
        self.etag = unquote_etag(headers.get("etag"))
        self.content_type = headers.get("content-type")
        self.start, self.size = 0, self.length
        if status == 206:
            self.start, end, self.size = parse_content_range(headers.get("content-range"))
            if self.length is None and end is not None:
                self.length = end - self.start

    @property
    def last_modified(self) -> datetime | None:
        value = self._headers.get("last-modified")
        return email.utils.parsedate_to_datetime(value) if value else None

    @property
    def metadata(self) -> dict[str, str]:
        return {
            name[len(_META) :].lower(): value
            for name, value in self._headers.items()
            if name.lower().startswith(_META)
        }

    def info(self, key: str) -> ObjectInfo:
        """The whole object as this answer describes it (``size`` -1 when unknown)."""
        size = self.size if self.size is not None else -1
        return ObjectInfo(
            key, size, self.etag, self.last_modified, self.content_type, self.metadata
        )

    def __aiter__(self) -> Body:
        return self

    async def __anext__(self) -> bytes:
        chunk = self._rest
        if chunk:
            self._rest = b""
        else:
            chunk = await self._read(BODY_CHUNK)
            if not chunk:
                self._check_complete()
                raise StopAsyncIteration
            self._received += len(chunk)
        if len(chunk) > BODY_CHUNK:  # rare: what the HTTP client held was more
            chunk, self._rest = chunk[:BODY_CHUNK], chunk[BODY_CHUNK:]
        return chunk

    async def read(self) -> bytes:
        """The rest of the body, whole (checked against its length)."""
        data = await self._read(-1)
        self._received += len(data)
        self._check_complete()
        if self._rest:
            data, self._rest = self._rest + data, b""
        return data

    def _check_complete(self) -> None:
        if self.length is not None and self._received != self.length:
            operation, bucket, key = self._where
            raise StorageConnectionError(
                f"body truncated at {self._received} of {self.length} bytes",
                operation=operation,
                bucket=bucket,
                key=key,
            )


def range_header(span: Range) -> str:
    """The ``Range`` header of a :data:`Range`: ``bytes=a-b`` (b inclusive), ``bytes=a-`` or
    ``bytes=-n``."""
    start, end = span
    if end is None:
        return f"bytes={start}-" if start >= 0 else f"bytes={start}"
    if not 0 <= start < end:
        raise ValueError(f"an empty or negative byte range: {span!r}")
    return f"bytes={start}-{end - 1}"


def parse_content_range(value: str | None) -> tuple[int, int | None, int | None]:
    """``Content-Range: bytes a-b/total`` as ``(a, b + 1, total)``; ``*`` parts are ``None``."""
    try:
        unit, _, rest = (value or "").partition(" ")
        span, _, total = rest.partition("/")
        size = None if total.strip() in ("", "*") else int(total)
        if span.strip() == "*":
            return 0, None, size
        first, _, last = span.partition("-")
        return int(first), int(last) + 1, size
    except ValueError:
        return 0, None, None


def refused_get(
    status: int, headers: Mapping[str, str], where: tuple[str, str, str]
) -> StorageError:
    """Our error for a GET refused with 416 (the range is outside the object: the size from
    ``Content-Range: bytes */size``) or 412 (``If-Match`` no longer holds)."""
    operation, bucket, key = where
    if status == 416:
        size = parse_content_range(headers.get("content-range"))[2]
        return InvalidRangeError(
            "the byte range is outside the object"
            + (f" of {size} bytes" if size is not None else ""),
            size=size,
            operation=operation,
            bucket=bucket,
            key=key,
            code="InvalidRange",
            status=416,
        )
    return PreconditionFailedError(
        "the object was replaced meanwhile: its ETag no longer matches (If-Match)",
        operation=operation,
        bucket=bucket,
        key=key,
        code="PreconditionFailed",
        status=412,
    )
