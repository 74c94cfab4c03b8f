"""Blocking forms of the :mod:`mpr_storage` functions, for code that can't ``await``.

```python
from mpr_storage.sync import BUCKET_OUT, download_file, list_objects

for obj in list_objects(BUCKET_OUT, "frames/tl-1/", suffixes=".jpg"):
    download_file(BUCKET_OUT, obj.key, "/tmp/frames/" + obj.key.rsplit("/", 1)[-1])
```

Also importable as ``core.storage``. Each function has the name, arguments, return value,
exceptions and docstring of its async twin in :mod:`mpr_storage` (derived from it, so they
can't drift) and runs that twin on one private event-loop thread per process, a blocking portal
as in ``anyio.from_thread``:

- The thread starts on first use. It is a daemon thread, stopped at interpreter exit once the
  other threads are done; its loop shuts down properly, so the shared client is closed and
  nothing is printed.
- Every call settles, also at interpreter exit: a call from an ``atexit`` callback runs (on
  a loop thread started, and stopped again, for it if needed); where Python refuses to start
  threads at exit (3.12), it raises ``RuntimeError`` saying so. A loop thread that cannot
  start, or dies, is a ``RuntimeError`` for its callers, never a hang.
- Any number of threads may call at once; they share the loop's client and connection pool.
- After ``os.fork()`` the child starts its own loop thread on first use; the parent's is left
  alone.
- Ctrl-C during a call cancels the operation and waits for its cleanup (temp files removed,
  multipart uploads aborted) before ``KeyboardInterrupt`` propagates. A second Ctrl-C stops the
  waiting; the cleanup then still finishes on the loop thread, at the latest at exit.
- On a thread that runs an event loop they raise :class:`RunningLoopError` rather than block
  that loop: there, ``await mpr_storage.<name>(...)``.

Settings come from the environment when the loop's client is first needed, as in
:mod:`mpr_storage`. ``on_progress`` callbacks run on the loop thread: keep them quick, and don't
call this module from them. ``download_many`` reads ``keys`` on the calling thread before it
starts (so ``keys`` may be :func:`iter_objects`), and :func:`iter_objects` fetches up to 1000
objects (one S3 page) per round trip to the loop thread.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import AsyncGenerator, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import mpr_storage as _aio
from mpr_storage import (
    BUCKET_IN,
    BUCKET_OUT,
    AccessDeniedError,
    BucketNotFoundError,
    ConfigError,
    InvalidKeyError,
    InvalidRangeError,
    LocalFileError,
    ObjectBody,
    ObjectExistsError,
    ObjectInfo,
    ObjectNotFoundError,
    PreconditionFailedError,
    PresignedPost,
    ProgressCallback,
    StorageConnectionError,
    StorageError,
    StorageSettings,
    StorageTimeoutError,
    ThrottledError,
    TransferError,
    TransferReport,
    _surface,
    frame_cache_prefix,
)
from mpr_storage._keys import check_key_iterable
from mpr_storage._portal import Portal, RunningLoopError, refuse_in_loop

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client
else:
    S3Client = Any

# mpr_storage.__all__ in the same order, with the sync module's own names instead of the
# async-only ones; written out because mypy and IDEs read only a literal __all__ (and
# core.storage star-imports it), and checked against the one list by tests/test_surface.py.
__all__ = [
    "BUCKET_IN",
    "BUCKET_OUT",
    "AccessDeniedError",
    "BucketNotFoundError",
    "ConfigError",
    "InvalidKeyError",
    "InvalidRangeError",
    "LocalFileError",
    "ObjectExistsError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "PreconditionFailedError",
    "PresignedPost",
    "RunningLoopError",
    "StorageConnectionError",
    "StorageError",
    "StorageSettings",
    "StorageTimeoutError",
    "ThrottledError",
    "TransferError",
    "TransferReport",
    "SyncObjectBody",
    "copy_object",
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

RunningLoopError.__module__ = __name__  # documented here, where callers meet it

_portal = Portal()
atexit.register(_portal.stop_at_exit)


# --- the boto3 client ------------------------------------------------------------------------

_clients: dict[StorageSettings, S3Client] = {}
_clients_lock = threading.Lock()
_inherited_clients: list[S3Client] = []


def _close_clients() -> None:
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def _after_fork_in_child() -> None:
    global _clients_lock
    _portal._after_fork_in_child()
    # Connections in a pool are shared with the parent: keep the parent's clients untouched.
    _inherited_clients.extend(_clients.values())
    _clients.clear()
    _clients_lock = threading.Lock()


atexit.register(_close_clients)
if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_s3_client() -> S3Client:
    """Blocking form of :func:`mpr_storage.get_s3_client`.

    A plain boto3 S3 client, configured from the same :class:`StorageSettings` and provider
    profile as the async client (endpoint, credentials, addressing style, checksums, timeouts,
    retries, pool size). It is created once per settings and process and shared by all threads
    (boto3 clients are thread-safe); a forked child gets its own. Owned by the library: use it,
    don't close it.
    """
    refuse_in_loop("get_s3_client")
    settings = StorageSettings.from_env()
    with _clients_lock:
        client = _clients.get(settings)
        if client is None:
            import boto3
            from botocore.config import Config

            kwargs = {**settings.client_kwargs(), "config": Config(**settings.config_options())}
            client = _clients[settings] = boto3.session.Session().client("s3", **kwargs)
    return client


# --- the blocking API: each async function of mpr_storage, run on the loop thread -------------

list_objects = _surface.blocking(_aio.list_objects, _portal)
list_prefixes = _surface.blocking(_aio.list_prefixes, _portal)
object_exists = _surface.blocking(_aio.object_exists, _portal)
stat_object = _surface.blocking(_aio.stat_object, _portal)
list_buckets = _surface.blocking(_aio.list_buckets, _portal)
download_file = _surface.blocking(_aio.download_file, _portal)
download_to_temp = _surface.blocking(_aio.download_to_temp, _portal)
upload_file = _surface.blocking(_aio.upload_file, _portal)
copy_object = _surface.blocking(_aio.copy_object, _portal)
get_bytes = _surface.blocking(_aio.get_bytes, _portal)
put_bytes = _surface.blocking(_aio.put_bytes, _portal)
get_presigned_url = _surface.blocking(_aio.get_presigned_url, _portal)
get_presigned_post = _surface.blocking(_aio.get_presigned_post, _portal)
upload_many = _surface.blocking(_aio.upload_many, _portal)
frame_cache_exists = _surface.blocking(_aio.frame_cache_exists, _portal)
upload_frames = _surface.blocking(_aio.upload_frames, _portal)
prefetch_frames = _surface.blocking(_aio.prefetch_frames, _portal)


# Hand-written where the shape differs: an iterator, and iterables read on the calling thread.


@_surface.documented(_aio.iter_objects, sync=True)
def iter_objects(
    bucket: str,
    prefix: str = "",
    *,
    suffixes: str | Iterable[str] | None = None,
    start_after: str | None = None,
    limit: int | None = None,
) -> Generator[ObjectInfo, None, None]:
    return _portal.iterate(
        _aio.iter_objects, bucket, prefix, suffixes=suffixes, start_after=start_after, limit=limit
    )


@_surface.documented(_aio.delete_objects, sync=True)
def delete_objects(bucket: str, keys: Iterable[str]) -> None:
    # ``keys`` is read here (a lazy iterable must not block the loop thread), once it is known
    # not to be a single key.
    check_key_iterable(keys, operation="delete_objects", bucket=bucket)
    _portal.call(_aio.delete_objects, bucket, list(keys))


@_surface.documented(_aio.download_many, sync=True)
def download_many(
    bucket: str,
    keys: Iterable[str | ObjectInfo],
    dest_dir: str | os.PathLike[str],
    *,
    prefix: str = "",
    concurrency: int | None = None,
    skip_existing: bool = True,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    # ``keys`` is read here: a lazy iterable (iter_objects) must not block the loop thread.
    return _portal.call(
        _aio.download_many,
        bucket,
        list(keys),
        dest_dir,
        prefix=prefix,
        concurrency=concurrency,
        skip_existing=skip_existing,
        on_progress=on_progress,
        raise_on_error=raise_on_error,
    )


class SyncObjectBody:
    """An open object (or its range) from :func:`open_object`: ``info`` (the whole object's
    :class:`ObjectInfo`), ``start``/``end`` (the range served, ``[start, end)``),
    ``for chunk in body`` (chunks of at most 1 MiB, one round trip to the loop thread each)
    and ``body.read()`` (the rest, whole)."""

    __slots__ = ("_body", "end", "info", "start")

    def __init__(self, body: ObjectBody) -> None:
        self._body = body
        self.info, self.start, self.end = body.info, body.start, body.end

    def __iter__(self) -> Iterator[bytes]:
        while chunk := _portal.call(_next_chunk, self._body):
            yield chunk

    def read(self) -> bytes:
        """The rest of the range, whole, in memory."""
        return _portal.call(self._body.read)


async def _next_chunk(body: ObjectBody) -> bytes:
    return await anext(body, b"")


async def _opened(
    bucket: str, key: str, start: int, end: int | None
) -> AsyncGenerator[ObjectBody, None]:
    async with _aio.open_object(bucket, key, start=start, end=end) as body:
        yield body


async def _first(opened: AsyncGenerator[ObjectBody, None]) -> ObjectBody:
    return await anext(opened)


@contextlib.contextmanager
def _open(bucket: str, key: str, start: int, end: int | None) -> Iterator[SyncObjectBody]:
    # The GET is opened, read and closed on the loop thread, a round trip per chunk; leaving
    # the block (early, or by an exception) closes it there.
    opened = _opened(bucket, key, start, end)
    try:
        body = _portal.call(_first, opened)
    except BaseException:
        with contextlib.suppress(RunningLoopError):
            _portal.call(opened.aclose)
        raise
    try:
        yield SyncObjectBody(body)
    finally:
        _portal.call(opened.aclose)


@_surface.documented(_aio.open_object, sync=True)
def open_object(
    bucket: str, key: str, *, start: int = 0, end: int | None = None
) -> contextlib.AbstractContextManager[SyncObjectBody]:
    refuse_in_loop("open_object")
    return _open(bucket, key, start, end)
