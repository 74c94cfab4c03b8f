"""`Storage`: each public call's implementation bound as a method; and the per-loop default.

Each call is written once, on its implementation (first parameter: the storage); `Storage` binds
the implementations as methods, and :mod:`mpr_storage` derives its module-level functions from
the same implementations (through :mod:`._surface`), run on :func:`default_storage`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator

from . import _copy, _downloads, _frames, _listing, _objects, _presign, _put, _read, _uploads
from ._client import BaseStorage, S3Client

__all__ = ["Storage", "default_storage"]


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
    iter_objects = _listing.iter_objects
    list_objects = _listing.list_objects
    list_prefixes = _listing.list_prefixes
    object_exists = _objects.object_exists
    stat_object = _objects.stat_object
    list_buckets = _listing.list_buckets
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
