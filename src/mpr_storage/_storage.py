"""The public async API: `Storage` methods, and module-level functions on a per-loop default."""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from pathlib import Path
from typing import Literal

from . import _frames, _objects, _presign, _transfer
from ._client import BaseStorage, S3Client
from ._objects import ObjectInfo
from ._transfer import KeySource, ProgressCallback, TransferReport

__all__ = [
    "Storage",
    "default_storage",
    "delete_objects",
    "download_file",
    "download_many",
    "frame_cache_exists",
    "frame_cache_prefix",
    "download_to_temp",
    "get_presigned_url",
    "get_s3_client",
    "iter_objects",
    "list_objects",
    "object_exists",
    "prefetch_frames",
    "upload_file",
    "upload_frames",
    "upload_many",
]

frame_cache_prefix = _frames.frame_cache_prefix

PathLike = str | os.PathLike[str]
Suffixes = str | Iterable[str] | None


class Storage(BaseStorage):
    """An S3 store with an explicit lifecycle.

    ```python
    async with Storage(StorageSettings.from_env()) as s:
        frames = await s.list_objects(s.settings.bucket_out, "frames/tl-1/")
        await s.download_file(s.settings.bucket_out, frames[0].key, "/tmp/f0.jpg")
    ```

    The methods are the module-level functions of :mod:`mpr_storage` (documented there), run on
    this storage's client instead of the per-loop default. A storage belongs to the event loop
    it is first used on; after ``aclose()`` it can't be reused.
    """

    async def get_s3_client(self) -> S3Client:
        """See :func:`mpr_storage.get_s3_client`."""
        return await self.client()

    def iter_objects(
        self, bucket: str, prefix: str = "", *, suffixes: Suffixes = None
    ) -> AsyncIterator[ObjectInfo]:
        """See :func:`mpr_storage.iter_objects`."""
        return _objects.iter_objects(self, bucket, prefix, suffixes=suffixes)

    async def list_objects(
        self, bucket: str, prefix: str = "", *, suffixes: Suffixes = None
    ) -> list[ObjectInfo]:
        """See :func:`mpr_storage.list_objects`."""
        return await _objects.list_objects(self, bucket, prefix, suffixes=suffixes)

    async def object_exists(self, bucket: str, key: str) -> bool:
        """See :func:`mpr_storage.object_exists`."""
        return await _objects.object_exists(self, bucket, key)

    async def delete_objects(self, bucket: str, keys: Iterable[str]) -> None:
        """See :func:`mpr_storage.delete_objects`."""
        check_key_iterable(keys, operation="delete_objects", bucket=bucket)
        await _objects.delete_objects(self, bucket, keys)

    async def download_file(self, bucket: str, key: str, dest: PathLike) -> Path:
        """See :func:`mpr_storage.download_file`."""
        return await _objects.download_file(self, bucket, key, dest)

    async def download_to_temp(self, bucket: str, key: str, *, suffix: str | None = None) -> Path:
        """See :func:`mpr_storage.download_to_temp`."""
        return await _objects.download_to_temp(self, bucket, key, suffix=suffix)

    async def upload_file(
        self, src: PathLike, bucket: str, key: str, *, content_type: str | None = None
    ) -> ObjectInfo:
        """See :func:`mpr_storage.upload_file`."""
        return await _objects.upload_file(self, src, bucket, key, content_type=content_type)

    async def get_presigned_url(
        self,
        bucket: str,
        key: str,
        *,
        expires_in: int = 3600,
        method: Literal["GET", "PUT"] = "GET",
    ) -> str:
        """See :func:`mpr_storage.get_presigned_url`."""
        return await _presign.get_presigned_url(
            self, bucket, key, expires_in=expires_in, method=method
        )

    async def download_many(
        self,
        bucket: str,
        keys: KeySource,
        dest_dir: PathLike,
        *,
        prefix: str = "",
        concurrency: int | None = None,
        skip_existing: bool = True,
        on_progress: ProgressCallback | None = None,
        raise_on_error: bool = True,
    ) -> TransferReport:
        """See :func:`mpr_storage.download_many`."""
        return await _transfer.download_many(
            self,
            bucket,
            keys,
            dest_dir,
            prefix=prefix,
            concurrency=concurrency,
            skip_existing=skip_existing,
            on_progress=on_progress,
            raise_on_error=raise_on_error,
        )

    async def upload_many(
        self,
        src_dir: PathLike,
        bucket: str,
        prefix: str,
        *,
        concurrency: int | None = None,
        skip_existing: bool = False,
        on_progress: ProgressCallback | None = None,
        raise_on_error: bool = True,
    ) -> TransferReport:
        """See :func:`mpr_storage.upload_many`."""
        return await _transfer.upload_many(
            self,
            src_dir,
            bucket,
            prefix,
            concurrency=concurrency,
            skip_existing=skip_existing,
            on_progress=on_progress,
            raise_on_error=raise_on_error,
        )

    async def frame_cache_exists(self, timeline_id: object, *, bucket: str | None = None) -> bool:
        """See :func:`mpr_storage.frame_cache_exists`."""
        return await _frames.frame_cache_exists(self, timeline_id, bucket=bucket)

    async def upload_frames(
        self,
        timeline_id: object,
        src_dir: PathLike,
        *,
        bucket: str | None = None,
        concurrency: int | None = None,
        skip_existing: bool = False,
        on_progress: ProgressCallback | None = None,
        raise_on_error: bool = True,
    ) -> TransferReport:
        """See :func:`mpr_storage.upload_frames`."""
        return await _frames.upload_frames(
            self,
            timeline_id,
            src_dir,
            bucket=bucket,
            concurrency=concurrency,
            skip_existing=skip_existing,
            on_progress=on_progress,
            raise_on_error=raise_on_error,
        )

    async def prefetch_frames(
        self,
        timeline_id: object,
        dest_dir: PathLike,
        *,
        bucket: str | None = None,
        concurrency: int | None = None,
        on_progress: ProgressCallback | None = None,
        raise_on_error: bool = True,
    ) -> TransferReport:
        """See :func:`mpr_storage.prefetch_frames`."""
        return await _frames.prefetch_frames(
            self,
            timeline_id,
            dest_dir,
            bucket=bucket,
            concurrency=concurrency,
            on_progress=on_progress,
            raise_on_error=raise_on_error,
        )


