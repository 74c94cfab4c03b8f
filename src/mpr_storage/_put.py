"""Single-object uploads: one checked PUT or a multipart upload, part sizes, content types."""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
from functools import partial
from pathlib import Path
from stat import S_ISDIR

import aiofiles
import anyio

from ._client import BaseStorage
from ._files import LocalIO, open_regular
from ._keys import check_bucket, check_key
from ._models import BytesCallback, ObjectInfo
from ._transport import SMALL_BODY, ByteProgress

__all__ = ["MAX_PARTS", "MIN_PART", "guess_content_type", "part_size_for", "upload_file"]

_PART_CONCURRENCY = 4
MAX_PARTS = 10_000  # S3's limit of parts per multipart upload
MIN_PART = 5 * 1024 * 1024  # S3's minimum size of every part but the last
_PART_STEP = 1024 * 1024


def guess_content_type(name: str) -> str:
    """The MIME type for a file or key name (``application/octet-stream`` if unknown), as
    :func:`mimetypes.guess_type` gives it; looked up once per ending (the last two suffixes,
    all it reads: ``.tar.gz`` is a gzipped tar), not once per frame."""
    if ":" not in name:  # else mimetypes reads a URL scheme: ask it about the whole name
        name = name[name.rfind("/") + 1 :]
        start = len(name) - len(name.lstrip("."))  # leading dots start no suffix
        last = name.rfind(".", start)
        if last > start:
            before = name.rfind(".", start, last)
            name = "x" + name[before if before > start else last :]
    return _guess_type(name)


@functools.lru_cache(maxsize=128)
def _guess_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


async def upload_file(
    storage: BaseStorage,
    src: str | os.PathLike[str],
    bucket: str,
    key: str,
    *,
    content_type: str | None = None,
    on_progress: BytesCallback | None = None,
) -> ObjectInfo:
    """Upload the file ``src`` to ``key`` (boto3's argument order) and describe the object.

    A file under ``S3_MULTIPART_THRESHOLD`` bytes goes up in one streamed PUT whose checksum
    (CRC-32 or Content-MD5, as the provider's profile says) the server checks; a larger one in
    parts of ``S3_MULTIPART_CHUNKSIZE`` bytes, at most four in memory at once. A failed or
    cancelled multipart upload is aborted, so no half-written object remains; an existing
    object is replaced only when the upload completes.

    Args:
        content_type: defaults to a guess from the key's extension.
        on_progress: ``on_progress(done_bytes, total_bytes)`` as for :func:`download_file`; a
            multipart upload reports each part as it is sent, a single PUT as it streams.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        IsADirectoryError: ``src`` is a directory.
        BucketNotFoundError: the bucket does not exist (where the provider does not create it).
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the key is empty or too long.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    check_bucket(bucket, operation="upload_file")
    check_key(key, operation="upload_file", bucket=bucket)
    path = Path(src)
    stat = await anyio.Path(path).stat()  # FileNotFoundError for a missing file
    size = stat.st_size
    if S_ISDIR(stat.st_mode):
        raise IsADirectoryError(f"upload_file s3://{bucket}/{key}: {path} is a directory")
    content_type = content_type or guess_content_type(key)
    transport = await storage.transport()
    settings = storage.settings
    progress = ByteProgress(on_progress)
    if size < settings.multipart_threshold:
        io = LocalIO()
        # Read as it is opened, as upload_many does: the size sent is the opened file's.
        opened = partial(open_regular, path, read_up_to=SMALL_BODY)
        fd, size, data = await io.run(opened, SMALL_BODY)
        try:
            etag = await transport.put_file(
                bucket,
                key,
                fd,
                size,
                data=data,
                content_type=content_type,
                io=io,
                operation="upload_file",
                progress=progress,
            )
        finally:
            os.close(fd)
    else:
        progress.start(size)
        etag = await _upload_multipart(storage, path, bucket, key, content_type, size, progress)
    await progress.finish()
    return ObjectInfo(key, size, etag)


def part_size_for(size: int, configured: int, *, max_parts: int | None = None) -> int:
    """The part size for a ``size``-byte multipart upload: ``configured`` (at least 5 MiB) when
    it needs at most ``max_parts`` (S3's 10,000) parts, else the smallest whole number of MiB
    that does."""
    limit = MAX_PARTS if max_parts is None else max_parts
    part = max(configured, MIN_PART)
    if -(-size // part) <= limit:
        return part
    needed = -(-size // limit)
    return -(-needed // _PART_STEP) * _PART_STEP


async def _upload_multipart(
    storage: BaseStorage,
    path: Path,
    bucket: str,
    key: str,
    content_type: str,
    size: int,
    progress: ByteProgress,
) -> str:
    """Upload ``path`` (``size`` bytes) in parts of :func:`part_size_for`; any failure or
    cancellation aborts the upload (shielded)."""
    transport = await storage.transport()
    part_size = part_size_for(size, storage.settings.multipart_chunksize)
    op = "upload_file"
    upload_id = await transport.create_multipart(
        bucket, key, content_type=content_type, operation=op
    )
    parts: dict[int, str] = {}
    limiter = anyio.CapacityLimiter(_PART_CONCURRENCY)

    async def send(number: int, data: bytes) -> None:
        try:
            parts[number] = await transport.upload_part(
                bucket, key, upload_id, number, data, operation=op
            )
            await progress.add(len(data))
        finally:
            limiter.release_on_behalf_of(number)

    try:
        f = await aiofiles.open(path, "rb")
        try:
            async with anyio.create_task_group() as tg:
                number = 0
                while True:
                    await limiter.acquire_on_behalf_of(number + 1)  # bounds parts in memory
                    data = await f.read(part_size)
                    if not data:
                        limiter.release_on_behalf_of(number + 1)
                        break
                    number += 1
                    tg.start_soon(send, number, data)
        finally:
            with anyio.CancelScope(shield=True):
                await f.close()
        return await transport.complete_multipart(
            bucket, key, upload_id, sorted(parts.items()), operation=op
        )
    except BaseException:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await transport.abort_multipart(bucket, key, upload_id, operation=op)
        raise
