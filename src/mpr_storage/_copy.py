"""Server-side copies: CopyObject, or a multipart copy (UploadPartCopy) above 5 GiB."""

from __future__ import annotations

import contextlib

import anyio

from ._client import BaseStorage
from ._keys import check_bucket_and_key
from ._models import ObjectInfo
from ._payload import CopySource
from ._sizes import MAX_PARTS
from ._transport import Transport

__all__ = ["copy_object"]

MULTIPART_COPY_THRESHOLD = 5 * 1024**3
"""CopyObject's limit: a larger source is copied in parts (tests lower it)."""
COPY_PART_SIZE = 512 * 1024**2
"""The bytes of one UploadPartCopy (server-side: no bytes pass through the client)."""
_PART_CONCURRENCY = 8


async def copy_object(
    storage: BaseStorage, src_bucket: str, src_key: str, dest_bucket: str, dest_key: str
) -> ObjectInfo:
    """Copy ``src_key`` to ``dest_key`` on the server: no bytes pass through the client.

    The copy keeps the source's content type and user metadata. One HEAD of the source, then
    one ``CopyObject``; a source over 5 GiB (CopyObject's limit) is copied as a multipart
    upload of ``UploadPartCopy`` parts, aborted on any failure or cancellation. The source
    must still be the object the HEAD saw (its ETag is a copy condition), so a source
    replaced meanwhile never yields a mix of two versions. Copying a key onto itself changes
    nothing and sends no copy request.

    Returns:
        The copy's :class:`ObjectInfo`: its key, size, ETag, last modified, content type and
        metadata.

    Raises:
        ObjectNotFoundError: the source key does not exist (also a ``FileNotFoundError``).
        BucketNotFoundError: a bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: a key is empty or too long.
        StorageError: the server refused the copy (e.g. the source changed during it).
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    op = "copy_object"
    check_bucket_and_key(src_bucket, src_key, operation=op)
    check_bucket_and_key(dest_bucket, dest_key, operation=op)
    transport = await storage.transport()
    source = await transport.head(src_bucket, src_key, operation=op)
    if (src_bucket, src_key) == (dest_bucket, dest_key):
        return source
    if source.size <= MULTIPART_COPY_THRESHOLD:
        etag, modified = await transport.copy(
            CopySource(src_bucket, src_key, source.etag), dest_bucket, dest_key, operation=op
        )
    else:
        etag = await _copy_multipart(transport, source, src_bucket, dest_bucket, dest_key)
        modified = (await transport.head(dest_bucket, dest_key, operation=op)).last_modified
    return ObjectInfo(
        dest_key, source.size, etag, modified, source.content_type, source.metadata or {}
    )


def copy_part_size(size: int) -> int:
    """:data:`COPY_PART_SIZE`, or larger where that would need over 10,000 parts."""
    return max(COPY_PART_SIZE, -(-size // MAX_PARTS))


async def _copy_multipart(
    transport: Transport, source: ObjectInfo, src_bucket: str, bucket: str, key: str
) -> str:
    """Copy ``source`` in parts of :func:`copy_part_size`, a few at once; any failure or
    cancellation aborts the upload (shielded). Returns the copy's ETag."""
    op = "copy_object"
    upload_id = await transport.create_multipart_copy(
        bucket,
        key,
        content_type=source.content_type,
        metadata=source.metadata or {},
        operation=op,
    )
    part = copy_part_size(source.size)
    src = CopySource(src_bucket, source.key, source.etag)
    parts: dict[int, str] = {}
    failed: list[Exception] = []
    limiter = anyio.CapacityLimiter(_PART_CONCURRENCY)

    async def copy_part(number: int, first: int, scope: anyio.CancelScope) -> None:
        async with limiter:
            last = min(first + part, source.size) - 1
            try:
                parts[number] = await transport.upload_part_copy(
                    src, bucket, key, upload_id, (number, first, last), operation=op
                )
            except Exception as exc:  # the first failure is the error; the other parts stop
                failed.append(exc)
                scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            for number, first in enumerate(range(0, source.size, part), start=1):
                tg.start_soon(copy_part, number, first, tg.cancel_scope)
        if failed:
            raise failed[0]
        return await transport.complete_multipart(
            bucket, key, upload_id, sorted(parts.items()), operation=op
        )
    except BaseException:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await transport.abort_multipart(bucket, key, upload_id, operation=op)
        raise