def check_key_iterable(keys: object, *, operation: str, bucket: str) -> None:
    """Refuse a bare ``str``/``bytes`` where an iterable of keys is expected, before any
    request: iterating it would act on one-character keys."""
    if isinstance(keys, (str, bytes, bytearray, memoryview)):
        kind = type(keys).__name__
        raise TypeError(
            f"{operation} s3://{bucket}: keys must be an iterable of keys, not a single {kind} "
            f"(wrap one key in a list: [key])"
        )


# --- the per-loop default --------------------------------------------------------------------

_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Storage] = (
    weakref.WeakKeyDictionary()
)
_closers: weakref.WeakKeyDictionary[Storage, AsyncGenerator[None, None]] = (
    weakref.WeakKeyDictionary()
)


async def _close_at_loop_shutdown(storage: Storage) -> AsyncGenerator[None, None]:
    # A started, suspended async generator is finalised by the loop's
    # ``shutdown_asyncgens()`` (which ``asyncio.run`` and ``asyncio.Runner`` call before
    # closing the loop), so the client is closed on its own loop, and nobody calls close().
    # Once finished it must go: a generator keeps its loop's finaliser hook, and so its loop.
    try:
        yield
    finally:
        _closers.pop(storage, None)
        await storage.aclose()


async def default_storage() -> Storage:
    """The default :class:`Storage` of the running event loop (settings from the environment).

    Created on first use and closed automatically when the loop shuts down (its
    ``shutdown_asyncgens()``, which ``asyncio.run()`` and ``asyncio.Runner`` call), so code that
    calls ``asyncio.run()`` several times keeps working and no client is left unclosed. It holds
    its loop weakly and dies with it: one loop per job keeps memory flat.
    """
    loop = asyncio.get_running_loop()
    storage = _defaults.get(loop)
    if storage is None or storage.closed:
        storage = Storage()
        _defaults[loop] = storage
        closer = _close_at_loop_shutdown(storage)
        _closers[storage] = closer
        await closer.__anext__()
    return storage


async def get_s3_client() -> S3Client:
    """The shared aioboto3 S3 client of the running event loop.

    It is owned by the library: use it, don't close it. Its connection pool is sized to
    ``S3_MAX_CONCURRENCY`` and it is configured for the provider (path style, checksums).
    """
    return await (await default_storage()).client()


