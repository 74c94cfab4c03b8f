"""Bulk downloads: bounded, streaming, atomic, resumable, with skip decisions that are never
wrong (see :mod:`._manifest`). Uploads live in :mod:`._uploads`."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ObjectSendStream

from . import _objects
from ._client import BaseStorage
from ._engine import AdaptiveLimit as _AdaptiveLimit
from ._engine import Engine, KeySource, ProgressCallback, TransferReport, batches
from ._engine import check_concurrency as _check_concurrency
from ._errors import LocalFileError, StorageError, map_errors
from ._files import LocalIO, atomic_writer
from ._http import FastS3
from ._keys import KeyMapper, check_bucket, check_key
from ._manifest import MANIFEST_NAME, Entry, Manifest, same_content
from ._objects import CHUNK_SIZE, ObjectInfo, check_length
from ._retry import is_retryable, retry
from ._uploads import upload_many

__all__ = [
    "MANIFEST_NAME",
    "KeySource",
    "ProgressCallback",
    "TransferReport",
    "_AdaptiveLimit",
    "_check_concurrency",
    "download_many",
    "upload_many",
]

_PLAN_BATCH = 256


@dataclass(frozen=True, slots=True)
class _Get:
    """One GET to make: into ``path``; conditional on ``if_none_match`` (an ETag) if set."""

    path: Path
    info: ObjectInfo | None
    if_none_match: str | None = None


_Plan = _Get | StorageError | None  # None: keep the local file


def _key_of(item: str | ObjectInfo) -> str:
    return item.key if isinstance(item, ObjectInfo) else item


def _is_folder_marker(item: str | ObjectInfo) -> bool:
    key = _key_of(item)
    return key.endswith("/") and (not isinstance(item, ObjectInfo) or item.size == 0)


def _validate_keys(mapper: KeyMapper, items: list[str | ObjectInfo], bucket: str) -> None:
    """Blocking: every key of an explicit list is safe, else :class:`InvalidKeyError` (before
    anything is fetched or written). Local trouble (:class:`LocalFileError`) stays per key."""
    for item in items:
        key = check_key(_key_of(item), operation="download_many", bucket=bucket)
        if not _is_folder_marker(item):
            with contextlib.suppress(LocalFileError):
                mapper.check(key)


def _plan_downloads(
    mapper: KeyMapper,
    manifest: Manifest,
    bucket: str,
    batch: list[str | ObjectInfo],
    skip_existing: bool,
    part_size: int,
) -> list[tuple[str, _Plan]]:
    """Blocking, one thread hop per batch: map each key to its path (checked, nothing created)
    and decide whether the local file can be kept."""
    plans: list[tuple[str, _Plan]] = []
    for item in batch:
        info = item if isinstance(item, ObjectInfo) else None
        key = _key_of(item)
        if _is_folder_marker(item):
            plans.append((key, None))  # a "folder" marker, not a file
            continue
        try:
            check_key(key, operation="download_many", bucket=bucket)
            path = mapper.check(key)
            plan = _decide(path, key, info, mapper, manifest, bucket, part_size, skip_existing)
        except StorageError as exc:
            plans.append((key, exc))
            continue
        plans.append((key, plan))
    return plans


def _decide(
    path: Path,
    key: str,
    info: ObjectInfo | None,
    mapper: KeyMapper,
    manifest: Manifest,
    bucket: str,
    part_size: int,
    skip_existing: bool,
) -> _Plan:
    """Keep the local file (``None``) only when the manifest entry (same bucket and key) still
    describes it (size, mtime) and the remote object is still the one fetched: the listing's
    ETag, or, for a key given by name, a conditional GET (planned here)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return _Get(path, info)
    except OSError as exc:
        raise _local_error(f"cannot inspect the file: {exc.strerror}", path, bucket, key) from exc
    if stat.S_ISDIR(st.st_mode):
        raise _local_error("a directory stands where the file goes", path, bucket, key)
    if not skip_existing or not stat.S_ISREG(st.st_mode):
        return _Get(path, info)  # a symlink or special file is replaced, never followed
    rel = key.removeprefix(mapper.prefix)
    entry = manifest.get(rel)
    trusted = (
        entry is not None and entry.bucket == bucket and entry.key == key and entry.matches_file(st)
    )
    if info is None:
        etag = entry.etag if trusted and entry is not None and entry.etag else None
        return _Get(path, None, etag)
    if st.st_size != info.size or not info.etag:
        return _Get(path, info)
    if trusted and entry is not None and entry.etag == info.etag:
        return None
    try:  # changed since we wrote it, or not written by us: compare the content itself
        same = same_content(path, st.st_size, info.etag, part_size)
    except OSError:
        same = False
    if not same:
        return _Get(path, info)
    manifest.record(rel, Entry(bucket, key, st.st_size, info.etag, st.st_mtime_ns))
    return None


def _local_error(message: str, path: Path, bucket: str, key: str) -> LocalFileError:
    return LocalFileError(message, path=path, operation="download_many", bucket=bucket, key=key)


