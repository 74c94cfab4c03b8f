"""The public async API: `Storage` methods, and module-level functions on a per-loop default.

Each call is written once, on its implementation (first parameter: the storage); `Storage` binds
the implementations as methods and :mod:`._surface` derives the module-level functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager

from . import _copy, _downloads, _frames, _objects, _presign, _put, _read, _surface, _uploads
from ._client import BaseStorage, S3Client
from ._objects import ObjectInfo
from ._read import ObjectBody

__all__ = [
    "Storage",
    "copy_object",
    "default_storage",
    "delete_objects",
    "download_file",
    "download_many",
    "download_to_temp",
    "frame_cache_exists",
    "frame_cache_prefix",
    "get_presigned_post",
    "get_presigned_url",
    "get_bytes",
    "get_s3_client",
    "iter_objects",
    "list_buckets",
    "list_objects",
    "list_prefixes",
    "object_exists",
    "open_object",
    "prefetch_frames",
    "put_bytes",
    "stat_object",
    "upload_file",
    "upload_frames",
    "upload_many",
]

frame_cache_prefix = _frames.frame_cache_prefix


class Storage(BaseStorage):
    """An S3 store with an explicit lifecycle.

    ```python
    async with Storage(StorageSettings.from_env()) as s:
        frames = await s.list_objects(s.settings.bucket_out, "frames/tl-1/")
        await s.download_file(s.settings.bucket_out, frames[0].key, "/tmp/f0.jpg")
    ```

    The methods are the module-level functions of :mod:`mpr_storage`, run on this storage's
    client instead of the per-loop default. A storage belongs to the event loop it is first used
    on; after ``aclose()`` it can't be reused.
    """

    async def get_s3_client(self) -> S3Client:
        """The storage's aioboto3 S3 client (for calls this library does not wrap).

        It is owned by the library: use it, don't close it. Its connection pool is sized to
        ``S3_MAX_CONCURRENCY`` and it is configured for the provider (path style, checksums).

        Raises:
            ConfigError: the settings are invalid (the message names the variable).
        """
        return await self.client()

    # The implementations, bound as methods: their first parameter is the storage.
    iter_objects = _objects.iter_objects
    list_objects = _objects.list_objects
    list_prefixes = _objects.list_prefixes
    object_exists = _objects.object_exists
    stat_object = _objects.stat_object
    list_buckets = _objects.list_buckets
    delete_objects = _objects.delete_objects
    download_file = _objects.download_file
    download_to_temp = _objects.download_to_temp
    upload_file = _put.upload_file
    copy_object = _copy.copy_object
    open_object = _read.open_object
    get_bytes = _read.get_bytes
    put_bytes = _read.put_bytes
    get_presigned_url = _presign.get_presigned_url
    get_presigned_post = _presign.get_presigned_post
    download_many = _downloads.download_many
    upload_many = _uploads.upload_many
    frame_cache_exists = _frames.frame_cache_exists
    upload_frames = _frames.upload_frames
    prefetch_frames = _frames.prefetch_frames


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


# --- the module-level functions: each implementation, on the running loop's default ----------

get_s3_client = _surface.on_default(Storage.get_s3_client, default_storage)
list_objects = _surface.on_default(_objects.list_objects, default_storage)
list_prefixes = _surface.on_default(_objects.list_prefixes, default_storage)
object_exists = _surface.on_default(_objects.object_exists, default_storage)
stat_object = _surface.on_default(_objects.stat_object, default_storage)
list_buckets = _surface.on_default(_objects.list_buckets, default_storage)
delete_objects = _surface.on_default(_objects.delete_objects, default_storage)
download_file = _surface.on_default(_objects.download_file, default_storage)
download_to_temp = _surface.on_default(_objects.download_to_temp, default_storage)
upload_file = _surface.on_default(_put.upload_file, default_storage)
copy_object = _surface.on_default(_copy.copy_object, default_storage)
get_bytes = _surface.on_default(_read.get_bytes, default_storage)
put_bytes = _surface.on_default(_read.put_bytes, default_storage)
get_presigned_url = _surface.on_default(_presign.get_presigned_url, default_storage)
get_presigned_post = _surface.on_default(_presign.get_presigned_post, default_storage)
download_many = _surface.on_default(_downloads.download_many, default_storage)
upload_many = _surface.on_default(_uploads.upload_many, default_storage)
frame_cache_exists = _surface.on_default(_frames.frame_cache_exists, default_storage)
upload_frames = _surface.on_default(_frames.upload_frames, default_storage)
prefetch_frames = _surface.on_default(_frames.prefetch_frames, default_storage)


@_surface.documented(_objects.iter_objects)
def iter_objects(
    bucket: str,
    prefix: str = "",
    *,
    suffixes: str | Iterable[str] | None = None,
    start_after: str | None = None,
    limit: int | None = None,
) -> AsyncIterator[ObjectInfo]:
    # Not a coroutine function: the iterator is returned at once, the storage found on first use.
    async def run() -> AsyncIterator[ObjectInfo]:
        storage = await default_storage()
        objects = storage.iter_objects(
            bucket, prefix, suffixes=suffixes, start_after=start_after, limit=limit
        )
        async for obj in objects:
            yield obj

    return run()


@_surface.documented(_read.open_object)
def open_object(
    bucket: str, key: str, *, start: int = 0, end: int | None = None
) -> AbstractAsyncContextManager[ObjectBody]:
    # Not a coroutine function: the context manager is returned at once, the storage found
    # on entry.
    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[ObjectBody]:
        storage = await default_storage()
        async with storage.open_object(bucket, key, start=start, end=end) as body:
            yield body

    return run()