def iter_objects(
    bucket: str, prefix: str = "", *, suffixes: Suffixes = None
) -> AsyncIterator[ObjectInfo]:
    """Iterate over the objects under ``prefix``, page by page, in key order.

    Args:
        bucket: the bucket.
        prefix: only keys starting with this.
        suffixes: only keys ending with one of these (case-insensitive), e.g. ``(".jpg", ".png")``.

    Raises:
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        StorageConnectionError: the endpoint can't be reached.
    """

    async def run() -> AsyncIterator[ObjectInfo]:
        storage = await default_storage()
        async for obj in storage.iter_objects(bucket, prefix, suffixes=suffixes):
            yield obj

    return run()


async def list_objects(
    bucket: str, prefix: str = "", *, suffixes: Suffixes = None
) -> list[ObjectInfo]:
    """All objects under ``prefix`` (every page), in key order.

    Same arguments and errors as :func:`iter_objects`.
    """
    return await (await default_storage()).list_objects(bucket, prefix, suffixes=suffixes)


async def object_exists(bucket: str, key: str) -> bool:
    """Whether ``key`` exists (one HEAD request).

    Raises:
        AccessDeniedError: the credentials are refused (not reported as "missing").
        InvalidKeyError: the key is empty or too long.
    """
    return await (await default_storage()).object_exists(bucket, key)


async def delete_objects(bucket: str, keys: Iterable[str]) -> None:
    """Delete ``keys`` (batched ``DeleteObjects``; one by one where the provider lacks it).

    ``keys`` is any iterable of keys (list, tuple, set, generator); missing keys are not an
    error, as in S3.

    Raises:
        TypeError: ``keys`` is a single ``str`` or ``bytes`` (it would be read as one key per
            character); nothing is deleted. Pass ``[key]``.
        StorageError: a key could not be deleted (the message names it).
    """
    await (await default_storage()).delete_objects(bucket, keys)


async def download_file(bucket: str, key: str, dest: PathLike) -> Path:
    """Download ``key`` to the file ``dest`` (parents created) and return its path.

    The body is streamed to a temp file beside ``dest`` through one reused 1 MiB block and
    renamed into place only when complete; a failed or cancelled download leaves neither a
    partial nor a temp file. Any valid file name works for ``dest`` (temp names are cut by
    bytes).

    Raises:
        ObjectNotFoundError: the key does not exist (also a ``FileNotFoundError``).
        BucketNotFoundError: the bucket does not exist.
        AccessDeniedError: the credentials are refused.
        StorageConnectionError: the endpoint can't be reached or the body was cut, after retries.
    """
    return await (await default_storage()).download_file(bucket, key, dest)


async def download_to_temp(bucket: str, key: str, *, suffix: str | None = None) -> Path:
    """Download ``key`` to a new temp file and return its path; the caller deletes it.

    The file is readable by its owner only (mode 0600) from its first byte, whatever the umask.

    Args:
        suffix: the temp file's suffix; defaults to the key's extension (``.mp4``).

    Raises:
        The errors of :func:`download_file`; on failure no temp file is left behind.
    """
    return await (await default_storage()).download_to_temp(bucket, key, suffix=suffix)


async def upload_file(
    src: PathLike, bucket: str, key: str, *, content_type: str | None = None
) -> ObjectInfo:
    """Upload the file ``src`` to ``key`` (boto3's argument order) and describe the object.

    Files of ``S3_MULTIPART_THRESHOLD`` bytes or more go up in parts of
    ``S3_MULTIPART_CHUNKSIZE``, grown (to whole MiB) where needed to stay within S3's 10,000
    parts; a failed or cancelled multipart upload is aborted, so no half-written object remains.

    Args:
        content_type: defaults to a guess from the key's extension.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        AccessDeniedError: the credentials are refused.
        StorageConnectionError: the endpoint can't be reached, after retries.
    """
    return await (await default_storage()).upload_file(src, bucket, key, content_type=content_type)


async def get_presigned_url(
    bucket: str,
    key: str,
    *,
    expires_in: int = 3600,
    method: Literal["GET", "PUT"] = "GET",
) -> str:
    """A SigV4 presigned URL for ``GET`` or ``PUT`` of ``key``, computed offline.

    It is signed for ``S3_PUBLIC_ENDPOINT_URL`` when set (the host browsers reach), otherwise
    for ``S3_ENDPOINT_URL``.

    Raises:
        ValueError: ``method`` is not GET/PUT or ``expires_in`` is outside 1 s .. 7 days.
        InvalidKeyError: the key is empty or too long.
    """
    return await (await default_storage()).get_presigned_url(
        bucket, key, expires_in=expires_in, method=method
    )


