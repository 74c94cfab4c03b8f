"""Single-object operations: exists, stat, delete, download."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable
from functools import partial
from pathlib import Path, PurePosixPath

import anyio

from ._client import BaseStorage
from ._errors import StorageError
from ._fetch import fetch_file
from ._files import LocalIO
from ._keys import check_bucket, check_bucket_and_key, check_key, check_key_iterable
from ._models import BytesCallback, ObjectInfo
from ._progress import ByteProgress
from ._ranges import Ranges
from ._transport import Transport

__all__ = [
    "ObjectInfo",
    "delete_objects",
    "download_file",
    "download_to_temp",
    "object_exists",
    "stat_object",
]

_DELETE_BATCH = 1000  # DeleteObjects' limit


async def object_exists(storage: BaseStorage, bucket: str, key: str) -> bool:
    """Whether ``key`` exists (one HEAD request; a missing bucket counts as missing).

    Raises:
        AccessDeniedError: the credentials are refused (not reported as "missing").
        InvalidKeyError: the key is empty or too long.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    check_bucket_and_key(bucket, key, operation="object_exists")
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
    check_bucket_and_key(bucket, key, operation="stat_object")
    transport = await storage.transport()
    return await transport.head(bucket, key, operation="stat_object")


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
        StorageError: keys could not be deleted: one error (of the first failure's kind,
            e.g. :class:`AccessDeniedError` for a DELETE refused with 403) whose message names
            the count and the keys; where deletes go one by one, every other key is deleted.
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
        await _delete_one_by_one(transport, bucket, batch, storage.settings.max_concurrency)
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


async def _delete_one_by_one(
    transport: Transport, bucket: str, keys: list[str], concurrency: int
) -> None:
    """One DELETE per key, ``min(concurrency, len(keys))`` at once; every key is tried, and
    the keys that failed are raised as one error of the first failure's kind."""
    failed: dict[str, StorageError] = {}
    pending = iter(keys)

    async def worker() -> None:
        for key in pending:
            try:
                await transport.delete_one(bucket, key, operation="delete_objects")
            except StorageError as exc:
                failed[key] = exc

    async with anyio.create_task_group() as tg:
        for _ in range(min(concurrency, len(keys))):
            tg.start_soon(worker)
    if not failed:
        return
    first_key, first = next(iter(failed.items()))
    shown = ", ".join(list(failed)[:10]) + (", ..." if len(failed) > 10 else "")
    message = (
        f"{len(failed)} of {len(keys)} keys were not deleted ({shown}); first: {first_key}: {first}"
    )
    try:
        err = type(first)(
            message,
            operation="delete_objects",
            bucket=bucket,
            code=first.code,
            status=first.status,
        )
    except TypeError:  # a kind with other arguments: the root kind
        err = StorageError(message, operation="delete_objects", bucket=bucket, code=first.code)
    raise err from first


async def download_file(
    storage: BaseStorage,
    bucket: str,
    key: str,
    dest: str | os.PathLike[str],
    *,
    on_progress: BytesCallback | None = None,
) -> Path:
    """Download ``key`` to the file ``dest`` (parents created) and return its path.

    Atomic: the body goes to a temp file beside ``dest``,
    renamed into place only when complete; a failed or cancelled download leaves neither a
    partial nor a temp file, and an existing ``dest`` stays as it was. An object over
    ``S3_RANGE_PART_SIZE`` (8 MiB) is fetched as byte ranges on up to
    ``S3_RANGE_CONCURRENCY`` (16) connections, each written at its offset into one
    preallocated file, all pinned to the first answer's ETag (two versions never mix); a
    smaller one is one request. A body cut short resumes from the byte where it
    stopped. Memory: never the whole body; under 1 MiB per connection (a 256 KiB block and
    what the HTTP client reads ahead; one stream: 1 MiB writes).

    Args:
        on_progress: ``on_progress(done_bytes, total_bytes)``, a function or a coroutine
            function, called as bytes arrive (at most every 0.1 s or every MiB) and once at the
            end; ``done_bytes`` never goes backwards (a resumed body goes on from where it was).

    Raises:
        ObjectNotFoundError: the key does not exist (also a ``FileNotFoundError``).
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        InvalidKeyError: the key is empty or too long.
        IsADirectoryError: ``dest`` is a directory.
        LocalFileError: the file can't be written (a full disk, a file where a parent
            directory is needed: then also a ``FileExistsError``); ``.errno``, ``.path``.
        PreconditionFailedError: the object was replaced during the download.
        StorageConnectionError: the endpoint can't be reached or the body was cut, after retries.
    """
    return await _download(storage, bucket, key, dest, on_progress, "download_file")


async def _download(
    storage: BaseStorage,
    bucket: str,
    key: str,
    dest: str | os.PathLike[str],
    on_progress: BytesCallback | None,
    operation: str,
) -> Path:
    """:func:`download_file`, its errors naming ``operation``."""
    check_bucket_and_key(bucket, key, operation=operation)
    path = Path(dest)
    if await anyio.Path(path).is_dir():
        raise IsADirectoryError(f"{operation} s3://{bucket}/{key}: {path} is a directory")
    transport = await storage.transport()
    progress = ByteProgress(on_progress) if on_progress is not None else None
    await fetch_file(
        transport,
        bucket,
        key,
        path,
        io=LocalIO(),
        operation=operation,
        prepare=partial(os.makedirs, path.parent, exist_ok=True),
        progress=progress,
        ranges=Ranges.from_settings(storage.settings),
    )
    if progress is not None:
        await progress.finish()
    return path


async def download_to_temp(
    storage: BaseStorage, bucket: str, key: str, *, suffix: str | None = None
) -> Path:
    """Download ``key`` to a new temp file and return its path; the caller deletes it.

    The same download as :func:`download_file` (ranges, resume); on failure or cancellation
    no temp file is left behind.

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
        await _download(storage, bucket, key, inner, None, "download_to_temp")
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