def _missing_dirs(dest_dir: str | os.PathLike[str]) -> list[Path]:
    """``dest_dir`` and its ancestors that do not exist yet, deepest first."""
    dest = Path(os.path.abspath(dest_dir))
    missing: list[Path] = []
    for path in (dest, *dest.parents):
        if os.path.lexists(path):
            break
        missing.append(path)
    return missing


def _remove_empty(dirs: list[Path]) -> None:
    for path in dirs:  # deepest first; a directory with anything in it stays
        with contextlib.suppress(OSError):
            os.rmdir(path)


async def download_many(
    storage: BaseStorage,
    bucket: str,
    keys: KeySource,
    dest_dir: str | os.PathLike[str],
    *,
    prefix: str = "",
    concurrency: int | None = None,
    skip_existing: bool = True,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    check_bucket(bucket, operation="download_many")
    if isinstance(keys, (str, bytes)):
        raise TypeError("download_many: keys must be an iterable of keys, not a single key")
    settings = storage.settings
    concurrency = _check_concurrency(
        settings.max_concurrency if concurrency is None else concurrency
    )
    mapper = KeyMapper(dest_dir, prefix, operation="download_many", bucket=bucket)
    if not isinstance(keys, AsyncIterable):  # an explicit list: every key safe before any GET
        keys = list(keys)
        await anyio.to_thread.run_sync(_validate_keys, mapper, keys, bucket)
    created = await anyio.to_thread.run_sync(_missing_dirs, dest_dir)  # none created up front
    manifest = await anyio.to_thread.run_sync(Manifest.load, mapper.root)
    fast = await FastS3.open(storage) if settings.fast_path else None
    io = LocalIO()
    engine: Engine[_Get] = Engine(
        operation="download_many",
        bucket=bucket,
        concurrency=concurrency,
        attempts=settings.max_attempts if fast else 1,  # botocore retries on its own path
        on_progress=on_progress,
    )
    part_size = settings.multipart_chunksize

    async def produce(send: ObjectSendStream[tuple[str, _Get]]) -> None:
        async for batch in batches(keys, _PLAN_BATCH):
            engine.progress.total += len(batch)
            plans = await anyio.to_thread.run_sync(
                _plan_downloads, mapper, manifest, bucket, batch, skip_existing, part_size
            )
            for key, plan in plans:
                if plan is None:
                    await engine.skip(key)
                elif isinstance(plan, StorageError):
                    await engine.fail(key, plan)
                else:
                    await send.send((key, plan))

    async def work(key: str, get: _Get) -> int | None:
        if fast is not None:
            got = await _objects.get_to_file(
                fast,
                bucket,
                key,
                get.path,
                io=io,
                operation="download_many",
                mkdir=True,
                if_none_match=get.if_none_match,
            )
        else:
            got = await _botocore_get(storage, bucket, key, get.path, get.if_none_match)
        if got is None:  # 304: the object still has the ETag of the file we wrote
            return None
        nbytes, etag, mtime_ns = got
        manifest.record(key.removeprefix(prefix), Entry(bucket, key, nbytes, etag, mtime_ns))
        return nbytes

    clean = False
    try:
        await engine.run(produce, work)
        clean = not engine.report.failed
    finally:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(OSError):
                await anyio.to_thread.run_sync(manifest.save)
            if not clean:  # nothing left behind by a transfer that failed before writing
                await anyio.to_thread.run_sync(_remove_empty, created)
    return engine.finish(raise_on_error)


async def _botocore_get(
    storage: BaseStorage, bucket: str, key: str, path: Path, if_none_match: str | None
) -> tuple[int, str, int] | None:
    """The botocore twin of :func:`_objects.get_to_file` (with ``mkdir``): a conditional GET
    when ``if_none_match`` is set, the body streamed into ``path`` atomically."""
    client = await storage.client()
    streaming = False  # botocore retries the request itself; we retry a broken body

    async def attempt() -> tuple[int, str, int] | None:
        nonlocal streaming
        streaming = False
        try:
            with map_errors("download_many", bucket, key):
                if if_none_match:
                    tag = f'"{if_none_match}"'
                    response = await client.get_object(Bucket=bucket, Key=key, IfNoneMatch=tag)
                else:
                    response = await client.get_object(Bucket=bucket, Key=key)
        except StorageError as exc:
            if if_none_match and exc.code in ("304", "NotModified"):
                return None
            raise
        streaming = True
        expected = int(response["ContentLength"])
        etag = str(response.get("ETag", "")).strip('"')
        body = response["Body"]
        received = 0
        with map_errors("download_many", bucket, key):
            async with body:
                await anyio.Path(path.parent).mkdir(parents=True, exist_ok=True)
                async with atomic_writer(path) as f:
                    async for chunk in body.iter_chunks(CHUNK_SIZE):
                        received += len(chunk)
                        await f.write(chunk)
                    check_length(received, expected, "download_many", bucket, key)
        return received, etag, (await anyio.Path(path).stat()).st_mtime_ns

    return await retry(
        attempt,
        attempts=storage.settings.max_attempts,
        when=lambda exc: streaming and is_retryable(exc),
    )
