"""Objects read into memory or as streams (``open_object``, ``get_bytes``), written from
memory (``put_bytes``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Literal

from ._body import Body, Range
from ._client import BaseStorage
from ._errors import InvalidRangeError, StorageError
from ._keys import check_bucket_and_key
from ._models import ObjectInfo
from ._put import guess_content_type

__all__ = ["ObjectBody", "get_bytes", "open_object", "put_bytes"]


def _span(start: int, end: int | None) -> Range | None:
    """The GET's :data:`Range` for the slice ``[start, end)`` (``None``: the whole object)."""
    if end is None:
        return None if start == 0 else (start, None)
    if start < 0 or end <= start:
        raise ValueError(
            f"an empty or backward byte range: start={start}, end={end} "
            "(end must be above start; a negative start takes no end)"
        )
    return (start, end)


class ObjectBody:
    """An open object (or its range) from :func:`mpr_storage.open_object`.

    Attributes:
        info: the whole object's :class:`ObjectInfo` (size, ETag, last modified, content type,
            metadata).
        start: the offset of the first byte served.
        end: the offset after the last byte served: the range is ``[start, end)``.
    """

    __slots__ = ("info", "start", "end", "_body", "_skip", "_left", "_exact")

    def __init__(self, body: Body, bucket: str, key: str, start: int, end: int | None) -> None:
        self._body = body
        self.info = body.info(key)
        size = self.info.size
        self._skip = 0
        self._exact = body.status == 206 or (start == 0 and end is None)
        if self._exact:
            self.start = body.start
            length = body.length if body.length is not None else size - body.start
        else:  # a server without ranges answered the whole object: serve the slice of it
            first = max(size + start, 0) if start < 0 else start
            if first >= size:
                raise InvalidRangeError(
                    f"the byte range is outside the object of {size} bytes",
                    size=size,
                    operation="open_object",
                    bucket=bucket,
                    key=key,
                    code="InvalidRange",
                    status=416,
                )
            self.start, self._skip = first, first
            length = (size if end is None else min(end, size)) - first
        self.end = self.start + length
        self._left = length

    def __aiter__(self) -> ObjectBody:
        return self

    async def __anext__(self) -> bytes:
        while self._left > 0:
            chunk = await self._body.__anext__()
            if self._skip:
                cut = min(self._skip, len(chunk))
                chunk, self._skip = chunk[cut:], self._skip - cut
            if chunk:
                chunk = chunk[: self._left]
                self._left -= len(chunk)
                return chunk
        raise StopAsyncIteration

    async def read(self) -> bytes:
        """The rest of the range, whole, in memory."""
        if self._exact:  # the body is the range: read it in one piece
            data = await self._body.read()
            self._left -= len(data)
            return data
        return b"".join([chunk async for chunk in self])


def open_object(
    storage: BaseStorage, bucket: str, key: str, *, start: int = 0, end: int | None = None
) -> AbstractAsyncContextManager[ObjectBody]:
    """Open ``key`` (or its bytes ``[start, end)``) as a stream, with one GET.

    ```python
    async with open_object(bucket, "sources/a.mp4", start=1 << 20, end=2 << 20) as body:
        body.info.size, body.info.content_type   # the whole object's
        body.start, body.end                     # the range served
        async for chunk in body:                 # chunks of at most 1 MiB
            ...
    ```

    A negative ``start`` means the last ``-start`` bytes (as in slicing, without an ``end``);
    ``end=None`` reads to the end; an ``end`` beyond the object is clamped to its size (as
    S3 does), so ``body.end`` says what is served. ``await body.read()`` reads the rest into
    memory. Leaving the block early, by an exception or a cancellation, releases the
    connection.

    Raises:
        InvalidRangeError: ``start`` is at or beyond the object's end (a ``ValueError``;
            ``.size`` is the object's size).
        ValueError: ``end`` is not above ``start``, or given with a negative ``start``.
        ObjectNotFoundError: the key does not exist (also a ``FileNotFoundError``).
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the key is empty or too long.
        StorageConnectionError: the endpoint can't be reached, after retries, or the body was
            cut short.
    """
    op = "open_object"
    check_bucket_and_key(bucket, key, operation=op)
    return _open(storage, bucket, key, start, end)


