"""Bulk uploads: a lazy walk of the source tree, files streamed in bounded memory, every entry
that cannot be uploaded reported, and skip decisions that compare content, never size alone."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Generator
from functools import partial
from pathlib import Path

import anyio

from . import _listing
from ._checksums import part_size_for, same_content
from ._client import BaseStorage
from ._concurrency import check_concurrency
from ._engine import Engine
from ._errors import LocalFileError, StorageError, TransferReport
from ._files import LocalIO, open_regular
from ._keys import check_bucket, check_key
from ._models import ObjectInfo, ProgressCallback
from ._put import guess_content_type, put_opened, put_parts
from ._sizes import SMALL_BODY
from ._walk import Found, Problem, walk_files

__all__ = ["MULTIPART_AT_ONCE", "upload_many"]

MULTIPART_AT_ONCE = 2
"""Files at or above the multipart threshold uploading at once in one bulk call (their parts
share the call's ``S3_PART_CONCURRENCY`` slots)."""
_WALK_BATCH = 256


def _take(walker: Generator[Found | Problem, None, None], count: int) -> list[Found | Problem]:
    batch: list[Found | Problem] = []
    for item in walker:
        batch.append(item)
        if len(batch) >= count:
            break
    return batch


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
    """Upload every file under ``src_dir`` to ``prefix + relative/path`` concurrently.

    Small files go up with one streamed PUT each (their checksum checked by the server); files
    of ``S3_MULTIPART_THRESHOLD`` bytes or more use multipart as :func:`upload_file` does (each
    file opened once, its parts read at their offsets and sent concurrently), aborted on
    failure or cancellation, so no half-written object remains. The download manifest and
    temp files are never uploaded. The tree is walked lazily (one directory listed at a time,
    uploads start at once); symlinks to files and directories are followed, each real
    directory once.

    Memory: a file up to 1 MiB is read whole; a larger one is hashed in a first streaming
    pass and sent in 256 KiB pieces, so a call holds at most ``concurrency x 1 MiB`` of file
    data, plus, for files at or above the multipart threshold (at most 2 at once), the parts
    in flight: ``S3_PART_CONCURRENCY`` for the whole call (fewer while throttled), each
    streamed like a file (~512 KiB, whatever ``S3_MULTIPART_CHUNKSIZE``). With
    ``skip_existing`` the listing of ``prefix`` is held. Throttling answers, to parts as to
    small files, lower the call's concurrency.

    Args:
        skip_existing: leave an object only when its content provably equals the file: same
            size and MD5 (MD5 ETags), or the same multipart ETag recomputed with
            ``S3_MULTIPART_CHUNKSIZE``; other ETags (SSE-KMS, SSE-C) mean upload again.
        on_progress, raise_on_error, concurrency: as for :func:`download_many` (the total is
            known once the walk ends).

    Returns:
        The :class:`TransferReport`: every file the walk found is in exactly one of ``done``,
        ``skipped`` and ``failed`` (also when the call gave up: see :func:`download_many`).

    Raises:
        TransferError: some files failed (after every other file was tried); ``.report`` tells
            which. Entries that cannot be uploaded are per-key :class:`LocalFileError`
            failures, never silently dropped: unreadable files and directories, dangling
            symlinks, FIFOs, devices and sockets (also behind symlinks; never opened), names
            that are not valid UTF-8.
        NotADirectoryError: ``src_dir`` is not a directory.
        ValueError: ``concurrency`` is not a positive integer.
        StorageConnectionError, ThrottledError: the listing for ``skip_existing`` failed.
    """
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
        remote = {o.key: o async for o in _listing.iter_objects(storage, bucket, prefix)}
    transport = await storage.transport()
    io = LocalIO()
    big = anyio.CapacityLimiter(MULTIPART_AT_ONCE)
    parts = anyio.CapacityLimiter(settings.part_concurrency)  # shared by the large files
    engine: Engine[Found] = Engine(
        operation="upload_many",
        bucket=bucket,
        concurrency=concurrency,
        on_progress=on_progress,
    )

    def fit_parts() -> None:
        """Parts in flight: the setting's, never more than the call's current limit."""
        parts.total_tokens = max(1, min(settings.part_concurrency, engine.limit.total))

    def part_throttled() -> None:
        engine.limit.throttled()
        fit_parts()

    def local_error(key: str, reason: str, path: Path, errno: int | None) -> LocalFileError:
        return LocalFileError(
            reason, path=path, operation="upload_many", bucket=bucket, key=key, errno=errno
        )

    async def produce(send: Callable[[tuple[str, Found]], Awaitable[None]]) -> None:
        walker = walk_files(root)
        try:
            while batch := await anyio.to_thread.run_sync(_take, walker, _WALK_BATCH):
                engine.progress.seen += len(batch)
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
                    await send((key, item))
            engine.progress.total = engine.progress.seen  # the walk is over: now it is known
        finally:
            walker.close()

    async def work(key: str, item: Found) -> int | None:
        existing = remote.get(key)
        # A frame is read as it is opened (one trip), unless its content may be compared first.
        read_up_to = 0 if existing is not None else SMALL_BODY
        try:
            opened = partial(open_regular, item.path, read_up_to=read_up_to)
            fd, size, data = await io.run(opened, read_up_to)
        except OSError as exc:
            raise local_error(key, exc.strerror or str(exc), item.path, exc.errno) from exc
        try:
            if existing is not None and existing.size == size:
                check = partial(
                    same_content,
                    fd,
                    size,
                    existing.etag,
                    part_size_for(size, settings.multipart_chunksize),
                )
                if await io.run(check, size):
                    return None
            if size < settings.multipart_threshold:
                await put_opened(
                    transport,
                    bucket,
                    key,
                    fd,
                    size,
                    data,
                    content_type=guess_content_type(key),
                    io=io,
                    operation="upload_many",
                    path=item.path,
                    on_throttle=engine.limit.throttled,
                )
                return size
            async with big:
                fit_parts()  # grown back with the call's limit
                await put_parts(
                    transport,
                    bucket,
                    key,
                    fd,
                    size,
                    part_size=part_size_for(size, settings.multipart_chunksize),
                    content_type=guess_content_type(key),
                    io=io,
                    operation="upload_many",
                    slots=parts,
                    path=item.path,
                    on_throttle=part_throttled,
                )
            return size
        finally:
            os.close(fd)

    await engine.run(produce, work)
    return engine.finish(raise_on_error)
