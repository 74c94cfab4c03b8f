"""Single-object operations: list, exists, delete, download, upload."""

from __future__ import annotations

import contextlib
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path, PurePosixPath
from stat import S_ISDIR
from typing import Any

import aiofiles
import anyio

from ._client import BaseStorage
from ._errors import StorageConnectionError, StorageError, map_errors
from ._files import LocalIO, atomic_writer, write_atomic
from ._http import FastS3
from ._keys import check_bucket, check_key
from ._retry import is_retryable, retry

__all__ = [
    "ObjectInfo",
    "delete_objects",
    "download_file",
    "download_to_temp",
    "iter_objects",
    "list_objects",
    "object_exists",
    "upload_file",
]

CHUNK_SIZE = 1024 * 1024
_READ_SIZE = 64 * 1024  # botocore body reads, gathered into CHUNK_SIZE writes by write_all
SMALL_OBJECT = 4 * 1024 * 1024  # bodies up to this are read whole and written in one go
_DELETE_BATCH = 1000  # DeleteObjects' limit
_PART_CONCURRENCY = 4
MAX_PARTS = 10_000  # S3's limit of parts per multipart upload
MIN_PART = 5 * 1024 * 1024  # S3's minimum size of every part but the last
_PART_STEP = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as a listing (or an upload) describes it."""

    key: str
    size: int
    etag: str
    """The ETag without its quotes (an MD5 hex digest for single-part uploads)."""
    last_modified: datetime | None = None


def _etag(value: object) -> str:
    return str(value or "").strip('"')


def _suffix_filter(suffixes: str | Iterable[str] | None) -> tuple[str, ...] | None:
    if suffixes is None:
        return None
    items = (suffixes,) if isinstance(suffixes, str) else tuple(suffixes)
    return tuple(s.lower() for s in items)


async def iter_objects(
    storage: BaseStorage,
    bucket: str,
    prefix: str = "",
    *,
    suffixes: str | Iterable[str] | None = None,
) -> AsyncIterator[ObjectInfo]:
    check_bucket(bucket, operation="list_objects")
    wanted = _suffix_filter(suffixes)
    fast = await FastS3.open(storage) if storage.settings.fast_path else None
    if fast is not None:
        # The signed aiohttp listing: no botocore response parsing, no dateutil per key.
        async for key, size, etag, modified in fast.list(bucket, prefix):
            if wanted is None or key.lower().endswith(wanted):
                yield ObjectInfo(key, size, etag, _parse_time(modified))
        return
    client = await storage.client()
    paginator = client.get_paginator("list_objects_v2")
    with map_errors("list_objects", bucket, prefix or None):
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                key = item["Key"]
                if wanted is None or key.lower().endswith(wanted):
                    yield ObjectInfo(
                        key, int(item["Size"]), _etag(item.get("ETag")), item.get("LastModified")
                    )


def _parse_time(text: str) -> datetime | None:
    # S3 writes 2025-04-15T10:20:30.000Z; Python 3.10's fromisoformat needs an explicit offset.
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


async def list_objects(
    storage: BaseStorage,
    bucket: str,
    prefix: str = "",
    *,
    suffixes: str | Iterable[str] | None = None,
) -> list[ObjectInfo]:
    return [obj async for obj in iter_objects(storage, bucket, prefix, suffixes=suffixes)]


async def object_exists(storage: BaseStorage, bucket: str, key: str) -> bool:
    check_bucket(bucket, operation="object_exists")
    check_key(key, operation="object_exists", bucket=bucket)
    client = await storage.client()
    try:
        with map_errors("object_exists", bucket, key):
            await client.head_object(Bucket=bucket, Key=key)
    except FileNotFoundError:
        return False
    return True


async def delete_objects(storage: BaseStorage, bucket: str, keys: Iterable[str]) -> None:
    check_bucket(bucket, operation="delete_objects")
    batch = [check_key(k, operation="delete_objects", bucket=bucket) for k in keys]
    if not batch:
        return
    client = await storage.client()
    if not storage.settings.profile.batch_delete:
        limiter = anyio.CapacityLimiter(storage.settings.max_concurrency)

        async def delete_one(key: str) -> None:
            async with limiter:
                with map_errors("delete_objects", bucket, key):
                    await client.delete_object(Bucket=bucket, Key=key)

        async with anyio.create_task_group() as tg:
            for key in batch:
                tg.start_soon(delete_one, key)
        return
    for start in range(0, len(batch), _DELETE_BATCH):
        chunk = batch[start : start + _DELETE_BATCH]
        with map_errors("delete_objects", bucket, chunk[0] if len(chunk) == 1 else None):
            response = await client.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )
        errors = response.get("Errors") or []
        if errors:
            first: Any = errors[0]
            raise StorageError(
                f"{len(errors)} of {len(chunk)} keys were not deleted; first: "
                f"{first.get('Code')}: {first.get('Message')}",
                operation="delete_objects",
                bucket=bucket,
                key=first.get("Key"),
                code=first.get("Code"),
            )


async def download_file(
    storage: BaseStorage, bucket: str, key: str, dest: str | os.PathLike[str]
) -> Path:
    check_bucket(bucket, operation="download_file")
    check_key(key, operation="download_file", bucket=bucket)
    path = Path(dest)
    if await anyio.Path(path).is_dir():
        raise IsADirectoryError(f"download_file s3://{bucket}/{key}: {path} is a directory")
    settings = storage.settings
    fast = await FastS3.open(storage) if settings.fast_path else None
    if fast is not None:
        io = LocalIO()
        await retry(
            lambda: get_to_file(
                fast, bucket, key, path, io=io, operation="download_file", mkdir=True
            ),
            attempts=settings.max_attempts,
        )
        return path
    client = await storage.client()
    streaming = False  # botocore retries the request itself; we retry a broken body

    async def attempt() -> None:
        nonlocal streaming
        streaming = False
        with map_errors("download_file", bucket, key):
            response = await client.get_object(Bucket=bucket, Key=key)
            streaming = True
            expected = int(response["ContentLength"])
            path.parent.mkdir(parents=True, exist_ok=True)
            body = response["Body"]
            async with body, atomic_writer(path) as f:
                received = await f.write_all(body.iter_chunks(_READ_SIZE))
                check_length(received, expected, "download_file", bucket, key)

    await retry(
        attempt,
        attempts=settings.max_attempts,
        when=lambda exc: streaming and is_retryable(exc),
    )
    return path


async def get_to_file(
    fast: FastS3,
    bucket: str,
    key: str,
    path: Path,
    *,
    io: LocalIO,
    operation: str,
    mkdir: bool = False,
) -> tuple[int, str, int]:
    """GET ``key`` into ``path`` atomically on the fast path: ``(bytes, etag, mtime_ns)``.
    With ``mkdir``, missing parent directories are created once the object is found."""
    async with fast.get(bucket, key, operation=operation) as response:
        if mkdir:
            path.parent.mkdir(parents=True, exist_ok=True)
        length = response.content_length
        etag = response.headers.get("ETag", "").strip('"')
        if length is not None and length <= SMALL_OBJECT:
            data = await response.read()
            check_length(len(data), length, operation, bucket, key)
            return len(data), etag, await io.run(partial(write_atomic, path, data), len(data))
        async with atomic_writer(path, io) as f:
            # The pieces as they arrive (no joined copies): write_all's one buffer gathers them.
            received = await f.write_all(response.content.iter_any())
            if length is not None:
                check_length(received, length, operation, bucket, key)  # before the rename
    return received, etag, (await anyio.Path(path).stat()).st_mtime_ns


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


async def download_to_temp(
    storage: BaseStorage, bucket: str, key: str, *, suffix: str | None = None
) -> Path:
    check_key(key, operation="download_to_temp", bucket=bucket)
    if suffix is None:
        suffix = "".join(PurePosixPath(key).suffixes[-1:])
    # The file is private (0600) from its first byte: the body goes to a 0700 directory beside
    # it, and is made 0600 there before it replaces the (0600) placeholder that holds the name.
    fd, name = tempfile.mkstemp(prefix="mpr-", suffix=suffix)
    os.close(fd)
    private = tempfile.mkdtemp(prefix=".mpr-", dir=os.path.dirname(name))
    inner = os.path.join(private, "body")
    try:
        await download_file(storage, bucket, key, inner)
        os.chmod(inner, 0o600)
        os.replace(inner, name)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(inner)
        os.rmdir(private)
    return Path(name)


def guess_content_type(name: str) -> str:
    """The MIME type for a file or key name (``application/octet-stream`` if unknown)."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