@contextlib.asynccontextmanager
async def _open(
    storage: BaseStorage, bucket: str, key: str, start: int, end: int | None
) -> AsyncIterator[ObjectBody]:
    op = "open_object"
    span = _span(start, end)
    transport = await storage.transport()
    async with contextlib.AsyncExitStack() as stack:
        try:
            body = await stack.enter_async_context(
                transport.get(bucket, key, operation=op, range=span)
            )
        except InvalidRangeError as exc:
            if exc.size is not None:
                raise
            # a server whose 416 does not say the size (no Content-Range): ask it, for .size
            size = (await transport.head(bucket, key, operation=op)).size
            raise InvalidRangeError(
                f"the byte range is outside the object of {size} bytes",
                size=size,
                operation=op,
                bucket=bucket,
                key=key,
                code=exc.code,
                status=exc.status,
            ) from None
        assert body is not None  # no If-None-Match: never a 304
        yield ObjectBody(body, bucket, key, start, end)


async def get_bytes(
    storage: BaseStorage, bucket: str, key: str, *, start: int = 0, end: int | None = None
) -> bytes:
    """The object ``key``, or its bytes ``[start, end)``, in memory (one GET).

    For handler-sized objects: overlays, JSON, one frame. A negative ``start`` means the last
    ``-start`` bytes (as in slicing, without an ``end``); an ``end`` beyond the object is
    clamped to its size (as S3 does), so ``get_bytes(b, k, start=0, end=10**9)`` is the whole
    object.

    ```python
    header = await get_bytes(bucket, "sources/a.mp4", end=64 * 1024)
    overlay = json.loads(await get_bytes(bucket, "overlays/run-1.json"))
    ```

    Raises:
        InvalidRangeError: ``start`` is at or beyond the object's end (a ``ValueError``;
            ``.size`` is the object's size).
        ValueError: ``end`` is not above ``start``, or given with a negative ``start``.
        ObjectNotFoundError: the key does not exist (also a ``FileNotFoundError``).
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the key is empty or too long.
        StorageConnectionError: the endpoint can't be reached, after retries, or the body was
            cut short.
    """
    async with open_object(storage, bucket, key, start=start, end=end) as body:
        return await body.read()


async def put_bytes(
    storage: BaseStorage,
    data: bytes | bytearray | memoryview,
    bucket: str,
    key: str,
    *,
    content_type: str | None = None,
    overwrite: bool = True,
) -> ObjectInfo:
    """Write ``data`` (any bytes-like object) to ``key`` with one PutObject.

    ``content_type`` defaults from the key's ending (``.json`` -> ``application/json``).
    ``overwrite=False`` creates the key only where none is (``If-None-Match: *``): an existing
    key raises :class:`ObjectExistsError` and is left untouched, and of concurrent create-only
    writers exactly one wins.

    ```python
    await put_bytes(json.dumps(overlay).encode(), bucket, "overlays/run-1.json")
    await put_bytes(jpeg, bucket, "frames/tl-1/000001.jpg", overwrite=False)
    ```

    Returns:
        The object's :class:`ObjectInfo`: its key, size, ETag and content type.

    Raises:
        ObjectExistsError: ``overwrite=False`` and the key exists (a ``FileExistsError``).
        StorageError: ``overwrite=False`` on a provider without create-only writes (GCS's XML
            API: its precondition is a generation, not ``If-None-Match``); nothing is written.
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the key is empty or too long.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    op = "put_bytes"
    check_bucket_and_key(bucket, key, operation=op)
    profile = storage.settings.profile
    if not overwrite and not profile.create_only:
        # a HEAD, then a PUT would be a race, not a guarantee: refuse before writing anything
        raise StorageError(
            f"create-only writes (overwrite=False) are not available on provider "
            f"{profile.name!r}: it does not honour If-None-Match: * (nothing was written)",
            operation=op,
            bucket=bucket,
            key=key,
        )
    body = data if isinstance(data, bytes) else bytes(data)
    kind = content_type or guess_content_type(key)
    if_none_match: Literal["*"] | None = None if overwrite else "*"
    transport = await storage.transport()
    etag = await transport.put(
        bucket, key, body, content_type=kind, operation=op, if_none_match=if_none_match
    )
    return ObjectInfo(key, len(body), etag, None, kind, {})
