"""Bulk uploads: a lazy walk of the source tree, files streamed in bounded memory, every entry
that cannot be uploaded reported, and skip decisions that compare content, never size alone."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Generator
from functools import partial
from pathlib import Path

import anyio
from anyio.abc import ObjectSendStream

from . import _objects
from ._client import BaseStorage
from ._engine import Engine, ProgressCallback, TransferReport, check_concurrency
from ._errors import LocalFileError, StorageError
from ._files import LocalIO
from ._http import FastS3
from ._keys import check_bucket, check_key
from ._manifest import is_md5_etag, same_content
from ._objects import ObjectInfo, guess_content_type
from ._walk import Found, Problem, walk_files

__all__ = ["CHUNK", "MULTIPART_AT_ONCE", "upload_many"]

CHUNK = 1024 * 1024
"""A file up to this size is read whole; a larger one is streamed in chunks of this size, so a
transfer holds at most ``concurrency x CHUNK`` bytes of file data."""
MULTIPART_AT_ONCE = 2
"""Files at or above the multipart threshold uploading at once in one bulk call (each with up
to 4 parts of ``multipart_chunksize`` in flight)."""
_STREAM_CHUNK = 256 * 1024  # the socket's buffer holds one chunk while the next is read
_WALK_BATCH = 256
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _take(walker: Generator[Found | Problem, None, None], count: int) -> list[Found | Problem]:
    batch: list[Found | Problem] = []
    for item in walker:
        batch.append(item)
        if len(batch) >= count:
            break
    return batch


def _open_regular(path: Path) -> int:
    """Open for reading without blocking on a FIFO, and refuse anything but a regular file
    (the walk checked already; this closes the race with a file swapped meanwhile)."""
    fd = os.open(path, _OPEN_FLAGS)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(0, "not a regular file: not read", str(path))
    return fd


def _hash_fd(fd: int, size: int) -> tuple[str, str, str]:
    """Blocking, streaming: ``(md5 hex, md5 base64, sha256 hex)`` of the file's first ``size``
    bytes."""
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    view = memoryview(bytearray(_STREAM_CHUNK))  # one buffer, reused: no allocation churn
    left = size
    with open(fd, "rb", buffering=0, closefd=False) as raw:
        while left > 0:
            n = raw.readinto(view[: min(_STREAM_CHUNK, left)])
            if not n:
                raise OSError(0, "file shrank while it was read")
            md5.update(view[:n])
            sha.update(view[:n])
            left -= n
    return md5.hexdigest(), base64.b64encode(md5.digest()).decode("ascii"), sha.hexdigest()


def _digests(data: bytes) -> tuple[str, str, str]:
    md5 = hashlib.md5(data, usedforsecurity=False)
    b64 = base64.b64encode(md5.digest()).decode("ascii")
    return md5.hexdigest(), b64, hashlib.sha256(data).hexdigest()


def _read_fd(fd: int, size: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    data = os.read(fd, size)
    if len(data) != size:
        raise OSError(0, "file changed size while it was read")
    return data


async def _chunks(fd: int, size: int, io: LocalIO) -> AsyncIterator[bytes]:
    """The file's ``size`` bytes in chunks of 256 KiB (with the one the socket still holds,
    at most 512 KiB per upload)."""
    await io.run(partial(os.lseek, fd, 0, os.SEEK_SET), 0)
    left = size
    while left > 0:
        chunk = await io.run(partial(os.read, fd, min(_STREAM_CHUNK, left)), _STREAM_CHUNK)
        if not chunk:
            raise OSError(0, "file shrank while it was uploaded")
        left -= len(chunk)
        yield chunk


async def upload_many(
    storage: BaseStorage,
    src_dir: str | os.PathLike[str],
    bucket: str,
    prefix: str,
    *,
    concurrency: int | None = None,
    skip_existing: bool = False,
    on_progress: ProgressCallback | None = None,
    raise_on_error: bool = True,
) -> TransferReport:
    check_bucket(bucket, operation="upload_many")
    settings = storage.settings
    concurrency = check_concurrency(
        settings.max_concurrency if concurrency is None else concurrency
    )
    root = Path(src_dir)
    if not await anyio.Path(root).is_dir():
        raise NotADirectoryError(f"upload_many: {root} is not a directory")
    remote: dict[str, ObjectInfo] = {}
    if skip_existing:
        remote = {o.key: o async for o in _objects.iter_objects(storage, bucket, prefix)}
    fast = await FastS3.open(storage) if settings.fast_path else None
    io = LocalIO()
    big = anyio.CapacityLimiter(MULTIPART_AT_ONCE)
    engine: Engine[Found] = Engine(
        operation="upload_many",
        bucket=bucket,
        concurrency=concurrency,
        attempts=settings.max_attempts if fast else 1,
        on_progress=on_progress,
    )

    def local_error(key: str, reason: str, path: Path, errno: int | None) -> LocalFileError:
        return LocalFileError(
            reason, path=path, operation="upload_many", bucket=bucket, key=key, errno=errno
        )

    async def produce(send: ObjectSendStream[tuple[str, Found]]) -> None:
        walker = walk_files(root)
        try:
            while batch := await anyio.to_thread.run_sync(_take, walker, _WALK_BATCH):
                engine.progress.total += len(batch)
                for item in batch:
                    key = prefix + item.rel
                    if isinstance(item, Problem):
                        err = local_error(key, item.reason, item.path, item.errno)
                        await engine.fail(key, err)
                        continue
                    try:
                        check_key(key, operation="upload_many", bucket=bucket)
                    except StorageError as exc:
                        await engine.fail(key, exc)
                        continue
                    await send.send((key, item))
        finally:
            walker.close()

    async def work(key: str, item: Found) -> int | None:
        try:
            fd = await io.run(partial(_open_regular, item.path), 0)
        except OSError as exc:
            raise local_error(key, exc.strerror or str(exc), item.path, exc.errno) from exc
        try:
            size = os.fstat(fd).st_size
            existing = remote.get(key)
            expected = existing.etag if existing is not None and existing.size == size else None
            part_size = settings.multipart_chunksize
            if fast is None or size >= settings.multipart_threshold:
                if expected is not None:
                    check = partial(same_content, fd, size, expected, part_size)
                    if await anyio.to_thread.run_sync(check):
                        return None
                async with big:
                    await _objects.upload_file(storage, item.path, bucket, key)
                return size
            if expected is not None and not is_md5_etag(expected):  # multipart: its own ETag
                check = partial(same_content, fd, size, expected, part_size)
                if await anyio.to_thread.run_sync(check):
                    return None
            body = await io.run(partial(_read_fd, fd, size), size) if size <= CHUNK else None
            if body is not None:
                md5_hex, md5_b64, sha256_hex = _digests(body)
            else:  # a first streaming pass for the signature and Content-MD5
                md5_hex, md5_b64, sha256_hex = await io.run(partial(_hash_fd, fd, size), size)
            if md5_hex == expected:
                return None
            await fast.put(
                bucket,
                key,
                body if body is not None else _chunks(fd, size, io),
                content_type=guess_content_type(key),
                md5_b64=md5_b64,
                sha256_hex=sha256_hex,
                operation="upload_many",
                size=size,
            )
            return size
        finally:
            os.close(fd)

    await engine.run(produce, work)
    return engine.finish(raise_on_error)
