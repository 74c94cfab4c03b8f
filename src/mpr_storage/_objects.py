"""Single-object operations: list, exists, delete, download, upload."""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
import tempfile
from collections.abc import AsyncIterator, Iterable
from functools import partial
from pathlib import Path, PurePosixPath
from stat import S_ISDIR

import aiofiles
import anyio

from ._client import BaseStorage
from ._errors import StorageError
from ._files import LocalIO, open_regular
from ._keys import check_bucket, check_key, check_key_iterable
from ._models import BytesCallback, ObjectInfo
from ._transport import SMALL_BODY, ByteProgress

__all__ = [
    "ObjectInfo",
    "delete_objects",
    "download_file",
    "download_to_temp",
    "iter_objects",
    "list_buckets",
    "list_objects",
    "object_exists",
    "stat_object",
    "upload_file",
]

_DELETE_BATCH = 1000  # DeleteObjects' limit
_PART_CONCURRENCY = 4
MAX_PARTS = 10_000  # S3's limit of parts per multipart upload
MIN_PART = 5 * 1024 * 1024  # S3's minimum size of every part but the last
_PART_STEP = 1024 * 1024


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
    """Iterate over the objects under ``prefix``, page by page, in key order.

    One LIST request per page of up to 1000 objects; only the current page is held in memory.
    A failed page is retried from its own continuation token, so no object is repeated.

    Args:
        bucket: the bucket.
        prefix: only keys starting with this.
        suffixes: only keys ending with one of these (case-insensitive), e.g. ``(".jpg", ".png")``.

    Raises:
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the bucket name is empty or contains ``/``.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    check_bucket(bucket, operation="list_objects")
    wanted = _suffix_filter(suffixes)
    transport = await storage.transport()
    token: str | None = None
    while True:  # page by page: a failed page is retried from its own continuation token
        page = await transport.list_page(bucket, prefix, token)
        for obj in page.objects:
            if wanted is None or obj.key.lower().endswith(wanted):
                yield obj
        token = page.next_token
        if token is None:
            return


async def list_objects(
    storage: BaseStorage,
    bucket: str,
    prefix: str = "",
    *,
    suffixes: str | Iterable[str] | None = None,
) -> list[ObjectInfo]:
    """All objects under ``prefix`` (every page), in key order.

    The whole listing is held in memory; use :func:`iter_objects` to stream a large one.

    Args:
        bucket: the bucket.
        prefix: only keys starting with this.
        suffixes: only keys ending with one of these (case-insensitive), e.g. ``(".jpg", ".png")``.

    Raises:
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the bucket name is empty or contains ``/``.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    return [obj async for obj in iter_objects(storage, bucket, prefix, suffixes=suffixes)]


async def object_exists(storage: BaseStorage, bucket: str, key: str) -> bool:
    """Whether ``key`` exists (one HEAD request; a missing bucket counts as missing).

    Raises:
        AccessDeniedError: the credentials are refused (not reported as "missing").
        InvalidKeyError: the key is empty or too long.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    check_bucket(bucket, operation="object_exists")
    check_key(key, operation="object_exists", bucket=bucket)
    transport = await storage.transport()
    try:
        await transport.head(bucket, key, operation="object_exists")
    except FileNotFoundError:
        return False
    return True


async def stat_object(storage: BaseStorage, bucket: str, key: str) -> ObjectInfo:
    """Describe ``key`` with one HEAD request: size, ETag, last modified, content type and
    user metadata. Nothing of the body is read.

    Raises:
        ObjectNotFoundError: the key (or its bucket) does not exist (also a
            ``FileNotFoundError``).
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the key is empty or too long.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    check_bucket(bucket, operation="stat_object")
    check_key(key, operation="stat_object", bucket=bucket)
    transport = await storage.transport()
    return await transport.head(bucket, key, operation="stat_object")