async def download_many(
    bucket: str,
    keys: KeySource,
    dest_dir: PathLike,
    *,
    prefix: str = "",
    concurrency: int | None = None,
    skip_existing: bool = True,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    """Download many keys concurrently into ``dest_dir``; key ``k`` goes to
    ``dest_dir / k.removeprefix(prefix)``.

    One GET per object and no HEAD; keys stream from ``keys`` (an iterable or async iterable of
    keys or :class:`ObjectInfo`, e.g. :func:`iter_objects`) into ``concurrency`` workers
    (default ``S3_MAX_CONCURRENCY``). Every file is written to a temp file and renamed into
    place when complete, so cancelling leaves only complete files. Transient failures are
    retried with backoff, and throttling lowers the concurrency.

    Args:
        skip_existing: keep a local file with the same size (and, where known, ETag); a sidecar
            manifest makes a second pass over unchanged files cost no GET at all.
        on_progress: ``on_progress(done_objects, total_objects, done_bytes)``, called at most
            every 0.1 s and once at the end with the totals.
        raise_on_error: when False, return the report instead of raising ``TransferError``.

    Returns:
        The :class:`TransferReport` (``done``, ``skipped``, ``failed``, ``bytes``, ``seconds``).

    Raises:
        TransferError: some keys failed (after every other key was tried); ``.report`` tells.
        InvalidKeyError: reported per key (in ``failed``) for keys that would leave ``dest_dir``.
        StorageConnectionError, ThrottledError: the endpoint stayed unreachable or throttled.
    """
    return await (await default_storage()).download_many(
        bucket,
        keys,
        dest_dir,
        prefix=prefix,
        concurrency=concurrency,
        skip_existing=skip_existing,
        on_progress=on_progress,
        raise_on_error=raise_on_error,
    )


async def upload_many(
    src_dir: PathLike,
    bucket: str,
    prefix: str,
    *,
    concurrency: int | None = None,
    skip_existing: bool = False,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    """Upload every file under ``src_dir`` to ``prefix + relative/path`` concurrently.

    Small files go up with one signed PUT each (Content-MD5 checked by the server); files of
    ``S3_MULTIPART_THRESHOLD`` bytes or more use multipart, aborted on failure.

    Args:
        skip_existing: leave objects that already have the same size and MD5 ETag.
        on_progress, raise_on_error, concurrency: as for :func:`download_many`.

    Raises:
        TransferError: some files failed; ``.report`` tells which.
        NotADirectoryError: ``src_dir`` is not a directory.
    """
    return await (await default_storage()).upload_many(
        src_dir,
        bucket,
        prefix,
        concurrency=concurrency,
        skip_existing=skip_existing,
        on_progress=on_progress,
        raise_on_error=raise_on_error,
    )


async def frame_cache_exists(timeline_id: object, *, bucket: str | None = None) -> bool:
    """Whether the timeline has a frame cache (one LIST of at most one key).

    Args:
        bucket: defaults to ``BUCKET_OUT``.
    """
    return await (await default_storage()).frame_cache_exists(timeline_id, bucket=bucket)


async def upload_frames(
    timeline_id: object,
    src_dir: PathLike,
    *,
    bucket: str | None = None,
    concurrency: int | None = None,
    skip_existing: bool = False,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    """Push a timeline's frames (every file under ``src_dir``) to its frame cache.

    Same behaviour as :func:`upload_many` with ``prefix=frame_cache_prefix(timeline_id)``;
    ``bucket`` defaults to ``BUCKET_OUT``.
    """
    return await (await default_storage()).upload_frames(
        timeline_id,
        src_dir,
        bucket=bucket,
        concurrency=concurrency,
        skip_existing=skip_existing,
        on_progress=on_progress,
        raise_on_error=raise_on_error,
    )


async def prefetch_frames(
    timeline_id: object,
    dest_dir: PathLike,
    *,
    bucket: str | None = None,
    concurrency: int | None = None,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    """Fetch a timeline's whole frame cache into ``dest_dir`` (``frame_000001.jpg`` ...).

    The listing streams into :func:`download_many` with ``skip_existing=True``: a second
    prefetch of an unchanged cache makes no GET at all.

    Raises:
        ObjectNotFoundError: the timeline has no frame cache.
        TransferError: some frames failed; ``.report`` tells which.
    """
    return await (await default_storage()).prefetch_frames(
        timeline_id,
        dest_dir,
        bucket=bucket,
        concurrency=concurrency,
        on_progress=on_progress,
        raise_on_error=raise_on_error,
    )