async def upload_file(
    storage: BaseStorage,
    src: str | os.PathLike[str],
    bucket: str,
    key: str,
    *,
    content_type: str | None = None,
) -> ObjectInfo:
    check_bucket(bucket, operation="upload_file")
    check_key(key, operation="upload_file", bucket=bucket)
    path = Path(src)
    stat = await anyio.Path(path).stat()  # FileNotFoundError for a missing file
    size = stat.st_size
    if S_ISDIR(stat.st_mode):
        raise IsADirectoryError(f"upload_file s3://{bucket}/{key}: {path} is a directory")
    content_type = content_type or guess_content_type(key)
    client = await storage.client()
    settings = storage.settings
    if size < settings.multipart_threshold:
        data = await anyio.Path(path).read_bytes()
        with map_errors("upload_file", bucket, key):
            response = await client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type
            )
        return ObjectInfo(key, len(data), _etag(response.get("ETag")))
    etag = await _upload_multipart(storage, path, bucket, key, content_type, size)
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
    storage: BaseStorage, path: Path, bucket: str, key: str, content_type: str, size: int
) -> str:
    """Upload ``path`` (``size`` bytes) in parts of :func:`part_size_for`; any failure or
    cancellation aborts the upload (shielded)."""
    client = await storage.client()
    part_size = part_size_for(size, storage.settings.multipart_chunksize)
    with map_errors("upload_file", bucket, key):
        upload_id = (
            await client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)
        )["UploadId"]
    parts: dict[int, str] = {}
    limiter = anyio.CapacityLimiter(_PART_CONCURRENCY)

    async def send(number: int, data: bytes) -> None:
        try:
            with map_errors("upload_file", bucket, key):
                response = await client.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
            parts[number] = str(response["ETag"])
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
        with map_errors("upload_file", bucket, key):
            response = await client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": parts[n]} for n in sorted(parts)]
                },
            )
    except BaseException:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise
    return _etag(response.get("ETag"))