async def list_buckets(storage: BaseStorage) -> list[str]:
    """The names of the buckets the credentials can see, sorted.

    Raises:
        AccessDeniedError: the credentials are refused.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    transport = await storage.transport()
    return sorted(await transport.list_buckets())


async def delete_objects(storage: BaseStorage, bucket: str, keys: Iterable[str]) -> None:
    """Delete ``keys`` (batched ``DeleteObjects`` of 1000 keys; one by one, concurrently,
    where the provider lacks it).

    Missing keys are not an error, as in S3. Every key is checked before the first request, so
    a bad key deletes nothing.

    Args:
        keys: an iterable of keys (read once, up front); a bare ``str`` is refused.

    Raises:
        TypeError: ``keys`` is a bare ``str`` (each character would be a key).
        InvalidKeyError: a key is empty or too long.
        StorageError: a key could not be deleted (the message names it and the count).
        AccessDeniedError: the credentials are refused.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    check_bucket(bucket, operation="delete_objects")
    check_key_iterable(keys, operation="delete_objects", bucket=bucket)
    batch = [check_key(k, operation="delete_objects", bucket=bucket) for k in keys]
    if not batch:
        return
    transport = await storage.transport()
    if not storage.settings.profile.batch_delete:
        limiter = anyio.CapacityLimiter(storage.settings.max_concurrency)

        async def delete_one(key: str) -> None:
            async with limiter:
                await transport.delete_one(bucket, key, operation="delete_objects")

        async with anyio.create_task_group() as tg:
            for key in batch:
                tg.start_soon(delete_one, key)
        return
    for start in range(0, len(batch), _DELETE_BATCH):
        chunk = batch[start : start + _DELETE_BATCH]
        errors = await transport.delete_batch(bucket, chunk, operation="delete_objects")
        if errors:
            key, code, message = errors[0]
            raise StorageError(
                f"{len(errors)} of {len(chunk)} keys were not deleted; first: {code}: {message}",
                operation="delete_objects",
                bucket=bucket,
                key=key,
                code=code,
            )


async def download_file(
    storage: BaseStorage,
    bucket: str,
    key: str,
    dest: str | os.PathLike[str],
    *,
    on_progress: BytesCallback | None = None,
) -> Path:
    """Download ``key`` to the file ``dest`` (parents created) and return its path.

    Atomic: the body is streamed in writes of at most 1 MiB (never held whole) to a temp file
    beside ``dest`` and renamed into place only when complete; a failed or cancelled download
    leaves neither a partial nor a temp file, and an existing ``dest`` stays as it was.

    Args:
        on_progress: ``on_progress(done_bytes, total_bytes)``, a function or a coroutine
            function, called as bytes arrive (at most every 0.1 s or every MiB) and once at the
            end; a retried download starts again from 0.

    Raises:
        ObjectNotFoundError: the key does not exist (also a ``FileNotFoundError``).
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the key is empty or too long.
        IsADirectoryError: ``dest`` is a directory.
        StorageConnectionError: the endpoint can't be reached or the body was cut, after retries.
    """
    check_bucket(bucket, operation="download_file")
    check_key(key, operation="download_file", bucket=bucket)
    path = Path(dest)
    if await anyio.Path(path).is_dir():
        raise IsADirectoryError(f"download_file s3://{bucket}/{key}: {path} is a directory")
    transport = await storage.transport()
    progress = ByteProgress(on_progress) if on_progress is not None else None
    await transport.get_to_file(
        bucket,
        key,
        path,
        io=LocalIO(),
        operation="download_file",
        prepare=partial(os.makedirs, path.parent, exist_ok=True),
        progress=progress,
    )
    if progress is not None:
        await progress.finish()
    return path


async def download_to_temp(
    storage: BaseStorage, bucket: str, key: str, *, suffix: str | None = None
) -> Path:
    """Download ``key`` to a new temp file and return its path; the caller deletes it.

    The same streaming download as :func:`download_file`; on failure or cancellation no temp
    file is left behind.

    Args:
        suffix: the temp file's suffix; defaults to the key's extension (``.mp4``).

    Raises:
        The errors of :func:`download_file`.
    """
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
